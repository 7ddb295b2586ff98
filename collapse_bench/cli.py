"""Command line: `python -m collapse_bench list | run | tune | report`."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from . import registry
from .config import SIZES, ConfigError
from .data import DATASETS, DataError
from .method import ParamError
from .registry import UnknownMethodError


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers like 0,1,2, got {text!r}")


def _settings(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        scope, dot, param = key.partition(".")
        if not (eq and dot and scope and param):
            raise ConfigError(f"--set {item!r}: write METHOD.PARAM=VALUE (e.g. bnvae.gamma=0.7) "
                              f"or SECTION.FIELD=VALUE with SECTION in train, model, eval, limits")
        out.setdefault(scope, {})[param] = value
    return out


def _run_settings(args) -> dict[str, dict[str, str]]:
    settings = _settings(args.set)
    if args.threads is not None:
        settings.setdefault("train", {})["threads"] = str(args.threads)
    return settings


def cmd_list(args) -> int:
    for name in registry.names():
        cls = registry.get(name)
        params = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Params))
        alias = f" (aliases: {', '.join(cls.aliases)})" if cls.aliases else ""
        print(f"{name:14s} {cls.description()}{alias}")
        if params:
            print(f"{'':14s} params: {params}")
    return 0


def _fmt(v, spec=".2f") -> str:
    if v is None:
        return "–"
    return format(v, ".3g") if isinstance(v, float) and abs(v) >= 1e6 else format(v, spec)


def summary_table(records: list[dict]) -> str:
    rows = [("method", "dataset", "size", "seed", "status", "NLL", "PPL", "KL", "MI", "AU", "probe", "train s")]
    for r in records:
        m, t = r.get("metrics") or {}, r.get("timing") or {}
        probe = m.get("probe") or {}
        first = min(probe, key=int) if probe else None
        rows.append((r["label"], r["dataset"], r["size"], str(r["seed"]), r["status"], _fmt(m.get("nll")),
                     _fmt(m.get("ppl")), _fmt(m.get("kl")), _fmt(m.get("mi")), _fmt(m.get("au"), "d"),
                     f"{probe[first]['mean']:.3f}@{first}" if first else "–", _fmt(t.get("train_seconds"), ".1f")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)


def cmd_run(args) -> int:
    from .sweep import expand, run_cell, run_sweep
    settings = _run_settings(args)
    if args.params_from is not None:
        from .tune import apply_best_params
        settings = apply_best_params(settings, args.params_from, _csv(args.methods))
    specs = expand(_csv(args.methods), _csv(args.dataset), _csv(args.size), args.seeds, settings,
                   data_dir=args.data_dir, device=args.device)
    executor = _executor(args)
    progress = _progress() if args.executor == "serial" and sys.stderr.isatty() else None

    def on_result(rec: dict) -> None:
        err = f": {rec['error']['type']}: {rec['error']['message']}" if rec["status"] != "ok" else ""
        print(f"[{rec['status']}] {rec['cell']}{err}", file=sys.stderr)

    def cell(spec):
        return run_cell(spec, on_step=progress(spec) if progress else None)

    try:
        records = run_sweep(specs, args.out, executor, overwrite=args.overwrite, fn=cell, on_result=on_result)
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; rerun the same command to run what is missing", file=sys.stderr)
        return 130
    print(summary_table(records))
    if not args.no_report:
        try:
            from .report import build_report
            print(f"leaderboard: {build_report(args.out)}")
        except ImportError as e:
            print(f"(no leaderboard: {e})", file=sys.stderr)
    return 0 if all(r["status"] == "ok" for r in records) else 1


def _progress():
    from tqdm import tqdm

    def for_cell(spec):
        bar = tqdm(desc=spec.cell[:60], unit="step", leave=False)

        def update(step: int, total: int) -> None:
            bar.total = total
            bar.n = step
            bar.refresh() if step % 20 == 0 else None
        return update
    return for_cell


def _executor(args):
    if args.executor == "serial":
        from .sweep import SerialExecutor
        return SerialExecutor()
    from .executor import make_executor
    return make_executor(args.executor, address=args.ray_address, num_cpus=args.num_cpus, retries=args.retries)


def cmd_tune(args) -> int:
    import optuna

    from .tune import tune
    settings = _run_settings(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # the driver prints one line per trial itself
    try:
        res = tune(args.method, args.dataset, args.size, out=args.out, trials=args.trials, objective=args.objective,
                   storage=args.storage, study_name=args.study, executor=_executor(args), seed=args.seed,
                   data_dir=args.data_dir, settings=settings, device=args.device, pruner=args.pruner)
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept in the study; rerun the same command to resume",
              file=sys.stderr)
        return 130
    print(f"study {res.study_name}: {res.n_finished} finished trials ({res.ran} run now), storage {res.storage}")
    if res.best:
        params = ", ".join(f"{k}={v}" for k, v in res.best["tuned_params"].items())
        print(f"best: trial {res.best['trial']}  {res.objective}={res.best['value']:.4g}  {params}")
    for kind, path in res.files.items():
        print(f"{kind}: {path}")
    return 0 if res.best else 1


def cmd_report(args) -> int:
    from .report import build_report
    print(build_report(args.dir, args.output))
    return 0


def _execution_args(p: argparse.ArgumentParser) -> None:
    """Where and how cells run; shared by `run` and `tune`."""
    p.add_argument("--data-dir", default=None, help="corpus folder (or set COLLAPSE_BENCH_DATA)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.PARAM=VALUE",
                   help="set a method hyperparameter or a size field (train.epochs=3); repeatable")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: the size's, 1)")
    p.add_argument("--executor", choices=("serial", "ray"), default="serial",
                   help="ray runs as many cells at once as there are CPUs")
    p.add_argument("--ray-address", default=None, help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded Ray (default: all)")
    p.add_argument("--retries", type=int, default=0, help="retries of a cell whose worker died")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m collapse_bench",
                                description="Benchmark of posterior-collapse remedies for LSTM text VAEs.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="methods with descriptions and hyperparameters").set_defaults(fn=cmd_list)

    r = sub.add_parser("run", help="train and score methods × datasets × seeds")
    r.add_argument("--methods", default="vanilla", help="comma-separated method names (see `list`)")
    r.add_argument("--dataset", default="synthetic", help=f"comma-separated, from {', '.join(DATASETS)}")
    r.add_argument("--size", default="default", help=f"comma-separated, from {', '.join(SIZES)}")
    r.add_argument("--seeds", type=_seeds, default=[0])
    r.add_argument("--out", default="runs/latest", type=Path)
    _execution_args(r)
    r.add_argument("--overwrite", action="store_true", help="rerun cells that already have a result")
    r.add_argument("--no-report", action="store_true", help="do not build the leaderboard at the end")
    r.add_argument("--params-from", default=None, type=Path, metavar="DIR",
                   help="use the best tuned params of each method from DIR/tune/*.best.json (or one such file); "
                        "--set still overrides them")
    r.set_defaults(fn=cmd_run)

    t = sub.add_parser("tune", help="Optuna study over a method's search space (resumable)")
    t.add_argument("--method", required=True, help="method to tune (see `list`)")
    t.add_argument("--dataset", default="synthetic", help=f"one of {', '.join(DATASETS)}")
    t.add_argument("--size", default="default", help=f"one of {', '.join(SIZES)}")
    t.add_argument("--trials", type=int, default=20, help="total finished trials wanted; a rerun resumes up to it")
    t.add_argument("--out", default="runs/latest", type=Path,
                   help="study, best params and history go to OUT/tune/, each trial's result to OUT/results/")
    t.add_argument("--objective", default="nll",
                   help="nll, ppl, elbo (minimised); mi, au, kl, probe@N e.g. probe@100 (maximised)")
    t.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna RDB URL (e.g. postgresql://... shared by a cluster); default: OUT/tune/<study>.journal")
    t.add_argument("--study", default=None, help="study name (default: from method, dataset, size, objective, seed)")
    t.add_argument("--seed", type=int, default=0, help="run seed of every trial, and the TPE sampler's seed")
    t.add_argument("--pruner", choices=("median", "none"), default="median",
                   help="prune on the per-epoch validation curve (median stopping rule) or not")
    _execution_args(t)
    t.set_defaults(fn=cmd_tune)

    rep = sub.add_parser("report", help="build the HTML leaderboard from DIR/results")
    rep.add_argument("dir", type=Path)
    rep.add_argument("-o", "--output", type=Path, default=None)
    rep.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (UnknownMethodError, ConfigError, ParamError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
