"""`rescore`: kept models scored again without retraining; refusals before anything is written."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from collapse_bench.cell import CellSpec
from collapse_bench.cli import main as cli_main
from collapse_bench.rescore import rescore
from collapse_bench.store import ResultStore
from collapse_bench.sweep import run_sweep

SMALL = {"train": {"epochs": 1}, "limits": {"max_train": 300, "max_valid": 100, "max_test": 100}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    specs = [CellSpec(m, "synthetic", "smoke", 0, overrides=SMALL) for m in ("vanilla", "delta")]
    records = run_sweep(specs, out)
    assert [r["status"] for r in records] == ["ok", "ok"]
    return out


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_cell_keeps_its_model_and_its_per_sentence_nll(finished):
    store = ResultStore(finished)
    for rec in store.records():
        kept = torch.load(store.model_path(rec["cell"]), weights_only=True)
        assert kept["cell"] == rec["cell"] and kept["code"] == rec["provenance"]["code"]
        assert kept["test_mean"].shape == (rec["metrics"]["test_sentences"], rec["config"]["model"]["nz"])
        sentences = np.load(store.sentences_path(rec["cell"]))
        assert len(sentences["nll"]) == rec["metrics"]["iw_sentences"]
        assert sentences["nll"].mean() == pytest.approx(rec["metrics"]["nll"], rel=1e-12)
        assert rec["scoring"]["by"] == "training run"


def test_rescoring_with_the_same_settings_reproduces_every_metric(finished, tmp_path):
    before = digest(finished)
    new = rescore(finished, tmp_path / "again", {})
    old = {r["cell"]: r for r in ResultStore(finished).records()}
    assert {r["cell"] for r in new} == set(old)
    for rec in new:
        assert rec["metrics"] == old[rec["cell"]]["metrics"]
        same_text = lambda t: {k: v for k, v in t.items() if k != "seconds"}  # noqa: E731
        assert same_text(rec["text"]) == same_text(old[rec["cell"]]["text"]) and rec["text"]["reconstructions"]
        assert rec["scoring"]["by"] == "rescore" and rec["scoring"]["source"] == str(finished)
    assert digest(finished) == before                      # the source is never written


def test_rescoring_with_more_samples_scores_the_same_sentences(finished, tmp_path):
    new = rescore(finished, tmp_path / "k50", {"iw_samples": 50}, methods=["delta"])
    assert [r["method"] for r in new] == ["delta"]
    rec = new[0]
    assert rec["metrics"]["iw_samples"] == 50 and rec["config"]["eval"]["iw_samples"] == 50
    assert rec["scoring"]["eval_overrides"] == {"iw_samples": 50}
    old = np.load(ResultStore(finished).sentences_path(rec["cell"]))
    now = np.load(ResultStore(tmp_path / "k50").sentences_path(rec["cell"]))
    np.testing.assert_array_equal(old["index"], now["index"])
    assert not np.array_equal(old["nll"], now["nll"])


def refused(capsys, *argv) -> str:
    assert cli_main(["rescore", *map(str, argv)]) == 2
    return capsys.readouterr().err


def copy_run(src: Path, dest: Path) -> Path:
    for p in src.rglob("*"):
        if p.is_file():
            (dest / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dest / p.relative_to(src)).write_bytes(p.read_bytes())
    return dest


def test_rescore_refuses_a_missing_model_and_writes_nothing(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    gone = next((run / "models").glob("delta*.pt"))
    gone.unlink()
    err = refused(capsys, run, "--out", tmp_path / "dest")
    assert "no kept model" in err and gone.stem in err and "rerun the cell" in err
    assert not (tmp_path / "dest").exists()


def test_rescore_refuses_a_model_of_other_code_and_one_that_is_not_data(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    path = next((run / "models").glob("vanilla*.pt"))
    kept = torch.load(path, weights_only=True)
    kept["code"]["harness"]["training"] = "0" * 16
    torch.save(kept, path)
    err = refused(capsys, run, "--out", tmp_path / "dest")
    assert "belongs to other code" in err and "training code (0000000000000000 then" in err
    torch.save({"cell": kept["cell"], "hook": os.system}, path)       # a pickled callable: code, not data
    err = refused(capsys, run, "--out", tmp_path / "dest")
    assert "not a kept model that loads as data" in err
    assert not (tmp_path / "dest").exists()


def test_rescore_refuses_settings_other_than_eval_and_its_own_folder(finished, capsys):
    assert "only eval.FIELD=VALUE" in refused(capsys, finished, "--set", "train.epochs=3")
    assert "iw_samples" in refused(capsys, finished, "--set", "eval.iw_samples=zero")
    assert "is the source folder" in refused(capsys, finished, "--out", finished)
    assert "no results/ folder" in refused(capsys, finished / "nowhere")


def test_rescore_cli_writes_records_that_say_so(finished, tmp_path, capsys):
    assert cli_main(["rescore", str(finished), "--set", "eval.iw_samples=30", "--out", str(tmp_path / "k30")]) == 0
    recs = ResultStore(tmp_path / "k30").records()
    assert len(recs) == 2 and all(r["metrics"]["iw_samples"] == 30 for r in recs)
    assert (tmp_path / "k30" / "leaderboard.html").is_file()
    assert json.loads((tmp_path / "k30" / "results.jsonl").read_text().splitlines()[0])["scoring"]["by"] == "rescore"


SMALL_FLAGS = ["--size", "smoke", "--seeds", "0", "--set", "train.epochs=1", "--set", "limits.max_train=300",
               "--set", "limits.max_valid=100", "--set", "limits.max_test=100"]


def test_run_against_a_folder_runs_only_the_new_method_and_ranks_it_there(finished, tmp_path, capsys):
    before = digest(finished)
    out = tmp_path / "mine"
    assert cli_main(["run", "--methods", "bnvae", "--against", str(finished), "--out", str(out), *SMALL_FLAGS]) == 0
    assert digest(finished) == before                                       # DIR is only read
    cells = {r["method"]: r for r in ResultStore(out).records()}
    assert set(cells) == {"bnvae", "vanilla", "delta"}
    assert [p.name.split("__")[0].split("-")[0] for p in (out / "models").glob("*.pt")] == ["bnvae"]   # vanilla not rerun
    borrowed = json.loads((out / "against.json").read_text())
    assert borrowed["dir"] == str(finished) and len(borrowed["cells"]) == 2
    assert cells["vanilla"] == ResultStore(finished).load(cells["vanilla"]["cell"])
    assert ResultStore(out).sentences_path(cells["vanilla"]["cell"]).is_file()
    assert "ranked against 2 cells" in capsys.readouterr().err


def test_run_against_refuses_a_folder_that_is_not_comparable(finished, tmp_path, capsys):
    out = tmp_path / "mine"

    def refused_run(*flags) -> str:
        assert cli_main(["run", "--methods", "bnvae", "--against", str(finished), "--out", str(out), *flags]) == 2
        assert not out.exists()
        return capsys.readouterr().err
    err = refused_run(*SMALL_FLAGS[:2], "--seeds", "1", *SMALL_FLAGS[4:])
    assert "no vanilla cell for synthetic, size smoke, seed 1" in err and "seeds [0]" in err
    err = refused_run(*SMALL_FLAGS[:-2], "--set", "limits.max_test=50")
    assert "no vanilla cell" in err and '"max_test": 50' in err and '"max_test": 100' in err
    stale = copy_run(finished, tmp_path / "stale")
    vanilla = next(p for p in (stale / "results").glob("vanilla*.json"))
    rec = json.loads(vanilla.read_text())
    rec["provenance"]["code"]["fingerprint"] = "0" * 12
    rec["provenance"]["code"]["harness"]["sha256"] = "0" * 16
    vanilla.write_text(json.dumps(rec))
    assert cli_main(["run", "--methods", "bnvae", "--against", str(stale), "--out", str(out), *SMALL_FLAGS]) == 2
    assert "training/scoring code changed" in capsys.readouterr().err and not out.exists()


def test_bf16_scoring_is_checked_against_fp32_on_a_fixed_subset_and_falls_back_above_the_bound(finished, tmp_path):
    """eval.precision=bf16 scores the first eval.bf16_check_sentences IW-NLL sentences in both precisions (the same
    draws) and keeps bf16 only where their mean |difference| is within eval.bf16_bound; the record says which."""
    old = {r["cell"]: r for r in ResultStore(finished).records()}
    assert all(r["scoring"]["precision"] == {"asked": "fp32", "used": "fp32", "check": None} for r in old.values())
    loose = rescore(finished, tmp_path / "loose", {"precision": "bf16", "bf16_check_sentences": 20, "bf16_bound": 1.0})
    strict = rescore(finished, tmp_path / "strict", {"precision": "bf16", "bf16_check_sentences": 20,
                                                      "bf16_bound": 0.0})
    for rec, tight in zip(loose, strict):
        check = rec["scoring"]["precision"]["check"]
        assert check["sentences"] == 20 and check["bound"] == 1.0
        assert 0 < check["mean_abs_diff"] <= check["max_abs_diff"] < 1.0   # bf16 moves it, a little
        assert rec["scoring"]["precision"]["used"] == "bf16"
        first20 = np.load(ResultStore(finished).sentences_path(rec["cell"]))["nll"][:20]
        # the same 20 sentences as the fp32 score's first 20 (other draws of z: a subset batches otherwise)
        assert check["fp32_mean_nll"] == pytest.approx(first20.mean(), rel=0.02)
        assert tight["scoring"]["precision"]["used"] == "fp32" and not tight["scoring"]["precision"]["check"][
            "within_bound"]
        assert tight["metrics"] == old[rec["cell"]]["metrics"]                      # fell back: the fp32 figures
        assert rec["metrics"]["nll"] != old[rec["cell"]]["metrics"]["nll"]
