"""Command line: `python -m collapse_bench list | run | tune | study | check | report`."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import threading
from pathlib import Path

from . import registry
from .config import SIZES, ConfigError
from .data import DATASETS, DataError
from .method import ParamError, shown
from .presets import UnknownPresetError
from .registry import UnknownMethodError


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in _csv(text)]
    except ValueError:
        seeds = []
    if not seeds:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers like 0,1,2, got {text!r}")
    return seeds


def _required(flag: str, text: str, example: str, more: str = "") -> list[str]:
    items = _csv(text)
    if not items:
        raise ConfigError(f"{flag} {text!r} names nothing; give one or more, comma-separated, e.g. {flag} {example}{more}")
    return items


def _check_out(out: Path) -> None:
    """Refuse an --out that cannot hold results before anything runs (the nearest existing path decides)."""
    for p in (out / "results", out, *out.parents):
        if not p.exists():
            continue
        if not p.is_dir():
            raise ConfigError(f"--out {out}: {p} is a file, not a folder; give a folder for the results "
                              f"(OUT/results/*.json, OUT/leaderboard.html), e.g. --out runs/a")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"--out {out}: cannot write in {p}; give a folder you can write to")
        return


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
    from . import describe, presets
    if args.method:
        print(describe.describe(args.method))
        return 0
    if args.presets:
        for p in presets.PRESETS.values():
            recipe = ", ".join(f"{sec}.{k}={v}" for sec, vals in p.size_overrides().items() for k, v in vals.items())
            params = ", ".join(f"{k}={v!r}" for k, v in p.params.items())
            print(f"{p.name:14s} {p.method}({params}) — {p.source}")
            print(f"{'':14s} recipe: {recipe}")
            print(f"{'':14s} reproduces: {'; '.join(p.rows)}" + (f" ({p.note})" if p.note else ""))
        for method, why in presets.NO_PRESET.items():
            print(f"{'(none)':14s} {method}: the paper prints no comparable row: {why}")
        print("\n" + "\n".join(describe.tag_legend()))
        return 0
    for name in registry.names():
        cls = registry.get(name)
        params = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Params))
        alias = f" (aliases: {', '.join(cls.aliases)})" if cls.aliases else ""
        print(f"{name:14s} {cls.description()}{alias}")
        if params:
            print(f"{'':14s} params: {params}")
        if rows := describe.default_rows(name):
            print(f"{'':14s} its defaults are the paper's: {' | '.join(rows)}")
    for origin, why in registry.unavailable().items():
        print(f"unavailable: {origin}: {why}")
    print("\n" + "\n".join(describe.decoder_lines()))
    print("\n" + "\n".join(describe.tag_legend()))
    print("One method in full (its paper, each parameter's type, range and meaning, its search space and cost): "
          "python -m collapse_bench list METHOD")
    return 0


def _fmt(v, spec=".2f") -> str:
    if v is None:
        return "–"
    return format(v, ".3g") if isinstance(v, float) and abs(v) >= 1e6 else format(v, spec)


def summary_table(records: list[dict]) -> str:
    from .report.load import decoder_of
    rows = [("method", "dataset", "size", "decoder", "seed", "status", "NLL", "PPL", "KL", "MI", "AU", "probe",
             "train s")]
    for r in records:
        m, t = r.get("metrics") or {}, r.get("timing") or {}
        probe = m.get("probe") or {}
        first = min(probe, key=int) if probe else None
        latent = m.get("has_latent", True)          # KL, MI, AU are not defined without a latent (lm): "–"
        kl, mi, au = (m.get("kl"), m.get("mi"), m.get("au")) if latent else (None, None, None)
        rows.append((r["label"], r["dataset"], r["size"], decoder_of(r), str(r["seed"]), r["status"],
                     _fmt(m.get("nll")), _fmt(m.get("ppl")), _fmt(kl), _fmt(mi), _fmt(au, "d"),
                     f"{probe[first]['mean']:.3f}@{first}" if first else "–", _fmt(t.get("train_seconds"), ".1f")))
    return _columns(rows)


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def baseline_table(records: list[dict]) -> str:
    """Each non-vanilla method's mean paired difference to vanilla (the report's pairing: same dataset, size with
    its --set overrides, decoder and seed) and its training-time ratio; '' when the records hold no such method."""
    from .report.load import BOARD_KEYS, distinct_labels, frame, probe_key
    from .registry import VANILLA
    from .report.stats import add_time_ratio, add_vanilla_deltas
    df = add_vanilla_deltas(add_time_ratio(frame(distinct_labels(records))))
    ok = df[(df["status"] == "ok") & (df["method"] != VANILLA)]
    if ok.empty:
        return ""
    probes = sorted((c for c in df.columns if c.startswith("d_probe@")), key=lambda c: probe_key(c[8:]))

    def d(g, col: str, spec: str = "+.2f") -> str:
        v = g[col].mean() if col in g else float("nan")
        return "–" if v != v else format(v, spec)

    rows = [("method", "dataset", "size", "decoder", "pairs", "ΔNLL", "ΔKL", "ΔMI", "ΔAU", "Δprobe",
             "time ×vanilla")]
    for (dataset, size, decoder, label), g in ok.groupby([*BOARD_KEYS, "label"], sort=True):
        probe = next((c for c in probes if g[c].notna().any()), None)
        rows.append((str(label), str(dataset), str(size), str(decoder), str(int(g["time_ratio"].notna().sum())),
                     d(g, "d_nll"), d(g, "d_kl"), d(g, "d_mi"), d(g, "d_au", "+.1f"),
                     f"{d(g, probe, '+.3f')}@{probe[8:]}" if probe else "–", d(g, "time_ratio", ".2f")))
    return ("vs vanilla (mean over seeds of the paired difference: same dataset, size, --set overrides, decoder and "
            "seed):\n"
            + _columns(rows))


def cmd_run(args) -> int:
    from .registry import VANILLA
    from .sweep import SECTIONS, expand, expand_presets
    preset_names = _csv(args.presets or "")
    methods = _csv(args.methods or "") if preset_names else \
        _required("--methods", "vanilla" if args.methods is None else args.methods, "bnvae,fb",
                  " (all methods: python -m collapse_bench list)")
    datasets = _required("--dataset", args.dataset, "synthetic")
    sizes = _required("--size", args.size, "default")
    _check_out(args.out)
    settings = _run_settings(args)
    if args.params_from is not None:
        from .tune import apply_best_params
        settings = apply_best_params(settings, args.params_from, methods)
    against = args.against is not None
    # Vanilla joins the methods asked for (its finished cells in OUT are reused, like any finished cell); presets
    # alone get none: a preset trains its paper's recipe, its board is the paper's row, not the harness's vanilla.
    if methods and not (args.no_baseline or against) and VANILLA not in {registry.get(m).name for m in methods}:
        methods = [VANILLA, *methods]
    specs = expand(methods, datasets, sizes, args.seeds, settings, data_dir=args.data_dir, device=args.device)
    if preset_names:
        sections = {k: v for k, v in settings.items() if k in SECTIONS}
        specs += expand_presets(preset_names, datasets, sizes, args.seeds, sections, data_dir=args.data_dir,
                                device=args.device)
    borrowed = _borrow_against(args, specs) if against else []
    return _run_and_report(args, specs, overwrite=args.overwrite, report=not args.no_report,
                           keep_stale=args.keep_stale, extra_records=borrowed)


def _borrow_against(args, specs: list) -> list[dict]:
    """`--against DIR`: DIR's comparable cells, checked before anything runs, copied into OUT (DIR is only read)."""
    from .against import borrow, comparable_cells
    if args.against.resolve() == args.out.resolve():
        raise ConfigError(f"--against {args.against} is the --out folder; give the published folder to rank against "
                          f"and another --out for the new cells")
    records = comparable_cells(specs, args.against)
    borrow(records, args.against, args.out)
    print(f"ranked against {len(records)} cells of {args.against} (listed in {args.out}/against.json); only the new "
          f"cells run", file=sys.stderr)
    return records


def _say_stale(specs: list, out: Path, keep_stale: bool) -> None:
    from .sweep import stale_cells
    stale = stale_cells(specs, out)
    if stale:
        one = len(stale) == 1
        fate = "kept as asked (--keep-stale) and marked stale on the page" if keep_stale else \
            f"so {'it runs' if one else 'they run'} again (--keep-stale keeps {'it' if one else 'them'}, marked " \
            f"stale on the page)"
        print(f"{len(stale)} finished cell{'s' * (len(stale) != 1)} in {out} came from other code than now, {fate}:",
              file=sys.stderr)
        for cell, why in stale.items():
            print(f"  {cell}: {why}", file=sys.stderr)


def _run_and_report(args, specs: list, *, overwrite: bool, report: bool, keep_stale: bool = False,
                    out: Path | None = None, dearest_first: bool = True, extra_records: list[dict] = ()) -> int:
    """Run the cells not finished in `out` (default args.out; progress on stderr), print the tables, build the
    leaderboard. `dearest_first=False` runs them in the given order (the study's deep tier: seed-major)."""
    out = out or args.out
    from .progress import SweepProgress
    from .sweep import pending, run_sweep
    if not overwrite:
        _say_stale(specs, out, keep_stale)
    todo = pending(specs, out, overwrite, keep_stale, dearest_first)
    threads = max(s.size_config().train.threads for s in specs)
    executor, where = _executor(args, len(todo), threads, auto="process")
    head = f"{len(specs)} cell{'s' * (len(specs) != 1)}: {len(specs) - len(todo)} already done in {out}, " \
           f"{len(todo)} to run"
    print(f"{head} {where}" if todo else head, file=sys.stderr)
    try:
        with SweepProgress(len(todo), out=out) as progress:
            on_result = _warm_report_when_a_core_idles(progress.finish, len(todo), getattr(executor, "jobs", 1)) \
                if report else progress.finish
            records = run_sweep(specs, out, executor, overwrite=overwrite, keep_stale=keep_stale,
                                dearest_first=dearest_first,
                                on_result=on_result, on_start=progress.start, on_step=progress.step)
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; rerun the same command to run what is missing", file=sys.stderr)
        return 130
    records = [*extra_records, *records]
    print(summary_table(records))
    if vs := baseline_table(records):
        print("\n" + vs)
    if report:
        from .report import build_report
        print(f"leaderboard: {build_report(out, warn=_warn)}")
    return 0 if all(r["status"] == "ok" for r in records) else 1


def _warm_report_when_a_core_idles(on_result, cells: int, workers: int):
    """Wrap on_result: once fewer cells remain running than there are workers (nothing pending, a core idle),
    import the report's libraries (pandas, matplotlib, seaborn, jinja2: seconds) on a thread, so the page is built
    right after the last cell instead of after those imports too."""
    done = 0

    def wrapped(record: dict) -> None:
        nonlocal done
        done += 1
        on_result(record)
        if workers > 1 and done == max(1, cells - workers + 1):
            threading.Thread(target=importlib.import_module, args=("collapse_bench.report.build",), daemon=True).start()
    return wrapped


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _executor(args, cells: int, threads: int = 1, auto: str = "serial") -> tuple[object, str]:
    """The executor and where it runs the cells. `--executor auto` becomes `auto` (`process` for run: cores /
    train.threads workers; `serial` for tune: --jobs or 1) capped at the number of cells, and `serial` (in this
    process) when that leaves one worker."""
    from .executor import ExecutorError, default_jobs, make_executor
    kind, jobs = args.executor, args.jobs
    if jobs is not None and jobs < 1:
        raise ExecutorError(f"--jobs must be >= 1, got {jobs}")
    if kind in ("auto", "process"):
        one_by_default = kind == "auto" and auto == "serial"
        jobs = min(jobs or (1 if one_by_default else default_jobs(threads)), max(cells, 1))
        kind = "process" if kind == "process" or jobs > 1 else "serial"
    ex = make_executor(kind, address=args.ray_address, num_cpus=args.num_cpus, retries=args.retries, jobs=jobs,
                       threads=threads)
    if kind == "process":
        return ex, f"on {jobs} worker process{'es' * (jobs > 1)}, {threads} torch thread{'s' * (threads > 1)} each"
    return ex, "on Ray" if kind == "ray" else "in this process"


def cmd_tune(args) -> int:
    import optuna

    from .tune import tune
    settings = _run_settings(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # the driver prints one line per trial itself
    try:
        res = tune(args.method, args.dataset, args.size, out=args.out, trials=args.trials, objective=args.objective,
                   storage=args.storage, study_name=args.study, executor=_executor(args, args.trials)[0], seed=args.seed,
                   data_dir=args.data_dir, settings=settings, device=args.device, pruner=args.pruner)
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept in the study; rerun the same command to resume",
              file=sys.stderr)
        return 130
    print(f"study {res.study_name}: {res.n_finished} finished trials ({res.ran} run now), storage {res.storage}")
    if res.best:
        params = ", ".join(f"{k}={shown(v)}" for k, v in res.best["tuned_params"].items())
        print(f"best: trial {res.best['trial']}  {res.objective}={res.best['value']:.4g}  {params}")
    for kind, path in res.files.items():
        print(f"{kind}: {path}")
    return 0 if res.best else 1


def cmd_study(args) -> int:
    """The study's tiers (config.STUDY_TIERS: quick, deep), each into OUT/<tier>/ with its leaderboard. Resumable:
    a rerun runs only the cells without a result of the code now, and on finished results rebuilds the same pages."""
    if args.set or args.threads is not None:
        raise ConfigError("study: its configuration is fixed (config.STUDY_TIERS and the sizes `study` and `deep` in "
                          "collapse_bench/config.py) so that its results stay one study; drop --set/--threads, or use "
                          "`run --size study --set ...` with another --out for a variation")
    from .config import STUDY_TIERS
    from .study import study_tiers
    _check_out(args.out)
    names = list(STUDY_TIERS) if args.tier == "all" else _required("--tier", args.tier, "quick")
    methods = _csv(args.methods) if args.methods else None
    tiers = study_tiers(names, args.out, args.seeds, methods, data_dir=args.data_dir, device=args.device)
    status = 0
    for t in tiers:
        print(f"tier {t.tier.name} (size {t.tier.size}): {len(t.specs)} cells into {t.out}")
        for method, board, why in t.left_out:
            print(f"  {method} is not run on {board}: {why}")
        for method, (seeds, why) in t.tier.fewer_seeds.items():
            if method in t.methods:
                print(f"  {method} runs seeds {','.join(map(str, seeds))}: {why}")
        keep = t.tier.keep_stale and not args.rerun_stale
        status = max(status, _run_and_report(args, t.specs, overwrite=False, report=True, out=t.out,
                                             keep_stale=keep, dearest_first=False))
    from .report.tiers import build_study_tiers, study_tiers as finished_tiers
    if finished_tiers(args.out, list(STUDY_TIERS)):    # the tiers side by side: tiers.md, drift.md, index.html
        print(build_study_tiers(args.out, list(STUDY_TIERS), warn=_warn))
    return status


def cmd_check(args) -> int:
    """The contract and the invariant of each named method (plug-ins included), before a sweep."""
    from .contract import check_method
    from .config import size_config
    from .sweep import SECTIONS, section_overrides
    names = [registry.get(m).name for m in _required("check", ",".join(args.methods), "bnvae")]
    settings = _settings(args.set)
    bad = sorted(set(settings) - set(SECTIONS))
    if bad:
        raise ConfigError(f"check --set {bad[0]}.…: only SECTION.FIELD values ({', '.join(SECTIONS)}), e.g. "
                          f"--set model.decoder=cnn; a method's parameters are checked at their defaults")
    overrides = section_overrides(settings)
    size_config("smoke", "synthetic").replace(**overrides)       # a bad value: exit 2 before anything trains
    failed = 0
    for name in names:
        print(f"{name}:" + (f" ({_shown_overrides(overrides)})" if overrides else ""))
        for o in check_method(name, on_outcome=lambda o: print(f"  [{o.status}] {o.check}: {o.detail}", flush=True),
                              overrides=overrides):
            failed += o.status == "fail"
    print(f"{failed} check{'s' * (failed != 1)} failed" if failed else "every check passed")
    return 1 if failed else 0


def _shown_overrides(overrides: dict[str, dict]) -> str:
    return ", ".join(f"{sec}.{k}={v}" for sec, vals in overrides.items() for k, v in vals.items())


def cmd_rescore(args) -> int:
    """Score the kept models of a finished run again, with changed evaluation settings, into another folder."""
    from .config import size_config
    from .rescore import rescore
    from .sweep import section_overrides
    settings = _settings(args.set)
    if set(settings) - {"eval"}:
        raise ConfigError(f"rescore --set {sorted(set(settings) - {'eval'})[0]}.…: only eval.FIELD=VALUE (a model is "
                          f"scored again, not retrained), e.g. --set eval.iw_samples=500")
    overrides = section_overrides(settings).get("eval", {})
    size_config("smoke", "synthetic").replace(eval=overrides)       # a bad value: exit 2 before anything is read
    if not (args.dir / "results").is_dir():
        raise ConfigError(f"rescore {args.dir}: no results/ folder there; give the --out folder of a finished run")
    dest = args.out or args.dir.with_name(args.dir.name + "-rescored")
    methods = [registry.get(m).name for m in _csv(args.methods)] or None
    records = rescore(args.dir, dest, overrides, methods, args.data_dir, args.device,
                      on_record=lambda r: print(f"{r['cell']}: NLL {r['metrics']['nll']:.3f}", flush=True))
    from .report import build_report
    print(f"{len(records)} cells rescored into {dest}; {build_report(dest, None, warn=_warn)}")
    return 0


def cmd_report(args) -> int:
    d: Path = args.dir
    if not d.is_dir():
        raise ConfigError(f"report {d}: {'not a folder' if d.exists() else 'no such folder'}; give the --out folder "
                          f"of a run (it holds results/), e.g. python -m collapse_bench report runs/latest")
    if not any((d / "results").glob("*.json")) and not (d / "results.jsonl").is_file():
        from .config import STUDY_TIERS
        from .report.tiers import build_study_tiers, study_tiers
        if study_tiers(d, list(STUDY_TIERS)):         # the study's root: its tiers' pages, tiers.md, index.html
            print(build_study_tiers(d, list(STUDY_TIERS), warn=_warn))
            return 0
        raise ConfigError(f"report {d}: no result files in {d / 'results'} (nor {d / 'results.jsonl'}); give the "
                          f"--out folder of a run, or run one first: python -m collapse_bench run --out {d}")
    from .report import build_report
    print(build_report(d, args.output, warn=_warn))
    return 0


def _execution_args(p: argparse.ArgumentParser) -> None:
    """Where and how cells run; shared by `run` and `tune`."""
    p.add_argument("--data-dir", default=None, help="corpus folder (or set COLLAPSE_BENCH_DATA)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.PARAM=VALUE",
                   help="set a method hyperparameter or a size field (train.epochs=3); repeatable")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: the size's, 1)")
    p.add_argument("--executor", choices=("auto", "serial", "process", "ray"), default="auto",
                   help="auto (default): `run` puts several cells on worker processes, one per core, and a single "
                        "cell in this process; `tune` runs trials here unless --jobs > 1. serial: one after another "
                        "here; process: worker processes; ray: Ray tasks (embedded, or --ray-address)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="cells at once (default: cores / train.threads for run, 1 for tune)")
    p.add_argument("--ray-address", default=None, help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded Ray (default: all)")
    p.add_argument("--retries", type=int, default=0, help="retries of a cell whose worker died")


def _list_parser(sub: "argparse._SubParsersAction") -> None:
    ls = sub.add_parser("list", help="methods with descriptions and hyperparameters; `list METHOD` for one in full")
    ls.add_argument("method", nargs="?", default=None,
                    help="one method (or alias): its paper, what it does, each parameter's type, default, range and "
                         "meaning, its search space, its cost relative to vanilla and the paper rows it reproduces")
    ls.add_argument("--presets", action="store_true", help="the named paper configurations and the rows they reproduce")
    ls.set_defaults(fn=cmd_list)


def _run_parser(sub: "argparse._SubParsersAction") -> None:
    r = sub.add_parser("run", help="train and score methods × datasets × seeds")
    r.add_argument("--methods", default=None, help="comma-separated method names (see `list`; default vanilla)")
    r.add_argument("--presets", default=None, metavar="NAMES",
                   help="comma-separated paper configurations, e.g. bnvae-0.7,ae-fb-4 (see `list --presets`)")
    r.add_argument("--dataset", default="synthetic", help=f"comma-separated, from {', '.join(DATASETS)}")
    r.add_argument("--size", default="default", help=f"comma-separated, from {', '.join(SIZES)}")
    r.add_argument("--seeds", type=_seeds, default=[0], metavar="0,1,2",
                   help="comma-separated run seeds: each method × dataset × size runs once per seed (default: 0)")
    r.add_argument("--out", default="runs/latest", type=Path, metavar="OUT",
                   help="folder of the run: one result per cell in OUT/results/, the leaderboard OUT/leaderboard.html; "
                        "its finished cells are reused (default: runs/latest)")
    _execution_args(r)
    r.add_argument("--overwrite", action="store_true", help="rerun cells that already have a result")
    r.add_argument("--no-report", action="store_true", help="do not build the leaderboard at the end")
    r.add_argument("--keep-stale", action="store_true",
                   help="reuse finished cells whose code (the method's or the harness's) has changed since they ran, "
                        "marked stale on the page (default: run them again)")
    r.add_argument("--no-baseline", action="store_true",
                   help="do not add vanilla (by default every dataset/size/seed/--set of --methods also runs vanilla, or "
                        "reuses its finished cell in OUT, and the summary shows each method's difference to it; "
                        "--presets alone add none: a preset's board is its paper's row)")
    r.add_argument("--against", default=None, type=Path, metavar="DIR",
                   help="rank the methods against DIR's finished cells of the same dataset, size, seeds, settings, "
                        "code and scoring (e.g. reports/study/quick) instead of rerunning vanilla; only the new "
                        "cells run; DIR is only read")
    r.add_argument("--params-from", default=None, type=Path, metavar="DIR",
                   help="use the best tuned params of each method from DIR/tune/*.best.json (or one such file); "
                        "--set still overrides them")
    r.set_defaults(fn=cmd_run)


def _study_parser(sub) -> None:
    st = sub.add_parser("study", help="the published study's tiers: quick (every remedy x decoder on short-Yelp, "
                                      "the LSTM on PTB) and deep (11x the training, the LSTM on short-Yelp); 3 seeds "
                                      "(resumable; a rerun on finished results only rebuilds the pages)")
    st.add_argument("--out", default="reports/study", type=Path, help="the tiers go to OUT/quick and OUT/deep")
    st.add_argument("--tier", default="all", help="quick, deep or all (default)")
    st.add_argument("--rerun-stale", action="store_true",
                    help="rerun the deep tier's cells of earlier code too (by default it keeps them, marked)")
    st.add_argument("--seeds", type=_seeds, default=None, help="default 0,1,2")
    st.add_argument("--methods", default="", help="only these of the tier's methods (comma-separated; default: all)")
    _execution_args(st)
    st.set_defaults(fn=cmd_study)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m collapse_bench",
                                description="Benchmark of posterior-collapse remedies for LSTM text VAEs.")
    sub = p.add_subparsers(dest="command", required=True)
    _list_parser(sub)
    _run_parser(sub)

    t = sub.add_parser("tune", help="Optuna study over a method's search space (resumable)")
    t.add_argument("--method", required=True, help="method to tune (see `list`)")
    t.add_argument("--dataset", default="synthetic", help=f"one of {', '.join(DATASETS)}")
    t.add_argument("--size", default="default", help=f"one of {', '.join(SIZES)}")
    t.add_argument("--trials", type=int, default=20, help="total finished trials wanted; a rerun resumes up to it")
    t.add_argument("--out", default="runs/latest", type=Path,
                   help="study, best params and history go to OUT/tune/, each trial's result to OUT/results/")
    t.add_argument("--objective", default="nll",
                   help="nll, ppl, elbo (minimised); mi, au, kl, probe@N e.g. probe@100 (maximised); measured "
                        "on the validation split (nll/ppl/elbo: the kept model's validation -ELBO), never on test; "
                        "default: nll")
    t.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna RDB URL (e.g. postgresql://... shared by a cluster); default: OUT/tune/<study>.journal")
    t.add_argument("--study", default=None, help="study name (default: from method, dataset, size, objective, seed)")
    t.add_argument("--seed", type=int, default=0, help="run seed of every trial, and the TPE sampler's seed")
    t.add_argument("--pruner", choices=("median", "none"), default="median",
                   help="prune on the per-epoch validation curve (median stopping rule) or not")
    _execution_args(t)
    t.set_defaults(fn=cmd_tune)

    _study_parser(sub)

    ck = sub.add_parser("check", help="check that a method is well formed (contract and invariant) before a sweep",
                        description="Train each method briefly (smoke size, one epoch, small corpus) and check the "
                                    "contract every method keeps and the method's own Method.invariant; exit 1 "
                                    "if any check fails.")
    ck.add_argument("methods", nargs="+", metavar="METHOD", help="registered names or aliases (plug-ins too)")
    ck.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="a size field every check uses, e.g. model.decoder=cnn; repeatable")
    ck.set_defaults(fn=cmd_check)

    rs = sub.add_parser("rescore", help="score a run's kept models again (no retraining) into another folder")
    rs.add_argument("dir", type=Path, help="the --out folder of a finished run (its models/ and results/)")
    rs.add_argument("--set", action="append", default=[], metavar="eval.FIELD=VALUE",
                    help="an evaluation setting to change, e.g. eval.iw_samples=500; repeatable")
    rs.add_argument("--out", type=Path, default=None, help="where the rescored records go (default: DIR-rescored)")
    rs.add_argument("--methods", default="", help="only these methods' cells (comma-separated; default: all)")
    rs.add_argument("--data-dir", default=None, help="corpus folder (or set COLLAPSE_BENCH_DATA)")
    rs.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    rs.set_defaults(fn=cmd_rescore)
    rep = sub.add_parser("report", help="build the HTML leaderboard from DIR/results")
    rep.add_argument("dir", type=Path)
    rep.add_argument("-o", "--output", type=Path, default=None)
    rep.set_defaults(fn=cmd_report)
    return p


def _unrecognized(args: argparse.Namespace, extra: list[str]) -> str:
    """argparse's "unrecognized arguments", naming the fix where a --set value was written with a space."""
    spaced = [item for item in getattr(args, "set", []) if "=" not in item]
    if spaced and extra and not extra[0].startswith("-"):
        return (f"--set {spaced[0]} {extra[0]}: write the value after '=' with no space: --set {spaced[0]}={extra[0]} "
                f"(--set METHOD.PARAM=VALUE or SECTION.FIELD=VALUE)")
    return f"unrecognized arguments: {' '.join(extra)}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.error(_unrecognized(args, extra))     # exits 2
    try:
        return args.fn(args)
    except (UnknownMethodError, UnknownPresetError, ConfigError, ParamError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
