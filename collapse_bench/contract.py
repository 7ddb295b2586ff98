"""The contract every method keeps, checkable on one method before a sweep: `python -m collapse_bench check NAME`
(benchopt's `benchopt test` is the model). Built-in methods and plug-ins alike: registered with a description,
valid typed defaults and search space, accepted at every size, trains to finite metrics moving both encoder and
decoder, reproducible for a seed, survives a checkpoint, and its own `Method.invariant` holds on the trained run."""
from __future__ import annotations

import dataclasses
import io
import math
import typing
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import evaluate as ev
from . import registry
from .cell import CellSpec, build_trainer
from .config import SIZES, size_config
from .context import TrainedRun
from .method import Method

CHECK_OVERRIDES = {"train": {"epochs": 1}, "eval": {"probe_repeats": 1},
                   "limits": {"max_train": 400, "max_valid": 100, "max_test": 100}}


@dataclass(frozen=True)
class Outcome:
    check: str
    status: str          # pass | fail | skip
    detail: str = ""


@dataclass
class _Trained:
    run: TrainedRun
    before: dict[str, torch.Tensor]
    seed: int = 0


def _overrides(extra: dict[str, dict] | None) -> dict[str, dict]:
    """CHECK_OVERRIDES with the caller's SECTION.FIELD values on top (e.g. {"model": {"decoder": "cnn"}})."""
    return {sec: {**CHECK_OVERRIDES.get(sec, {}), **(extra or {}).get(sec, {})}
            for sec in {*CHECK_OVERRIDES, *(extra or {})}}


def _train(name: str, dataset: str, seed: int = 0, overrides: dict[str, dict] | None = None) -> _Trained:
    trainer = build_trainer(CellSpec(name, dataset, "smoke", seed, registry.get(name).Params().to_dict(),
                                     overrides=_overrides(overrides)))
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    metrics = ev.score(trainer.method, trainer.model, trainer.corpus, trainer.cfg.eval, trainer.device, seed)
    run = TrainedRun(trainer.method, trainer.model, trainer.cfg, trainer.corpus, trainer.train_batches, metrics)
    return _Trained(run, before, seed)


def check_registered(name: str) -> str:
    cls = registry.get(name)
    assert issubclass(cls, Method), f"{cls!r} is not a Method"
    assert len(cls.description()) >= 20, "give the class a one-line docstring saying what the method does " \
                                         "(its paper, its change), shown by `list`"
    return cls.description()


def check_params(name: str) -> str:
    cls = registry.get(name)
    defaults = cls.Params()
    hints = typing.get_type_hints(cls.Params)
    fields = [f.name for f in dataclasses.fields(cls.Params)]
    untyped = [f for f in fields if f not in hints]
    assert not untyped, f"Params fields without a type: {untyped}"
    silent = [f.name for f in dataclasses.fields(cls.Params) if not f.metadata.get("help")]
    assert not silent, f"say what {', '.join(silent)} mean(s): declare each field with param(default, meaning, " \
                       f"ge=/gt=/le=/lt=) (collapse_bench.method.param); `list {name}` shows it"
    again = cls.Params.from_strings(name, {k: str(v) for k, v in defaults.to_dict().items()})
    assert again == defaults, f"the defaults do not survive --set as strings: {again} != {defaults}"
    return f"{len(fields)} typed field(s) with their meanings, defaults valid"


def check_search_space(name: str) -> str:
    cls = registry.get(name)
    try:
        import optuna
    except ImportError:
        return "skip: Optuna is not installed (pip install 'collapse-bench[tune]')"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    space = cls.Params.search_space(trial)
    if not space:
        return "skip: nothing to tune (Params.search_space returns {})"
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    assert set(space) <= fields, f"search space names {sorted(set(space) - fields)}, not Params fields"
    cls.Params(**{**cls.Params().to_dict(), **space})
    return f"suggests {', '.join(sorted(space))}; a draw is valid"


def check_sizes(name: str, dataset: str, overrides: dict[str, dict] | None = None) -> str:
    method = registry.get(name)()
    for size in SIZES:
        method.check_config(size_config(size, dataset).replace(**(overrides or {})))
    return f"accepted at {', '.join(SIZES)}"


def check_trains(t: _Trained) -> str:
    m, run = t.run.metrics, t.run
    bad = [k for k in ("nll", "ppl", "elbo", "recon", "kl", "mi") if not math.isfinite(m[k])]
    assert not bad, f"non-finite metrics {bad}"
    assert 0 <= m["au"] <= run.cfg.model.nz, f"AU {m['au']} outside [0, nz]"
    after = run.model.state_dict()
    moved = {k.split(".")[0] for k, v in t.before.items() if v.is_floating_point() and not torch.equal(v, after[k])}
    parts = {"encoder", "decoder"} if run.model.has_latent else {"decoder"}
    assert parts <= moved, f"training never changed the {' and '.join(sorted(parts - moved))}"
    return f"NLL {m['nll']:.2f}, KL {m['kl']:.2f}, AU {m['au']}; {' and '.join(sorted(parts))} trained"


def check_deterministic(t: _Trained, name: str, dataset: str, overrides: dict[str, dict] | None = None) -> str:
    again = _train(name, dataset, overrides=overrides).run.metrics
    diff = [k for k in ("nll", "elbo", "kl", "mi", "au") if again[k] != t.run.metrics[k]]
    assert not diff, f"a second run with the same seed differs in {diff}: draw randomness from torch's seeded " \
                     f"generators or ctx.rng, not from an unseeded source"
    return "a second run with the same seed gives identical metrics"


def check_checkpoint(t: _Trained) -> str:
    """What `rescore` relies on: a model rebuilt from its state_dict (loaded as data) scores exactly as it did."""
    run = t.run
    buf = io.BytesIO()
    torch.save(run.model.state_dict(), buf)
    buf.seek(0)
    fresh = run.method.build_model(run.cfg.model, len(run.corpus.vocab))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    again = ev.score(run.method, fresh, run.corpus, run.cfg.eval, "cpu", t.seed)
    diff = [k for k, v in run.metrics.items() if again.get(k) != v and not (v != v and again.get(k) != again.get(k))]
    assert not diff, f"a model rebuilt from its state_dict scores differently in {diff}: keep every learned " \
                     f"tensor in a registered parameter or buffer, and draw scoring randomness from torch"
    return "a model rebuilt from its state_dict scores identically (rescore)"


def check_invariant(t: _Trained) -> str:
    method = t.run.method
    if type(method).invariant is Method.invariant:
        return "skip: no invariant declared (override Method.invariant to check what the method guarantees)"
    method.invariant(t.run)
    return "Method.invariant holds on the trained run"


def check_method(name: str, dataset: str = "synthetic", on_outcome: Callable[[Outcome], None] | None = None,
                 overrides: dict[str, dict] | None = None) -> list[Outcome]:
    """Run every check on `name` (smoke size, one epoch on a small corpus); each failure says what to fix.
    `overrides`: typed SECTION.FIELD values every check uses, e.g. {"model": {"decoder": "cnn"}}."""
    name = registry.get(name).name
    outcomes: list[Outcome] = []
    trained: list[_Trained] = []

    def first() -> _Trained:
        return _first(trained, name, dataset, overrides)
    steps = [("registered", lambda: check_registered(name)), ("params", lambda: check_params(name)),
             ("search space", lambda: check_search_space(name)),
             ("sizes", lambda: check_sizes(name, dataset, overrides)),
             ("trains", lambda: check_trains(first())),
             ("deterministic", lambda: check_deterministic(first(), name, dataset, overrides)),
             ("checkpoint", lambda: check_checkpoint(first())),
             ("invariant", lambda: check_invariant(first()))]
    for check, fn in steps:
        outcome = _outcome(check, fn)
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)
    return outcomes


def _first(trained: list, name: str, dataset: str, overrides: dict[str, dict] | None = None) -> _Trained:
    """The run the checks share, trained once (a failure to train is reported by each check that needs it)."""
    if not trained:
        try:
            trained.append(_train(name, dataset, overrides=overrides))
        except Exception as e:  # noqa: BLE001
            trained.append(e)
    if isinstance(trained[0], Exception):
        raise trained[0]
    return trained[0]


def _outcome(check: str, fn: Callable[[], str]) -> Outcome:
    try:
        detail = fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported, the other checks still run
        return Outcome(check, "fail", f"{type(e).__name__}: {e}")
    if detail.startswith("skip: "):
        return Outcome(check, "skip", detail.removeprefix("skip: "))
    return Outcome(check, "pass", detail)
