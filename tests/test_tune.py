"""Tuning: objectives, the persisted and resumable study, pruning from inside the run, the output files, Ray
trials in parallel, and `run --params-from`.

A test-only method (`tunetest`: vanilla with a scaled KL penalty) is registered while this module runs; in Ray
workers the trial function `cell` registers it (the fixture puts this folder on their PYTHONPATH so that the
workers can import this module)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from collapse_bench import registry  # noqa: E402
from collapse_bench.cli import main  # noqa: E402
from collapse_bench.method import Method, MethodParams, ParamError, param  # noqa: E402
from collapse_bench.store import ResultStore  # noqa: E402
from collapse_bench.cell import run_cell  # noqa: E402
from collapse_bench.tune import (Objective, TuneError, apply_best_params, load_best_params,  # noqa: E402
                                 open_storage, tune)

HERE = Path(__file__).resolve().parent
NAME = "tunetest"
FAST = {"train": {"epochs": "2"}, "eval": {"probe_repeats": "1"}}   # as --set strings; the probe is the slow part


@dataclass(frozen=True)
class _Params(MethodParams):
    beta: float = param(1.0, "scale of the KL penalty", gt=0)

    def validate(self) -> None:
        if self.beta <= 0:
            raise ParamError(f"{NAME}.beta={self.beta} must be > 0")

    @staticmethod
    def search_space(trial) -> dict:
        return {"beta": trial.suggest_float("beta", 0.2, 1.0)}


class TuneTest(Method):
    """Test-only: vanilla VAE whose KL penalty is scaled by beta (registered by tests/test_tune.py)."""
    Params = _Params

    def kl_penalty(self, post):
        return self.params.beta * post.kl()


def _register() -> None:
    if NAME not in registry.names():
        registry.register(NAME)(TuneTest)


@pytest.fixture(scope="module", autouse=True)
def _registered_while_this_module_runs():
    _register()          # not at import: other modules' tests that list every method must not see it
    yield
    registry._METHODS.pop(NAME, None)


def cell(spec, on_step=None):
    """The trial function handed to Ray workers (which import this module to unpickle it)."""
    _register()
    return run_cell(spec, on_step)


def quiet(msg: str) -> None:
    pass


def run_tune(out, trials, **kw):
    kw.setdefault("settings", {k: dict(v) for k, v in FAST.items()})
    return tune(NAME, "synthetic", "smoke", out=out, trials=trials, log=quiet, **kw)


# --- no training -------------------------------------------------------------------------------------------
def test_objectives_parse_with_directions_and_curve_keys():
    assert Objective.parse("nll").direction == "minimize" and Objective.parse("nll").curve_key == "valid_loss"
    assert Objective.parse("ELBO").direction == "minimize"
    assert Objective.parse("mi").direction == "maximize" and Objective.parse("mi").curve_key == "valid_mi"
    assert Objective.parse("au").direction == "maximize"
    p = Objective.parse("probe@100")
    assert (p.metric, p.labels, p.direction, p.name) == ("probe", 100, "maximize", "probe@100")
    curves = [{"epoch": 1, "valid_loss": 52.0, "valid_mi": 0.5}, {"epoch": 1.5, "partial": True, "valid_mi": 9.0},
              {"epoch": 2, "valid_loss": 51.0, "valid_mi": 0.7}, {"epoch": 3, "valid_loss": 51.5, "valid_mi": 0.9}]
    rec = {"metrics": {"nll": 50.0, "mi": 3.0, "probe": {"100": {"mean": 0.75, "sd": 0.0, "n": 2, "valid_mean": 0.7}}},
           "curves": curves, "timing": {"best_valid": 51.0}, "config": {"train": {"select": "best"}}}
    # validation figures of the kept model (epoch 2), never the test metrics
    assert p.value(rec) == 0.7 and Objective.parse("nll").value(rec) == 51.0 and Objective.parse("mi").value(rec) == 0.7
    last = {**rec, "config": {"train": {"select": "last"}}}
    assert Objective.parse("elbo").value(last) == 51.5 and Objective.parse("mi").value(last) == 0.9
    with pytest.raises(KeyError):
        Objective.parse("probe@500").value(rec)
    for bad in ("loss", "probe", "probe@x", "nll@3"):
        with pytest.raises(TuneError):
            Objective.parse(bad)


def test_tune_refuses_what_it_cannot_tune(tmp_path):
    with pytest.raises(TuneError, match="no search space"):
        tune("vanilla", "synthetic", "smoke", out=tmp_path, trials=1, log=quiet)
    with pytest.raises(TuneError, match="probe at"):
        run_tune(tmp_path, 1, objective="probe@777")


def test_best_params_feed_a_sweep_and_set_still_wins(tmp_path):
    tdir = tmp_path / "tune"
    tdir.mkdir()
    (tdir / "a.best.json").write_text(json.dumps({"method": NAME, "params": {"beta": 0.42}, "value": 1.0}))
    assert load_best_params(tmp_path, [NAME, "vanilla"]) == {NAME: {"beta": 0.42}}
    assert load_best_params(tdir / "a.best.json", [NAME]) == {NAME: {"beta": 0.42}}
    merged = apply_best_params({NAME: {"beta": "0.9"}, "train": {"epochs": "1"}}, tmp_path, [NAME], log=quiet)
    assert merged == {NAME: {"beta": "0.9"}, "train": {"epochs": "1"}}
    assert apply_best_params({}, tmp_path, [NAME], log=quiet) == {NAME: {"beta": 0.42}}
    (tdir / "b.best.json").write_text(json.dumps({"method": NAME, "params": {"beta": 0.5}}))
    with pytest.raises(TuneError, match="pass the one to use"):
        load_best_params(tmp_path, [NAME])
    with pytest.raises(TuneError, match="no \\*.best.json"):
        load_best_params(tmp_path / "nowhere", [NAME])


# --- serial studies ----------------------------------------------------------------------------------------
def test_study_persists_resumes_and_writes_its_files(tmp_path):
    res = run_tune(tmp_path, 2, seed=5)
    assert (res.n_finished, res.ran) == (2, 2)
    journal = Path(res.storage)
    assert journal.is_file() and journal.parent == tmp_path / "tune" and journal.suffix == ".journal"
    store = ResultStore(tmp_path)
    recs = store.records()
    assert len(recs) == 2 and all(r["status"] == "ok" and r["tune"]["study"] == res.study_name for r in recs)
    assert all(len(r["curves"]) == 2 for r in recs)

    best = json.loads(res.files["best"].read_text())
    assert best["method"] == NAME and best["objective"] == "nll" and best["direction"] == "minimize"
    values = {r["tune"]["trial"]: r["tune"]["value"] for r in recs}
    assert best["value"] == min(values.values()) and set(best["params"]) == {"beta"}
    assert best["params"] == best["tuned_params"]
    with res.files["history"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["number"] for r in rows] == ["0", "1"]
    assert all(r["state"] == "complete" and r["param_beta"] and r["epochs_reported"] == "2" for r in rows)
    imp = json.loads(res.files["importances"].read_text())
    assert set(imp["importances"]) == {"beta"} and imp["n_complete"] == 2

    # Resume: the same call with a larger total runs only the difference, then nothing.
    res2 = run_tune(tmp_path, 3, seed=5)
    assert (res2.study_name, res2.n_finished, res2.ran) == (res.study_name, 3, 1)
    study = optuna.load_study(study_name=res.study_name, storage=open_storage(res.storage))
    betas = [t.params["beta"] for t in study.trials]
    assert len(set(betas)) == 3                              # the resumed sampler did not replay trial 0
    assert run_tune(tmp_path, 3, seed=5).ran == 0
    assert len(ResultStore(tmp_path).records()) == 3


def test_a_pruned_trial_stops_after_the_reported_epoch(tmp_path):
    # Every curve value is above 0, so this pruner stops each trial at its first report (epoch 1 of 2).
    res = run_tune(tmp_path, 2, pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    study = optuna.load_study(study_name=res.study_name, storage=open_storage(res.storage))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in study.trials)    # reported from inside the run
    assert res.n_finished == 2 and res.best is None
    assert ResultStore(tmp_path).records() == []            # pruned trials leave no result file


def test_interrupted_trials_are_failed_and_replaced_on_resume(tmp_path):
    calls = []

    def interrupt_second(spec, on_step=None):
        calls.append(spec.trial_number)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run_cell(spec, on_step)

    with pytest.raises(KeyboardInterrupt):
        run_tune(tmp_path, 2, fn=interrupt_second)
    res = run_tune(tmp_path, 2)
    study = optuna.load_study(study_name=res.study_name, storage=open_storage(res.storage))
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"] and res.ran == 1


def test_cli_tune_then_run_params_from(tmp_path, capsys):
    out = tmp_path / "run"
    sets = ["--set", "train.epochs=1", "--set", "eval.probe_repeats=1"]
    args = ["tune", "--method", NAME, "--size", "smoke", "--trials", "2", "--out", str(out), "--seed", "3", *sets]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "best: trial" in printed and ".journal" in printed
    best = json.loads(next((out / "tune").glob("*.best.json")).read_text())
    # A sweep in the same folder with the tuned params finds the best trial's cell already done.
    assert main(["run", "--methods", NAME, "--size", "smoke", "--seeds", "3", *sets, "--no-baseline",
                 "--params-from", str(out), "--out", str(out), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert f"params-from: {NAME} beta={best['params']['beta']}" in err and "[ok]" not in err
    # Elsewhere it runs, with those params.
    other = tmp_path / "other"
    assert main(["run", "--methods", NAME, "--size", "smoke", "--seeds", "3", *sets, "--no-baseline",
                 "--params-from", str(out), "--out", str(other), "--no-report"]) == 0
    (rec,) = ResultStore(other).records()
    assert rec["params"] == best["params"] and rec["cell"] == best["cell"]


# --- Ray ---------------------------------------------------------------------------------------------------
@pytest.mark.ray
def test_trials_run_two_at_a_time_on_ray_and_resume(ray_session, tmp_path):
    from collapse_bench.executor import RayExecutor
    res = run_tune(tmp_path, 4, executor=RayExecutor(), fn=cell)
    assert (res.n_finished, res.ran) == (4, 4) and res.best is not None
    study = optuna.load_study(study_name=res.study_name, storage=open_storage(res.storage))
    trials = sorted(study.trials, key=lambda t: t.datetime_start)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(len(t.intermediate_values) == 2 for t in trials)
    overlaps = sum(a.datetime_complete > b.datetime_start for a, b in zip(trials, trials[1:]))
    assert overlaps >= 1                                     # at least two trials were running at once
    assert len(ResultStore(tmp_path).records()) == 4
    assert run_tune(tmp_path, 4, executor=RayExecutor(), fn=cell).ran == 0
