"""Optuna studies over a method's declared search space (`Params.search_space(trial)`).

Plain Optuna with ask/tell, trials run through the same executors as sweeps (`serial` one at a time here,
`process` or `ray` as many at once as --jobs / the CPU slots allow); no Ray Tune.

* Storage: by default a journal file `OUT/tune/<study>.journal` (`JournalStorage(JournalFileBackend)`,
  safe for several processes on one machine or a shared file system). `storage=` takes an RDB URL instead
  (`postgresql://...` for a study shared by a cluster; `sqlite:///...` works but then only this driver
  writes to it). Rerunning the same command resumes the study: it runs trials until `trials` of them are
  finished (complete or pruned); failed trials do not count and are replaced.
* Sampler: `TPESampler(seed=S + number of trials already in the study)`. Samplers are not stored in the
  study, so it is recreated on every run from the same `--seed`; the offset keeps a resumed study from
  replaying the random start-up suggestions its first trials already tried.
* Direction from the objective: minimise nll, ppl, elbo (the metrics are −ELBO-style losses); maximise mi,
  au, kl (collapse remedies aim at a used latent) and probe@N (accuracy). Its value is read on the validation
  split (`Objective.value`): selecting hyperparameters on the test split the leaderboard reports would bias it.
* Pruning on the validation curve: the trainer validates after every epoch; each trial's cell adds a training
  callback (`TrialPruner`) that, in the worker, reports the epoch's curve value to the trial
  (`trial.report(value, epoch)`) and `trial.should_prune()` is asked; a pruned run stops there (raising
  `optuna.TrialPruned`, which `run_cell` records) and skips the test-set scoring. The curve value follows
  the objective: `valid_loss` for nll/ppl/elbo, `valid_mi` for mi (and for probe, as its proxy),
  `valid_au` for au, `valid_kl` for kl. The default pruner is `MedianPruner(n_startup_trials=4,
  n_warmup_steps=ceil(train.warm_up) + 1)`: nothing is pruned during KL warm-up (steps are epochs, and Optuna
  prunes from step == n_warmup_steps on). Where a worker cannot open
  the study (a journal file not visible on a remote node, SQLite), the driver reports the finished run's
  curve instead, which still informs later pruning decisions but cannot stop that run.
* Each finished trial's full record is written as a normal result file `OUT/results/<cell>.json` (with a
  `tune` entry naming the study and trial), so the leaderboard sees it; pruned trials have no result file.
  A trial whose cell already has an `ok` result (same params, seed and overrides) reuses it.
* After every trial: `OUT/tune/<study>.best.json` (method, params, value, objective, ...) and
  `OUT/tune/<study>.history.csv` (number, state, value, params, ...); at the end
  `OUT/tune/<study>.importances.json` once there are >= 2 complete trials.
"""
from __future__ import annotations

import csv
import json
import math
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import registry
from .cell import CellSpec, run_cell
from .context import TrainCallback
from .executor import SerialExecutor
from .executors.base import CellError
from .fileio import atomic_write_text
from .store import CellResult, ResultStore, build_record, failed_result, now, safe_name, short_hash
from .sweep import expand, method_settings

METRIC_DIRECTIONS = {"nll": "minimize", "ppl": "minimize", "elbo": "minimize",
                     "mi": "maximize", "au": "maximize", "kl": "maximize", "probe": "maximize"}
CURVE_KEYS = {"nll": "valid_loss", "ppl": "valid_loss", "elbo": "valid_loss",
              "mi": "valid_mi", "au": "valid_au", "kl": "valid_kl", "probe": "valid_mi"}
PRUNERS = ("median", "none")


class TuneError(ValueError):
    pass


def _optuna():
    try:
        import optuna
    except ImportError as e:  # pragma: no cover - depends on the install
        raise TuneError("tuning needs Optuna: pip install 'collapse-bench[tune]' (optuna>=5,<6)") from e
    return optuna


# --- objective ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    metric: str                 # nll, ppl, elbo, mi, au, kl, probe
    labels: int | None = None   # probe@N

    @classmethod
    def parse(cls, text: str) -> "Objective":
        name, at, n = text.strip().lower().partition("@")
        if name not in METRIC_DIRECTIONS:
            raise TuneError(f"unknown objective {text!r}; choose one of "
                            f"{', '.join(m for m in METRIC_DIRECTIONS if m != 'probe')}, probe@N (e.g. probe@100)")
        if name == "probe":
            if not (at and n.isdigit() and int(n) > 0):
                raise TuneError(f"objective {text!r}: write probe@N with N a number of labels, e.g. probe@100")
            return cls("probe", int(n))
        if at:
            raise TuneError(f"objective {text!r}: only probe takes @N")
        return cls(name)

    @property
    def name(self) -> str:
        return f"probe@{self.labels}" if self.metric == "probe" else self.metric

    @property
    def slug(self) -> str:
        return f"probe{self.labels}" if self.metric == "probe" else self.metric

    @property
    def direction(self) -> str:
        return METRIC_DIRECTIONS[self.metric]

    @property
    def curve_key(self) -> str:
        return CURVE_KEYS[self.metric]

    def value(self, record: dict) -> float:
        """The objective on the validation split, never on the test split the leaderboard reports: nll, ppl and
        elbo read the selected model's validation −ELBO (the protocol's model-selection criterion: one ranking for
        all three, as each is monotone in it on fixed data); mi, au and kl the selected epoch's validation figure;
        probe@N the probe's validation accuracy at N labels (that of its chosen C)."""
        if self.metric == "probe":
            probe = (record.get("metrics") or {}).get("probe") or {}
            entry = probe.get(str(self.labels))
            if entry is None:
                raise KeyError(f"the record has no probe@{self.labels} (probe sizes: {sorted(probe, key=int) or 'none'})")
            if "valid_mean" not in entry:
                raise KeyError(f"the record's probe@{self.labels} has no validation accuracy (a record from before "
                               f"it was kept): run the cell again")
            return float(entry["valid_mean"])
        point = selected_point(record)
        if self.curve_key not in point:
            raise KeyError(f"the record's selected epoch has no {self.curve_key!r}")
        return float(point[self.curve_key])


def selected_point(record: dict) -> dict:
    """The whole-epoch curve point of the model the run kept: the last with train.select='last', else the one whose
    validation criterion (−ELBO, or reconstruction for methods selected on it) is the run's best_valid."""
    points = [p for p in record.get("curves") or [] if not p.get("partial")]
    if not points:
        raise KeyError("the record has no validation curve")
    if ((record.get("config") or {}).get("train") or {}).get("select") == "last":
        return points[-1]
    best = (record.get("timing") or {}).get("best_valid")
    chosen = [p for p in points if best is not None and best in (p.get("valid_loss"), p.get("valid_recon"))]
    return chosen[0] if chosen else min(points, key=lambda p: p.get("valid_loss", math.inf))


# --- storage -----------------------------------------------------------------------------------------
_RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql", "oracle", "mssql")


def is_rdb(storage: str) -> bool:
    return storage.startswith(_RDB_PREFIXES)


def open_storage(storage: str):
    """An RDB URL, or a journal file path (optionally written `journal:PATH`)."""
    optuna = _optuna()
    if is_rdb(storage):
        return optuna.storages.RDBStorage(storage)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    path = Path(storage.removeprefix("journal:")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_pruner(pruner: Any, warmup_epochs: int):
    optuna = _optuna()
    if pruner is None or pruner == "none":
        return optuna.pruners.NopPruner()
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=warmup_epochs)
    if isinstance(pruner, str):
        raise TuneError(f"unknown pruner {pruner!r}; choose one of {', '.join(PRUNERS)}")
    return pruner  # an optuna pruner instance


# --- what a worker needs to report to its trial ------------------------------------------------------
@dataclass(frozen=True)
class StudyRef:
    storage: str                 # journal path or RDB URL
    study_name: str
    pruner: Any                  # an optuna pruner (picklable)
    curve_key: str
    report_in_worker: bool


def open_trial(ref: StudyRef, number: int):
    """Trial `number` of the study, opened from the process that trains it; None where this process cannot see
    the study (a journal file not visible on a remote node, an error): the driver then reports afterwards."""
    if not is_rdb(ref.storage) and not Path(ref.storage.removeprefix("journal:")).expanduser().exists():
        return None
    optuna = _optuna()
    try:
        storage = open_storage(ref.storage)
        study = optuna.load_study(study_name=ref.study_name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler(), pruner=ref.pruner)
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(ref.study_name), number)
        return optuna.trial.Trial(study, trial_id)
    except Exception as e:  # noqa: BLE001 - pruning is an optimisation; never fail the run for it
        print(f"tune: cannot report to study {ref.study_name!r} from this worker ({type(e).__name__}: {e}); "
              f"the driver reports the curve after the run", file=sys.stderr)
        return None


class TrialPruner(TrainCallback):
    """After each epoch's validation: report its curve value to the trial and stop the run (`optuna.TrialPruned`,
    recorded by `run_cell` as the cell's error) when the study's pruner says so."""

    def __init__(self, ref: StudyRef, number: int):
        self.ref, self.number = ref, number
        self._trial, self._opened = None, False

    def on_epoch_end(self, epoch: int, point: dict) -> None:
        value = point.get(self.ref.curve_key)
        if value is None or not math.isfinite(float(value)):
            return
        if not self._opened:
            self._trial, self._opened = open_trial(self.ref, self.number), True
        if self._trial is None:
            return
        self._trial.report(float(value), epoch)
        if self._trial.should_prune():
            raise _optuna().TrialPruned(f"pruned after epoch {epoch}: {self.ref.curve_key}={float(value):.4g}")


@dataclass
class TrialSpec(CellSpec):
    """A cell run as an Optuna trial: its training reports the validation curve to the trial as it goes."""
    trial_number: int = -1
    study_ref: StudyRef | None = None

    def callbacks(self) -> list[TrainCallback]:
        ref = self.study_ref
        return [TrialPruner(ref, self.trial_number)] if ref and ref.report_in_worker and self.trial_number >= 0 else []


# --- the study ---------------------------------------------------------------------------------------
@dataclass
class TuneResult:
    study_name: str
    storage: str
    direction: str
    objective: str
    n_finished: int
    ran: int
    best: dict | None
    files: dict[str, Path] = field(default_factory=dict)


def default_study_name(method: str, dataset: str, size: str, objective: Objective, seed: int,
                       fixed: dict, overrides: dict) -> str:
    name = f"{method}__{dataset}__{size}__{objective.slug}__seed{seed}"
    if fixed or overrides:
        name += f"__cfg{short_hash({'params': fixed, 'overrides': overrides})}"
    return safe_name(name)


def tune_dir(out: str | Path) -> Path:
    return Path(out) / "tune"


def _has_search_space(cls) -> bool:
    optuna = _optuna()
    try:
        return bool(cls.Params.search_space(optuna.trial.FixedTrial({})))
    except (ValueError, KeyError, AttributeError):
        return True   # it asked for a parameter the empty FixedTrial does not have


def _driver_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail_stale_trials(study, log: Callable[[str], None]) -> None:
    """RUNNING trials left by a driver on this host that no longer exists (killed mid-study) become FAIL."""
    optuna = _optuna()
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        tag = t.user_attrs.get("driver", "")
        h, _, pid = tag.rpartition(":")
        if h == host and pid.isdigit() and not _pid_alive(int(pid)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            log(f"tune: trial {t.number} was left running by a dead driver ({tag}); marked failed")


def tune(method: str, dataset: str = "synthetic", size: str = "smoke", *, out: str | Path, trials: int = 20,
         objective: str = "nll", storage: str | None = None, study_name: str | None = None, executor=None,
         seed: int = 0, data_dir: str | None = None, settings: dict[str, dict[str, str]] | None = None,
         device: str = "cpu", pruner: Any = "median", fn: Callable[..., CellResult] = run_cell,
         reuse: bool = True, on_trial: Callable[[dict], None] | None = None,
         log: Callable[[str], None] | None = None) -> TuneResult:
    """Run (or resume) a study until `trials` trials are finished; see the module docstring."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if trials < 1:
        raise TuneError(f"--trials must be >= 1, got {trials}")
    obj = Objective.parse(objective)
    cls = registry.get(method)
    base = expand([cls.name], [dataset], [size], [seed], settings, data_dir=data_dir, device=device)[0]
    _check_tunable(cls, obj, base, size)
    fixed = method_settings(settings or {}, cls)
    name = study_name or default_study_name(cls.name, dataset, size, obj, seed, fixed, base.overrides)
    tdir = tune_dir(out)
    tdir.mkdir(parents=True, exist_ok=True)
    run = StudyRun(cls, base, obj, name, storage or str(tdir / f"{name}.journal"), ResultStore(out),
                   pruner, log, on_trial)
    files = {"best": tdir / f"{name}.best.json", "history": tdir / f"{name}.history.csv",
             "importances": tdir / f"{name}.importances.json", **({} if storage else {"storage": run.storage_url})}
    run.files = files
    run.run(trials, executor or SerialExecutor(), fn, reuse)
    best = json.loads(files["best"].read_text()) if files["best"].exists() else None
    return TuneResult(name, str(run.storage_url), obj.direction, obj.name, run.n_finished(), run.ran, best,
                      {k: Path(p) for k, p in files.items() if Path(p).exists()})


def _check_tunable(cls, obj: Objective, base: CellSpec, size: str) -> None:
    cfg = base.size_config()
    if not _has_search_space(cls):
        raise TuneError(f"method {cls.name!r} declares no search space (its Params.search_space(trial) returns {{}});"
                        f" nothing to tune")
    if obj.metric == "probe" and obj.labels not in cfg.eval.probe_labels:
        raise TuneError(f"objective {obj.name}: size {size!r} scores the probe at {list(cfg.eval.probe_labels)} "
                        f"labels; pick one of those or add it with --set eval.probe_labels=...")


class StudyRun:
    """One driver's session with a study: asks trials, hands their cells to an executor, tells the results."""

    def __init__(self, cls, base: CellSpec, obj: Objective, name: str, storage_url: str, store: ResultStore,
                 pruner: Any, log: Callable[[str], None], on_trial: Callable[[dict], None] | None):
        optuna = _optuna()
        self.cls, self.base, self.obj, self.name, self.storage_url = cls, base, obj, name, storage_url
        self.store, self.log, self.on_trial = store, log, on_trial
        warmup = math.ceil(base.size_config().train.warm_up) + 1
        self.study = optuna.create_study(study_name=name, storage=open_storage(storage_url), direction=obj.direction,
                                         load_if_exists=True, pruner=make_pruner(pruner, warmup))
        if self.study.direction.name.lower() != obj.direction:
            raise TuneError(f"study {name!r} in {storage_url} maximises/minimises differently "
                            f"({self.study.direction.name.lower()}) from objective {obj.name} ({obj.direction}); "
                            f"use another --study name")
        self.meta = {"method": cls.name, "dataset": base.dataset, "size": base.size, "seed": base.seed,
                     "objective": obj.name, "overrides": base.overrides, "fixed_params": base.params}
        self._check_owner()
        _fail_stale_trials(self.study, log)
        self.study.sampler = optuna.samplers.TPESampler(seed=base.seed + len(self.study.get_trials(deepcopy=False)))
        self.ref = StudyRef(storage_url, name, self.study.pruner, obj.curve_key,
                            report_in_worker=not storage_url.startswith("sqlite:"))
        self.in_flight: dict[int, Any] = {}   # trial number -> the asked trial waiting for its cell
        self.ran = 0
        self.files: dict[str, Path] = {}

    def _check_owner(self) -> None:
        if not self.study.user_attrs:
            for k, v in self.meta.items():
                self.study.set_user_attr(k, v)
        elif self.study.user_attrs.get("method") not in (None, self.cls.name):
            raise TuneError(f"study {self.name!r} tunes {self.study.user_attrs['method']!r}, not {self.cls.name!r}")

    def n_finished(self) -> int:
        from optuna.trial import TrialState
        return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in self.study.get_trials(deepcopy=False))

    def run(self, trials: int, executor, fn: Callable, reuse: bool) -> None:
        from optuna.trial import TrialState
        n_finished = self.n_finished()
        remaining = max(0, trials - n_finished)
        if remaining == 0:
            self.log(f"tune: study {self.name!r} already has {n_finished} finished trials (asked for {trials}); "
                     f"nothing to run")
        else:
            self.log(f"tune: study {self.name!r} ({self.obj.direction} {self.obj.name}): {n_finished} finished, "
                     f"running {remaining} more")
        try:
            if remaining:
                executor.map(fn, self.trial_specs(remaining, reuse), self.on_result, on_failure=self.on_failure)
        finally:
            # Ctrl-C or a crash of the driver's loop: trials still out are failed, so a rerun replaces them.
            for t in self.in_flight.values():
                self.study.tell(t, state=TrialState.FAIL, skip_if_finished=True)
            self.write_progress()
        write_importances(self.study, self.files["importances"])

    def trial_specs(self, remaining: int, reuse: bool):
        from optuna.trial import TrialState
        for _ in range(remaining):
            trial = self.study.ask()
            trial.set_user_attr("driver", _driver_tag())
            try:
                suggested = dict(self.cls.Params.search_space(trial))
                params = {**self.base.params, **suggested}
                self.cls.Params(**params)          # invalid combinations fail here, not in a worker
            except Exception as e:  # noqa: BLE001
                trial.set_user_attr("error", f"{type(e).__name__}: {e}")
                self.study.tell(trial, state=TrialState.FAIL)
                self.log(f"[trial {trial.number} fail] search space gave invalid params: {type(e).__name__}: {e}")
                continue
            spec = TrialSpec(**{**vars(self.base), "params": params}, trial_number=trial.number, study_ref=self.ref)
            trial.set_user_attr("params", suggested)
            trial.set_user_attr("cell", spec.cell)
            if reuse and self.store.is_done(spec.cell):
                self.finish(trial, self.store.load(spec.cell), cached=True)
                continue
            self.in_flight[trial.number] = trial
            yield spec

    def on_result(self, spec: TrialSpec, result: CellResult) -> None:
        self.finish(self.in_flight.pop(spec.trial_number), build_record(spec, result))

    def on_failure(self, spec: TrialSpec, error: CellError) -> None:
        self.on_result(spec, failed_result(spec, {"type": error.type, "message": error.message,
                                                  "traceback": error.traceback, "attempts": error.attempts}))

    def finish(self, trial, record: dict, cached: bool = False) -> None:
        """Tell the study how the trial ended; write its record (with a `tune` entry) unless it was reused."""
        err = record.get("error") or {}
        info = {"study": self.name, "trial": trial.number, "objective": self.obj.name}
        if record.get("status") == "ok":
            state, shown = self._tell_ok(trial, record, info, cached)
        elif err.get("type") == "TrialPruned":
            self._report_curve(trial, record)
            self.study.tell(trial, state=_optuna().trial.TrialState.PRUNED)
            state, shown = "pruned", err.get("message", "")
        else:
            state, shown = self._tell_fail(trial, err)
            self.store.write({**record, "tune": info})
        self.ran += not cached
        self.log(f"[trial {trial.number} {state}{' (cached)' if cached else ''}] {record.get('label')}: {shown}")
        self.write_progress()
        if self.on_trial:
            self.on_trial({"trial": trial.number, "state": state, "record": record})

    def _tell_ok(self, trial, record: dict, info: dict, cached: bool) -> tuple[str, str]:
        try:
            value = self.obj.value(record)
        except KeyError as e:
            return self._tell_fail(trial, {"type": "KeyError", "message": str(e)})
        if not math.isfinite(value):
            return self._tell_fail(trial, {"type": "NonFiniteObjective", "message": f"{self.obj.name} = {value}"})
        self._report_curve(trial, record)
        trial.set_user_attr("cached", cached)
        self.study.tell(trial, value)
        if not cached:
            self.store.write({**record, "tune": {**info, "value": value}})
        return "complete", f"{self.obj.name}={value:.4g}"

    def _tell_fail(self, trial, err: dict) -> tuple[str, str]:
        shown = f"{err.get('type')}: {err.get('message')}"
        trial.set_user_attr("error", shown)
        self.study.tell(trial, state=_optuna().trial.TrialState.FAIL)
        return "fail", shown

    def _report_curve(self, trial, record: dict) -> None:
        """Intermediate values from the finished run's curve, where the worker could not report them itself."""
        reported = next((t.intermediate_values for t in self.study.get_trials(deepcopy=False)
                         if t.number == trial.number), {})
        if reported:
            return
        for point in record.get("curves") or []:
            if point.get("partial"):    # a point inside an epoch: the pruner's steps are epochs
                continue
            value = point.get(self.obj.curve_key)
            if value is not None and math.isfinite(float(value)):
                trial.report(float(value), int(point["epoch"]))

    def write_progress(self) -> None:
        write_history(self.study, self.files["history"])
        write_best(self.study, self.files["best"], self.meta, self.name, self.storage_url)


# --- outputs -----------------------------------------------------------------------------------------
def write_history(study, path: Path) -> None:
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    names = sorted({k for t in trials for k in (t.user_attrs.get("params") or t.params)})
    rows = []
    for t in trials:
        params = t.user_attrs.get("params") or t.params
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else ""
        rows.append([t.number, t.state.name.lower(), "" if t.value is None else t.value,
                     len(t.intermediate_values), t.user_attrs.get("cached", ""), duration,
                     t.datetime_start.isoformat() if t.datetime_start else "",
                     t.user_attrs.get("cell", ""), t.user_attrs.get("error", "")]
                    + [params.get(n, "") for n in names])
    import io
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["number", "state", "value", "epochs_reported", "cached", "duration_s", "started", "cell", "error"]
               + [f"param_{n}" for n in names])
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_best(study, path: Path, meta: dict, name: str, storage: str) -> None:
    from optuna.trial import TrialState
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return
    best = study.best_trial
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    tuned = best.user_attrs.get("params") or best.params
    doc = {"study": name, "storage": storage, "method": meta["method"], "dataset": meta["dataset"],
           "size": meta["size"], "seed": meta["seed"], "objective": meta["objective"],
           "direction": study.direction.name.lower(), "value": best.value,
           "params": {**meta["fixed_params"], **tuned}, "tuned_params": tuned, "overrides": meta["overrides"],
           "trial": best.number, "cell": best.user_attrs.get("cell"), "trials": counts, "updated": now()}
    atomic_write_text(path, json.dumps(doc, indent=1, default=str) + "\n")


def write_importances(study, path: Path) -> None:
    from optuna.trial import TrialState
    optuna = _optuna()
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return
    try:
        imp = optuna.importance.get_param_importances(study)
        evaluator = "PedAnovaImportanceEvaluator (optuna default)"
    except Exception as e:  # noqa: BLE001 - e.g. a parameter that never varied
        imp, evaluator = {}, f"not computed: {type(e).__name__}: {e}"
    atomic_write_text(path, json.dumps({"study": study.study_name, "evaluator": evaluator, "n_complete": len(complete),
                                    "importances": {k: float(v) for k, v in imp.items()}, "updated": now()},
                                   indent=1) + "\n")


# --- feeding a sweep ---------------------------------------------------------------------------------
def best_files(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    for d in (p / "tune", p):
        files = sorted(d.glob("*.best.json"))
        if files:
            return files
    return []


def load_best_params(path: str | Path, methods: list[str]) -> dict[str, dict[str, Any]]:
    """{method: params} from the best-trial files under `path` (a run folder, its `tune/`, or one
    `.best.json`). A method without a file is left out; one with several files is an error (name the file)."""
    files = best_files(path)
    if not files:
        raise TuneError(f"--params-from {path}: no *.best.json found there or in its tune/ folder "
                        f"(run `python -m collapse_bench tune ... --out {path}` first)")
    docs = []
    for f in files:
        try:
            docs.append((f, json.loads(f.read_text())))
        except (OSError, json.JSONDecodeError) as e:
            raise TuneError(f"--params-from: cannot read {f}: {e}") from e
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        name = registry.get(m).name
        mine = [(f, d) for f, d in docs if d.get("method") == name]
        if len(mine) > 1:
            raise TuneError(f"--params-from {path}: {len(mine)} studies tuned {name} "
                            f"({', '.join(f.name for f, _ in mine)}); pass the one to use: --params-from FILE")
        if mine:
            out[name] = dict(mine[0][1].get("params") or {})
    return out


def apply_best_params(settings: dict[str, dict[str, Any]], path: str | Path, methods: list[str],
                      log: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """`--params-from`: the best params of each named method, under the `--set` values the user gave
    (an explicit `--set bnvae.gamma=...` wins over the tuned value)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    best = load_best_params(path, methods)
    if not best:
        raise TuneError(f"--params-from {path}: no study there tuned any of {', '.join(methods)}")
    for m in methods:
        name = registry.get(m).name
        if name in best:
            log(f"params-from: {name} " + " ".join(f"{k}={v}" for k, v in best[name].items()))
        else:
            log(f"params-from: no tuned parameters for {name} in {path}; it keeps its defaults")
    out: dict[str, dict[str, Any]] = {name: dict(p) for name, p in best.items()}
    for key, values in settings.items():
        out[key] = {**out.get(key, {}), **values}
    return out
