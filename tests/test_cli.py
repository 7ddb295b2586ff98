"""The command line around a sweep: vanilla baseline by default, all cores by default (process executor),
progress, and bad input refused with the fix before anything is created."""
from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from collapse_bench.executors import process as process_executor
from collapse_bench.cell import CellSpec
from collapse_bench.cli import _executor, baseline_table, build_parser, main, summary_table
from collapse_bench.executor import ProcessExecutor
from collapse_bench.progress import SweepProgress, cell_line
from collapse_bench.report import build_report
from collapse_bench.report.load import frame
from collapse_bench.report.stats import starved
from collapse_bench.store import ResultStore
from collapse_bench.executor import SerialExecutor

FAST = ["--size", "smoke", "--set", "train.epochs=1", "--set", "eval.probe_repeats=1"]


def rec(method: str, seed: int, nll: float, secs: float, *, overrides: dict | None = None, probe: float = 0.5,
        status: str = "ok") -> dict:
    return {"cell": f"{method}__synthetic__smoke__seed{seed}" + ("__cfg" if overrides else ""), "method": method,
            "label": method, "params": {}, "dataset": "synthetic", "size": "smoke", "seed": seed,
            "overrides": overrides or {}, "status": status, "error": None if status == "ok" else {"type": "E", "message": "x"},
            "metrics": {"nll": nll, "kl": nll / 10, "mi": 1.0, "au": 2, "probe": {"100": {"mean": probe},
                                                                              "500": {"mean": probe + 0.1}}}
            if status == "ok" else {},
            "timing": {"train_seconds": secs}}


# --- baseline ----------------------------------------------------------------------------------------------
def test_run_adds_vanilla_reuses_it_and_no_baseline_opts_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(process_executor, "local_cpus", lambda: 2)      # two cores even on a one-core CI box
    out = tmp_path / "run"
    assert main(["run", "--methods", "fb", *FAST, "--out", str(out), "--no-report"]) == 0
    cap = capsys.readouterr()
    recs = {r["method"]: r for r in ResultStore(out).records()}
    assert set(recs) == {"vanilla", "fb"} and all(r["status"] == "ok" for r in recs.values())
    assert "2 cells: 0 already done" in cap.err and "on 2 worker processes, 1 torch thread each" in cap.err
    # not a terminal: one plain line per finished cell with its key metrics and seconds
    lines = [line for line in cap.err.splitlines() if line.startswith("[ok] ")]
    assert len(lines) == 2 and all("NLL " in line and "probe@100" in line and line.endswith(" s") for line in lines)
    assert f"NLL {recs['fb']['metrics']['nll']:.2f}" in next(line for line in lines if line.startswith("[ok] fb"))
    vs = cap.out.split("vs vanilla", 1)[1]
    fb_line = next(line for line in vs.splitlines() if line.startswith("fb("))
    d_nll = recs["fb"]["metrics"]["nll"] - recs["vanilla"]["metrics"]["nll"]
    assert f"{d_nll:+.2f}" in fb_line and "@100" in fb_line
    ratio = recs["fb"]["timing"]["train_seconds"] / recs["vanilla"]["timing"]["train_seconds"]
    # two workers on a loaded or one-core box can train on under half a core each: then no ratio (report.stats.starved)
    any_starved = starved(frame(list(recs.values()))).any()
    assert fb_line.split()[-1] == ("–" if any_starved else f"{ratio:.2f}")
    assert "vanilla" not in vs.split("\n", 2)[2]                         # no row comparing vanilla with itself

    # a rerun runs no finished cell and rewrites no file
    stamps = lambda: {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}  # noqa: E731
    before = stamps()
    assert main(["run", "--methods", "fb", *FAST, "--out", str(out), "--no-report", "--no-baseline"]) == 0
    err = capsys.readouterr().err
    assert "1 cell: 1 already done" in err and "[ok] " not in err       # --no-baseline: fb alone
    assert main(["run", "--methods", "vae,fb", *FAST, "--out", str(out), "--no-report"]) == 0   # alias of vanilla
    err = capsys.readouterr().err
    assert "2 cells: 2 already done" in err and "[ok] " not in err and stamps() == before


def test_baseline_table_pairs_like_the_report():
    records = [rec("vanilla", 0, 100.0, 10.0), rec("vanilla", 1, 102.0, 20.0), rec("m", 0, 101.0, 20.0),
               rec("m", 1, 105.0, 30.0, probe=0.7),
               rec("vanilla", 0, 50.0, 5.0, overrides={"train": {"epochs": 1}}),      # another board: not a pair
               rec("m", 2, 1.0, 1.0), rec("m", 3, 0.0, 0.0, status="failed")]         # no vanilla seed 2; failed
    table = baseline_table(records)
    head, row = table.splitlines()[1:3]
    cols = dict(zip(head.split(), row.split()))
    # paired per seed: NLL +1, +3 -> +2; time 2.0, 1.5 -> 1.75; seed 2 has no vanilla (3 cells, 2 pairs)
    assert cols["ΔNLL"] == "+2.00" and cols["time"] == "1.75" and cols["pairs"] == "2"
    assert cols["ΔKL"] == "+0.20" and cols["ΔAU"] == "+0.0" and cols["Δprobe"] == "+0.100@100"   # smallest count
    assert len(table.splitlines()) == 3 and baseline_table([rec("vanilla", 0, 1.0, 1.0)]) == ""


def test_baseline_and_summary_tables_keep_decoders_apart():
    """A CNN cell pairs with the CNN's vanilla, never the LSTM's: one row per decoder, each with its own ratio."""
    cnn = {"overrides": {"model": {"decoder": "cnn"}}, "config": {"model": {"decoder": "cnn"}}}
    records = [rec("vanilla", 0, 100.0, 10.0), rec("m", 0, 101.0, 20.0),
               rec("vanilla", 0, 80.0, 40.0) | cnn, rec("m", 0, 70.0, 60.0) | cnn]
    head, *rows = baseline_table(records).splitlines()[1:]
    cols = {r["decoder"]: r for r in (dict(zip(head.split(), row.split())) for row in rows)}
    assert sorted(cols) == ["cnn", "lstm"]
    assert (cols["lstm"]["ΔNLL"], cols["lstm"]["time"]) == ("+1.00", "2.00")
    assert (cols["cnn"]["ΔNLL"], cols["cnn"]["time"]) == ("-10.00", "1.50")
    head, *rows = summary_table(records).splitlines()
    assert [dict(zip(head.split(), row.split()))["decoder"] for row in rows] == ["lstm", "lstm", "cnn", "cnn"]


def test_summary_shows_no_latent_metrics_for_a_model_without_a_latent():
    lm = rec("lm", 0, 42.0, 1.0)
    lm["metrics"].update(kl=0.0, mi=0.0, au=0, probe={}, has_latent=False)   # as evaluate records an LM
    head, vae_row, lm_row = summary_table([rec("vanilla", 0, 43.0, 1.0), lm]).splitlines()
    cols = lambda row: dict(zip(head.split(), row.split()))  # noqa: E731
    assert [cols(lm_row)[k] for k in ("KL", "MI", "AU", "probe")] == ["–"] * 4
    assert [cols(vae_row)[k] for k in ("KL", "MI", "AU")] == ["4.30", "1.00", "2"]


def test_page_shows_differences_to_vanilla(tmp_path):
    run = tmp_path / "run"
    store = ResultStore(run)
    for r in (rec("vanilla", 0, 100.0, 10.0), rec("vanilla", 1, 102.0, 20.0), rec("m", 0, 101.0, 20.0),
              rec("m", 1, 105.0, 30.0, probe=0.7)):
        store.write(r)
    page = build_report(run).read_text()
    m_row = page[page.index('data-value="m"'):]
    m_row = m_row[:m_row.index("</tr>")]
    assert "Δ +2.00 vs vanilla" in m_row and "Δ +10.0 vs vanilla" in m_row       # NLL; probe@100 in points
    van_row = page[page.index('data-value="vanilla"'):]
    assert "vs vanilla" not in van_row[:van_row.index("</tr>")]
    csv = (run / "results.csv").read_text().splitlines()
    assert "nll_vs_vanilla" in csv[0] and "time_ratio_vs_vanilla" not in csv[0]


def test_report_package_never_imports_torch(tmp_path):
    ResultStore(tmp_path).write(rec("vanilla", 0, 100.0, 10.0))
    code = ("import sys; from collapse_bench.report import build_report; build_report(sys.argv[1]); "
            "import collapse_bench.progress; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# --- executor choice ---------------------------------------------------------------------------------------
def _choice(argv: list[str], cells: int, threads: int = 1, auto: str = "process"):
    return _executor(build_parser().parse_args(argv), cells, threads, auto=auto)


def test_several_cells_use_every_core_by_default(monkeypatch):
    monkeypatch.setattr(process_executor, "local_cpus", lambda: 4)
    run = ["run", "--methods", "fb"]
    e, where = _choice(run, 3)
    assert isinstance(e, ProcessExecutor) and e.jobs == 3 and e.threads == 1 and "3 worker processes" in where
    assert _choice(run, 9)[0].jobs == 4 and _choice(run, 9, threads=2)[0].jobs == 2    # a core per torch thread
    assert isinstance(_choice(run, 1)[0], SerialExecutor) and _choice(run, 1)[1] == "in this process"
    assert isinstance(_choice([*run, "--jobs", "1"], 5)[0], SerialExecutor)
    assert _choice([*run, "--jobs", "2"], 5)[0].jobs == 2
    assert isinstance(_choice([*run, "--executor", "serial"], 5)[0], SerialExecutor)
    assert _choice([*run, "--executor", "process"], 1)[0].jobs == 1
    tune = ["tune", "--method", "fb"]
    assert isinstance(_choice(tune, 20, auto="serial")[0], SerialExecutor)             # tune: one trial at a time
    assert _choice([*tune, "--jobs", "2"], 20, auto="serial")[0].jobs == 2


# --- Ctrl-C ------------------------------------------------------------------------------------------------
HANG_GUARD_S = 300     # only a run that hangs takes this long; nothing is timed


def _pump(stream) -> queue.Queue:
    """The lines of `stream` as they arrive, then None, read by a thread so that a wait can give up on a hang."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue, seen: list[str], marker: str | None) -> None:
    """Append lines to `seen` up to the first containing `marker` (with None: to the end of the stream)."""
    while True:
        try:
            line = lines.get(timeout=HANG_GUARD_S)
        except queue.Empty:
            pytest.fail(f"no output for {HANG_GUARD_S} s waiting for {marker!r}; so far:\n{''.join(seen)}")
        if line is None:
            if marker is None:
                return
            pytest.fail(f"the run ended before printing {marker!r}:\n{''.join(seen)}")
        seen.append(line)
        if marker is not None and marker in line:
            return


def test_ctrl_c_in_a_terminal_ends_the_cli_cleanly_and_a_rerun_resumes(tmp_path):
    """SIGINT to the whole process group, as a terminal sends it, once a first cell has finished (of four, two
    worker processes): exit 130, one message and no traceback, no worker left behind, the finished cells' files
    kept; rerunning the same command runs only the missing cells and leaves the kept files untouched."""
    cmd = [sys.executable, "-m", "collapse_bench", "run", "--methods", "vanilla", "--seeds", "0,1,2,3", "--size",
           "smoke", "--set", "eval.probe_repeats=1", "--jobs", "2", "--no-report", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    err: list[str] = []
    try:
        lines = _pump(proc.stderr)
        _read_until(lines, err, "[ok] ")
        assert "to run on 2 worker processes" in err[0], err[0]
        os.killpg(proc.pid, signal.SIGINT)
        _read_until(lines, err, None)
        assert proc.wait(timeout=HANG_GUARD_S) == 130
        gone_by = time.monotonic() + HANG_GUARD_S
        while _group_alive(proc.pid):                                     # no worker left behind
            if time.monotonic() > gone_by:
                pytest.fail("processes of the interrupted run are still alive")
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    text = "".join(err)
    assert "interrupted: finished cells are kept" in text and "Traceback" not in text, text
    finished = [line for line in err if line.startswith("[ok] ")]
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").glob("*.json")}
    assert 1 <= len(kept) == len(finished) < 4, (kept, finished)
    assert all(json.loads((tmp_path / "results" / name).read_text())["status"] == "ok" for name in kept)

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"4 cells: {len(kept)} already done" in again.stderr
    assert len([line for line in again.stderr.splitlines() if line.startswith("[ok] ")]) == 4 - len(kept)
    assert {name: (tmp_path / "results" / name).stat().st_mtime_ns for name in kept} == kept
    assert len(list((tmp_path / "results").glob("*.json"))) == 4


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --- progress ----------------------------------------------------------------------------------------------
def test_progress_bar_on_a_terminal_and_plain_lines_elsewhere():
    s0, s1 = CellSpec("fb", "synthetic", "smoke", 0), CellSpec("fb", "yelp", "smoke", 1)
    ok = {"cell": s0.cell, "label": "fb", "dataset": "synthetic", "size": "smoke", "seed": 0, "status": "ok",
          "metrics": {"nll": 57.25, "kl": 2.5, "mi": 0.1, "au": 3, "probe": {"500": {"mean": 0.6}, "100": {"mean": 0.4}}},
          "timing": {"wall_seconds": 3.0, "eval_seconds": 1.5}}
    bad = {"cell": s1.cell, "label": "fb", "dataset": "yelp", "size": "smoke", "seed": 1, "status": "failed",
           "error": {"type": "DataError", "message": "no yelp.train.txt\nmore"}}
    assert cell_line(ok) == "[ok] fb synthetic/smoke seed0  NLL 57.25  KL 2.50  MI 0.10  AU 3  probe@100 0.400  4.5 s"
    assert cell_line(bad) == "[failed] fb yelp/smoke seed1  DataError: no yelp.train.txt"
    lm = {**ok, "label": "lm", "metrics": {"nll": 50.0, "kl": 0.0, "mi": 0.0, "au": 0, "probe": {}, "has_latent": False}}
    assert cell_line(lm).startswith("[ok] lm synthetic/smoke seed0  NLL 50.00  KL –  MI –  AU –  ")   # as the table

    plain = io.StringIO()
    with SweepProgress(2, stream=plain, tty=False) as p:
        p.start(s0)
        p.step(s0, 5, 10)
        p.finish(ok)
    assert plain.getvalue().splitlines()[0].startswith("[ok] fb synthetic/smoke seed0  NLL 57.25")
    assert len(plain.getvalue().splitlines()) == 1                       # no bar, no step output

    term = io.StringIO()
    with SweepProgress(3, stream=term, tty=True, mininterval=0) as p:
        p.start(s0)
        p.start(s1)
        p.step(s0, 7, 10)
        text = term.getvalue()
        assert "cells: 0/3" in text and "running 2, failed 0" in text and "7/10" in text
        p.finish({**bad, "cell": s1.cell})
    text = term.getvalue()
    assert "cells: 1/3" in text and "running 1, failed 1" in text and "[failed] fb yelp/smoke seed1" in text


# --- bad input ---------------------------------------------------------------------------------------------
def test_empty_methods_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--methods", "", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--methods '' names nothing" in err and "--methods bnvae,fb" in err and not out.exists()
    assert main(["run", "--methods", " , ", "--out", str(out)]) == 2 and not out.exists()
    with pytest.raises(SystemExit) as e:
        main(["run", "--seeds", "", "--out", str(out)])
    assert e.value.code == 2 and "--seeds takes" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--methods", "vmf", "--set", "model.nz=1"], "vmf needs model.nz >= 2"),              # was a failed cell
    (["--methods", "fb", "--set", "fb.mode=kingma", "--set", "fb.groups=5"], "does not divide model.nz"),
    (["--methods", "vanilla", "--dataset", "shortyelp"], "Did you mean 'short-yelp'"),
    (["--methods", "vanilla", "--dataset", "short-yelp", "--data-dir", "/nonexistent"], "--data-dir"),
])
def test_bad_configurations_are_refused_before_anything_is_written(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["run", *argv, "--size", "smoke", "--no-baseline", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_report_on_a_missing_or_empty_folder_is_refused(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["report", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "--out folder of a run" in err and not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "no result files" in capsys.readouterr().err and list(empty.iterdir()) == []


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    for out in (f, f / "sub"):
        assert main(["run", "--methods", "fb", "--size", "smoke", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{f} is a file, not a folder" in err and "--out runs/a" in err and "Traceback" not in err
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_misspelt_section_names_the_sections_and_suggests_one(tmp_path, capsys):
    assert main(["run", "--methods", "fb", "--set", "trian.epochs=2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "'trian' is neither a section (train, model, eval, limits) nor a method" in err
    assert "Did you mean train.epochs?" in err and "bnvae" in err and not (tmp_path / "r").exists()
    assert main(["run", "--methods", "fb", "--set", "bnvea.gamma=1", "--out", str(tmp_path / "r")]) == 2
    assert "Did you mean bnvae.gamma?" in capsys.readouterr().err


def test_jobs_below_one_is_refused(tmp_path, capsys):
    assert main(["run", "--methods", "fb", "--jobs", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_unreadable_result_file_warns_on_stderr_too(tmp_path, capsys):
    ResultStore(tmp_path).write(rec("vanilla", 0, 100.0, 10.0))
    (tmp_path / "results" / "torn.json").write_text('{"cell": ')
    assert main(["report", str(tmp_path)]) == 0
    cap = capsys.readouterr()
    assert "warning: unreadable result file left out of the leaderboard: torn.json: JSONDecodeError" in cap.err
    assert "torn.json" in Path(cap.out.strip()).read_text()


def test_list_says_which_paper_row_each_default_reproduces_and_presets_run(capsys, tmp_path):
    from collapse_bench.cli import main
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    fb = out[out.index("\nfb "):].split("\n")[1:4]
    assert any("+ AE FB (4) *" in line and "--presets ae-fb-4" in line for line in fb)   # the default FB is AE+FB
    assert main(["list", "--presets"]) == 0 and "BN-VAE (0.7) *" in capsys.readouterr().out
    assert main(["run", "--presets", "bnvae-07", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'bnvae-0.7'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["run", "--presets", "vae", "--size", "smoke", "--set", "train.epochs=1",
                 "--no-report", "--out", str(tmp_path / "p")]) == 0
    # presets alone add no vanilla (it would train the harness's recipe, pairing with no preset cell)
    (rec,) = [json.loads(f.read_text()) for f in (tmp_path / "p" / "results").glob("*.json")]
    assert rec["preset"] == "vae" and rec["label"] == "preset:vae" and rec["config"]["train"]["lr"] == 1.0


def test_the_cnn_vae_preset_is_listed_expands_to_yang_et_al_s_recipe_and_builds(capsys):
    """`run --presets cnn-vae`'s expansion (no training): Yang et al.'s LCNN decoder, Adam (lr 1e-3, beta1 0.5),
    dropout 0.1 in every block; the optimisers the Trainer builds take that beta1."""
    from collapse_bench.cell import build_trainer
    from collapse_bench.config import CNN_CONFIGS
    from collapse_bench.sweep import expand_presets
    assert main(["list", "--presets"]) == 0
    out = capsys.readouterr().out
    assert "cnn-vae" in out and "lm: CNN-VAE" in out
    for dataset, size in (("yelp", "paper"), ("short-yelp", "default"), ("synthetic", "smoke")):
        (spec,) = expand_presets(["cnn-vae"], [dataset], [size], [0])
        cfg = spec.size_config()
        assert spec.method == "vanilla" and spec.label == "preset:cnn-vae"
        assert (cfg.model.decoder, cfg.model.cnn_dilations, cfg.model.cnn_dropout) == ("cnn", CNN_CONFIGS["lcnn"], 0.1)
        assert (cfg.train.optimizer, cfg.train.lr, cfg.train.adam_beta1) == ("adam", 1e-3, 0.5)
    trainer = build_trainer(spec)                      # synthetic at smoke: a real model and its optimisers
    assert {b.drop.p for b in trainer.model.decoder.blocks} == {0.1}
    assert {g["betas"] for o in (trainer.enc_opt, trainer.dec_opt) for g in o.param_groups} == {(0.5, 0.999)}


# --- the study ---------------------------------------------------------------------------------------------
def test_study_on_finished_results_runs_nothing_and_rebuilds_the_same_page(tmp_path, capsys):
    """`study` covers every tier's cells (config.STUDY_TIERS, each into OUT/<tier>); on a folder where every cell
    is finished it starts no worker, and the pages it rebuilds are byte-identical."""
    from collapse_bench import registry
    from collapse_bench.config import STUDY_METHODS, STUDY_TIERS
    from collapse_bench.study import tier_cells
    assert set(STUDY_METHODS) <= set(registry.names())
    tiers = [tier_cells(t, tmp_path / "study") for t in STUDY_TIERS.values()]
    for t in tiers:
        store = ResultStore(t.out)
        for i, s in enumerate(t.specs):
            r = rec(s.method, s.seed, 30.0 + i % 7, 10.0 + i % 5)
            store.write(r | {"cell": s.cell, "dataset": s.dataset, "size": s.size, "label": s.label,
                             "params": s.params, "overrides": s.overrides})
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "study").rglob("*.json")}
    assert main(["study", "--out", str(tmp_path / "study")]) == 0
    err = capsys.readouterr().err
    assert all(f"{len(t.specs)} cells: {len(t.specs)} already done" in err for t in tiers)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "study").rglob("*.json") if p.parent.name == "results"} \
        == {p: m for p, m in stamps.items() if p.parent.name == "results"}
    pages = {t.tier.name: (t.out / "leaderboard.html").read_bytes() for t in tiers}
    across = {n: (tmp_path / "study" / n).read_bytes() for n in ("tiers.md", "drift.md", "index.html")}
    assert main(["study", "--out", str(tmp_path / "study")]) == 0
    assert {t.tier.name: (t.out / "leaderboard.html").read_bytes() for t in tiers} == pages
    assert {n: (tmp_path / "study" / n).read_bytes() for n in across} == across    # the tiers side by side too
    assert all((t.out / "findings.md").is_file() for t in tiers)
    capsys.readouterr()
    assert main(["study", "--out", str(tmp_path / "study"), "--tier", "deep", "--methods", "sa-vae"]) == 0
    assert "savae runs seeds 0: one seed" in capsys.readouterr().out      # an alias still finds its fewer-seeds note


def test_study_refuses_settings_that_would_change_it(tmp_path, capsys):
    assert main(["study", "--out", str(tmp_path / "s"), "--set", "train.epochs=1"]) == 2
    assert "configuration is fixed" in capsys.readouterr().err and not (tmp_path / "s").exists()


# --- list METHOD (issue 19, point 3) -------------------------------------------------------------------------
def test_list_method_shows_paper_parameters_search_space_cost_and_paper_row(capsys):
    assert main(["list", "bnvae"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "bnvae (aliases: bn-vae)" and "  paper:        Zhu et al. 2020" in lines
    assert "what it does: batch norm on mu" in out
    assert "    gamma     float, default 0.6, allowed: > 0" in lines                         # type, default, range
    assert "γ, BN's weight on mu, fixed (no gradient)" in out                                # its meaning
    assert "    pretrain  str, default 'none', allowed: 'none' | 'ae'" in lines
    assert "tune --method bnvae" in out and "    gamma  float in [0.3, 1]" in lines         # Params.search_space
    assert "cost:         about 1× vanilla's training time" in out and "2× with\n" in out   # Method.cost()
    assert "its defaults reproduce lm: BN-VAE (0.6) *; time: BN-VAE (run it with --presets bnvae-0.6)" in out
    assert "bnvae-0.7 (gamma=0.7): lm: BN-VAE (0.7) *" in out and "`*` a row the BN-VAE authors ran" in out
    assert main(["list", "bn-vae"]) == 0 and capsys.readouterr().out == out                # alias; deterministic
    assert main(["list", "fb"]) == 0
    fb = capsys.readouterr().out
    assert "about 2× vanilla's training time with its defaults" in fb and "groups    int, default 0" in fb
    assert "Kingma et al. 2016" in fb and "--presets ae-fb-4" in fb


def test_list_unknown_method_suggests_one_and_exits_2(capsys):
    assert main(["list", "fbb"]) == 2
    cap = capsys.readouterr()
    assert "unknown method 'fbb'. Did you mean 'fb'?" in cap.err and cap.out == ""


def test_every_registered_method_says_what_each_parameter_means(capsys):
    """Every Params field of every registered method (plug-ins and test methods too) declares its meaning with
    `method.param(default, meaning)`; `list METHOD` prints it, and the built-ins name their paper."""
    from collapse_bench import describe, registry
    for name in registry.names():
        cls = registry.get(name)
        for doc in describe.param_docs(cls):
            assert len(doc.meaning) > 10, f"{name}.{doc.name} has no meaning: declare it with param(default, meaning)"
        assert main(["list", name]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert all(" ".join(d.meaning.split()) in out for d in describe.param_docs(cls)), name
        if cls.__module__.startswith("collapse_bench.methods."):
            assert "none named" not in describe.paper(cls), f"{name}'s first docstring line names no paper"


def test_plain_list_explains_its_tags(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ae ")                                 # the methods first, then what their tags mean
    tail = out.rsplit("\n\n", 1)[1]
    assert "python -m collapse_bench list METHOD" in tail
    for tag in ("`lm:` its language-modelling table", "`classification:` its", "`time:` its training-time table",
                "`*` a row the BN-VAE authors ran themselves"):
        assert tag in " ".join(tail.split()), tag


# --- tuned floats shown rounded, run exact (point 5) ---------------------------------------------------------
def test_tuned_floats_are_rounded_in_labels_and_file_names_but_run_exact():
    from collapse_bench.store import build_record, failed_result
    tuned = CellSpec("bnvae", "synthetic", "smoke", 0, {"gamma": 0.7219343632501507, "pretrain": "none"})
    near = CellSpec("bnvae", "synthetic", "smoke", 0, {"gamma": 0.72189, "pretrain": "none"})
    assert tuned.label == near.label == "bnvae(gamma=0.7219, pretrain=none)"
    assert tuned.cell.startswith("bnvae-gamma=0.7219-pretrain=none-") and "7219343" not in tuned.cell
    assert tuned.cell != near.cell                                     # two tuned values never share a file
    assert tuned.make_method().params.gamma == 0.7219343632501507      # the run uses the exact value
    record = build_record(tuned, failed_result(tuned, {"type": "E", "message": "x"}))
    assert record["label"] == tuned.label and record["params"]["gamma"] == 0.7219343632501507
    plain = CellSpec("bnvae", "synthetic", "smoke", 0, {"gamma": 0.6, "pretrain": "none"})
    assert plain.label == "bnvae(gamma=0.6, pretrain=none)"           # hand-set values keep their form


STUDY_ROOT = Path(__file__).resolve().parents[1] / "reports" / "study"


@pytest.mark.parametrize("tier", ["quick", "deep"])
def test_committed_study_tiers_keep_their_file_names(tier):
    """Every committed result of a tier is a cell the tier defines now (a renamed cell would be rerun and its old
    file left behind); the deep tier is resumable across sessions, so it may hold a prefix of its cells."""
    from collapse_bench.config import STUDY_TIERS
    from collapse_bench.study import tier_cells
    committed = {p.stem for p in (STUDY_ROOT / tier / "results").glob("*.json")}
    if not committed:
        pytest.skip(f"reports/study/{tier} holds no results yet (the tier has not been run)")
    cells = {s.cell for s in tier_cells(STUDY_TIERS[tier], STUDY_ROOT).specs}
    assert committed <= cells, sorted(committed - cells)[:5]


def test_study_tiers_define_their_cells_and_say_what_they_leave_out(tmp_path):
    from collapse_bench.config import STUDY_METHODS, STUDY_TIERS
    from collapse_bench.study import tier_cells
    quick = tier_cells(STUDY_TIERS["quick"], tmp_path)
    assert quick.out == tmp_path / "quick"
    boards = {(s.dataset, s.size_config().model.decoder) for s in quick.specs}
    assert boards == {("short-yelp", "lstm"), ("short-yelp", "cnn"), ("short-yelp", "transformer"), ("ptb", "lstm")}
    assert [(m, b) for m, b, _ in quick.left_out] == [("coupled", "short-yelp × cnn"),
                                                      ("coupled", "short-yelp × transformer")]
    one_seed = {"savae", "agg"}                     # the tier's fewer_seeds: seed 0 only, on every board
    assert set(STUDY_TIERS["quick"].fewer_seeds) == one_seed
    assert {s.seed for s in quick.specs if s.method in one_seed} == {0}
    assert len(quick.specs) == 3 * (4 * (len(STUDY_METHODS) - 2) - 2) + 4 * 2
    assert [s.seed for s in quick.specs] == sorted(s.seed for s in quick.specs)        # seed-major
    deep = tier_cells(STUDY_TIERS["deep"], tmp_path)
    assert {s.size for s in deep.specs} == {"deep"} and deep.specs[0].method == "vanilla"
    assert [s.seed for s in deep.specs if s.method == "savae"] == [0]
    steps = lambda spec: spec.size_config().limits.max_train * spec.size_config().train.epochs  # noqa: E731
    assert steps(deep.specs[0]) >= 10 * steps(quick.specs[0])


def test_study_methods_runs_a_subset_of_the_tier_and_refuses_a_method_outside_it(tmp_path):
    from collapse_bench.config import STUDY_TIERS, ConfigError, StudyTier
    from collapse_bench.registry import UnknownMethodError
    from collapse_bench.study import study_tiers, tier_cells
    [deep] = study_tiers(["deep"], tmp_path, [1, 2], ["agg-vae", "vanilla"])
    assert [(s.method, s.seed) for s in deep.specs] == [("vanilla", 1), ("agg", 1), ("vanilla", 2), ("agg", 2)]
    assert deep.methods == ["agg", "vanilla"]                   # aliases resolved, so a fewer-seeds note finds them
    [every] = study_tiers(["deep"], tmp_path)
    assert {s.method for s in every.specs} == set(STUDY_TIERS["deep"].methods)
    with pytest.raises(UnknownMethodError):
        study_tiers(["deep"], tmp_path, None, ["no-such-method"])
    small = StudyTier("small", "smoke", (("synthetic", "lstm"),), methods=("vanilla", "bnvae"))
    with pytest.raises(ConfigError, match="'fb': not a method of the small tier, whose methods are vanilla, bnvae"):
        tier_cells(small, tmp_path, methods=["fb"])


def test_report_never_pools_two_configurations_with_one_rounded_label():
    from collapse_bench.report.load import distinct_labels
    a, b = rec("bnvae", 0, 30.0, 1.0), rec("bnvae", 0, 31.0, 1.0)
    a.update(label="bnvae(gamma=0.7219)", params={"gamma": 0.7219343632501507}, cell="a")
    b.update(label="bnvae(gamma=0.7219)", params={"gamma": 0.72189}, cell="b")
    same = rec("vanilla", 1, 30.0, 1.0)
    labels = sorted(frame(distinct_labels([a, b, same, dict(same, seed=2)]))["label"])
    assert labels == ["bnvae(gamma=0.72189)", "bnvae(gamma=0.7219343632501507)", "vanilla", "vanilla"]


def test_params_from_says_which_methods_had_no_tuned_file(tmp_path):
    from collapse_bench.tune import apply_best_params
    (tmp_path / "tune").mkdir()
    (tmp_path / "tune" / "b.best.json").write_text(json.dumps({"method": "bnvae", "params": {"gamma": 0.71}}))
    said: list[str] = []
    settings = apply_best_params({}, tmp_path, ["bn-vae", "fb"], log=said.append)
    assert settings == {"bnvae": {"gamma": 0.71}}
    assert said == ["params-from: bnvae gamma=0.71",
                    f"params-from: no tuned parameters for fb in {tmp_path}; it keeps its defaults"]


# --- a failed cell points at its record (point 6) ------------------------------------------------------------
def test_a_failed_cells_line_says_where_its_traceback_is(tmp_path, capsys, monkeypatch):
    from collapse_bench import sweep
    from collapse_bench.store import failed_result
    spec = CellSpec("fb", "yelp", "smoke", 1)
    bad = {"cell": spec.cell, "label": "fb", "dataset": "yelp", "size": "smoke", "seed": 1, "status": "failed",
           "error": {"type": "DataError", "message": "no yelp.train.txt\nmore", "traceback": "Traceback ..."}}
    where = tmp_path / "results" / f"{spec.cell}.json"
    assert cell_line(bad, record_path=where) == f"[failed] fb yelp/smoke seed1  DataError: no yelp.train.txt  " \
                                                f"(traceback in {where})"
    plain = io.StringIO()
    with SweepProgress(1, out=tmp_path, stream=plain, tty=False) as p:
        p.finish(bad)
    assert f"(traceback in {where})" in plain.getvalue()

    def boom(spec, on_step=None):                   # every cell fails inside, as a real failure is recorded
        return failed_result(spec, {"type": "RuntimeError", "message": "boom", "traceback": "Traceback: boom"})
    real = sweep.run_sweep
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: real(*a, fn=boom, **k))
    out = tmp_path / "run"
    assert main(["run", "--methods", "vanilla", *FAST, "--out", str(out), "--no-report"]) == 1
    (path,) = (out / "results").glob("*.json")
    assert "[failed] vanilla" in (err := capsys.readouterr().err) and f"(traceback in {path})" in err
    assert json.loads(path.read_text())["error"]["traceback"] == "Traceback: boom"


# --- help and --set mistakes (point 9) -----------------------------------------------------------------------
def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_gives_the_seeds_out_and_objective_defaults(capsys):
    run = _help(["run", "--help"], capsys)
    assert "--seeds 0,1,2 comma-separated run seeds" in run and "(default: 0)" in run
    assert "--out OUT folder of the run" in run and "(default: runs/latest)" in run
    assert "default: nll" in (tune_help := _help(["tune", "--help"], capsys)) and "never on test" in tune_help


def test_set_with_a_space_instead_of_equals_names_the_fix(tmp_path, capsys):
    out = tmp_path / "r"
    with pytest.raises(SystemExit) as e:
        main(["run", "--methods", "bnvae", "--set", "bnvae.gamma", "0.7", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--set bnvae.gamma 0.7: write the value after '=' with no space" in err
    assert "--set bnvae.gamma=0.7" in err and "unrecognized arguments" not in err and not out.exists()


def test_set_for_a_method_not_run_suggests_adding_it(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--methods", "fb", "--set", "bnvae.gamma=0.7", "--no-baseline", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'bnvae' is not among --methods fb; add it (--methods fb,bnvae) or drop this --set" in err
    assert not out.exists()
