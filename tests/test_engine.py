"""The engine end to end: registry errors, CLI, result files, resume, failure handling, real corpora."""
import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from collapse_bench import registry
from collapse_bench.cli import main
from collapse_bench.config import ConfigError, size_config
from collapse_bench.cell import CellSpec, load_cell_corpus, run_cell, run_record
from collapse_bench.store import ResultStore
from collapse_bench.sweep import expand, run_sweep

DATA = Path(os.environ.get("COLLAPSE_BENCH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not (DATA / "ptb").is_dir(), reason=f"corpora not found at {DATA}")
METRICS = ("nll", "ppl", "elbo", "recon", "kl", "mi", "au", "probe")
ONE_EPOCH = {"train": {"epochs": 1}}


def test_unknown_method_lists_known_ones_and_a_close_match():
    with pytest.raises(registry.UnknownMethodError) as e:
        registry.get("vanila")
    assert "'vanilla'" in str(e.value) and "Known methods:" in str(e.value) and "lm" in str(e.value)


def test_aliases_resolve_to_the_registered_class():
    assert registry.get("vae") is registry.get("vanilla")


def test_cli_rejects_bad_input_with_the_fix(capsys):
    assert main(["run", "--methods", "vanila", "--size", "smoke", "--out", "/tmp/never"]) == 2
    assert "Did you mean 'vanilla'" in capsys.readouterr().err
    assert main(["run", "--methods", "vanilla", "--set", "vanilla.gamma=1", "--out", "/tmp/never"]) == 2
    assert "has no parameter 'gamma'" in capsys.readouterr().err
    assert main(["run", "--methods", "vanilla", "--set", "train.epochs=zero", "--out", "/tmp/never"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert main(["run", "--methods", "vanilla", "--size", "huge", "--out", "/tmp/never"]) == 2
    assert "smoke, default, study, deep, paper" in capsys.readouterr().err


def test_config_validation():
    with pytest.raises(ConfigError, match="train.lr"):
        size_config("smoke", "synthetic").replace(train={"lr": -1.0})
    with pytest.raises(ConfigError, match="unknown train field"):
        size_config("smoke", "synthetic").replace(train={"epoch": 1})


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", "--methods", "vanilla,ae,lm", "--size", "smoke", "--out", str(out), "--no-report"])
    return code, out


def test_provenance_records_the_commit_imported_and_whether_the_tree_was_dirty(monkeypatch):
    """The commit is read when the harness is imported, not per cell: a later HEAD (someone committing during a long
    sweep) must not relabel code a worker imported earlier. Here git stops answering after import."""
    import subprocess

    from collapse_bench import store
    first = store.provenance()
    assert set(first) >= {"git", "git_dirty"} and first["git_dirty"] in (True, False, None)
    if first["git"] is not None:                                   # inside a git checkout (CI's clone is)
        assert first["git"] == store.git_hash() and first["git_dirty"] == store.git_dirty()

    def no_git(*a, **k):
        raise OSError("git is gone")
    monkeypatch.setattr(subprocess, "run", no_git)
    assert store.git_hash() is None and store.git_dirty() is None
    later = store.provenance()
    assert (later["git"], later["git_dirty"]) == (first["git"], first["git_dirty"])


def test_run_writes_one_complete_result_file_per_cell(smoke_run):
    code, out = smoke_run
    assert code == 0
    files = sorted((out / "results").glob("*.json"))
    assert len(files) == 3
    for f in files:
        rec = json.loads(f.read_text())
        assert rec["status"] == "ok", rec["error"]
        assert set(METRICS) <= set(rec["metrics"])
        assert rec["timing"]["train_seconds"] > 0 and rec["timing"]["peak_memory_mb"] > 0
        assert len(rec["curves"]) == 2 and {"valid_mi", "valid_au", "valid_kl"} <= set(rec["curves"][0])
        assert rec["provenance"]["dataset_hash"] and rec["provenance"]["packages"]["torch"]
        assert rec["config"]["model"]["nz"] == size_config("smoke", "synthetic").model.nz
    by = {json.loads(f.read_text())["method"]: json.loads(f.read_text())["metrics"] for f in files}
    assert by["lm"]["kl"] == 0 and by["lm"]["probe"] == {} and by["lm"]["nll"] == pytest.approx(by["lm"]["recon"])
    assert by["ae"]["kl"] > by["vanilla"]["kl"]          # the AE's KL is unpenalised
    assert set(by["vanilla"]["probe"]) == {"100"}


def test_failed_cell_is_recorded_and_the_sweep_goes_on(tmp_path, unreadable_yelp):
    good = CellSpec("vanilla", "synthetic", "smoke", 0, overrides=ONE_EPOCH)
    bad = CellSpec("vanilla", "yelp", "smoke", 0, overrides=ONE_EPOCH, data_dir=unreadable_yelp)
    records = run_sweep([bad, good], tmp_path)
    status = {r["dataset"]: r for r in records}
    assert status["yelp"]["status"] == "failed" and "vocab.txt: 0 entries" in status["yelp"]["error"]["message"]
    assert status["yelp"]["error"]["traceback"] and status["yelp"]["label"] == "vanilla"
    assert status["synthetic"]["status"] == "ok"
    # the rerun retries only the failed cell
    ran = []
    run_sweep([bad, good], tmp_path, fn=lambda s, on_step: ran.append(s.dataset) or run_cell(s, on_step))
    assert ran == ["yelp"]


def test_the_seed_changes_the_metrics():
    """The run seed reaches training (same-seed reproducibility of every method: test_methods'
    test_deterministic_for_a_seed)."""
    a, b = (run_record(CellSpec("vanilla", "synthetic", "smoke", seed, overrides=ONE_EPOCH)) for seed in (3, 4))
    assert a["status"] == b["status"] == "ok"
    assert a["metrics"]["nll"] != b["metrics"]["nll"] and a["metrics"] != b["metrics"]


@needs_data
@pytest.mark.parametrize("dataset", ["short-yelp", "ptb", "yahoo-mini"])
def test_real_corpora_run_at_smoke_size(dataset):
    rec = run_record(CellSpec("vanilla", dataset, "smoke", 0, overrides=ONE_EPOCH, data_dir=str(DATA)))
    assert rec["status"] == "ok", rec["error"]
    m = rec["metrics"]
    assert 1 < m["ppl"] < 1e5 and m["nll"] <= m["elbo"] + 1.0
    assert (set(m["probe"]) == {"100"}) == (dataset == "short-yelp")   # only short-yelp has labels here


def test_third_party_methods_register_through_the_entry_point_group(tmp_path, monkeypatch):
    pkg = tmp_path / "cb_plugin_demo.py"
    pkg.write_text("from collapse_bench.method import Method\nfrom collapse_bench.registry import register\n\n"
                   "@register('plugin-demo')\nclass Demo(Method):\n    \"\"\"A third-party method.\"\"\"\n")
    dist = tmp_path / "cb_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cb-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[collapse_bench.methods]\ndemo = cb_plugin_demo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        assert "plugin-demo" in registry.names()
        assert registry.get("plugin-demo").description() == "A third-party method."
    finally:
        registry._METHODS.pop("plugin-demo", None)


PLUGIN = ("from collapse_bench.method import Method\nfrom collapse_bench.registry import register\n\n"
          "@register('stale-demo')\nclass Demo(Method):\n    \"\"\"A plug-in whose code is edited between runs.\"\"\"\n"
          "    def kl_penalty(self, post):\n        return {scale} * post.kl()\n")


def test_a_cell_whose_code_changed_is_stale_and_runs_again_unless_kept(tmp_path, monkeypatch):
    from collapse_bench import fingerprint
    from collapse_bench.report import build_report
    from collapse_bench.sweep import pending, stale_cells
    src = tmp_path / "pkg" / "cb_stale_demo.py"
    src.parent.mkdir()
    src.write_text(PLUGIN.format(scale="1.0"))
    dist = tmp_path / "pkg" / "cb_stale_demo-2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cb-stale-demo\nVersion: 2.3\n")
    (dist / "top_level.txt").write_text("cb_stale_demo\n")
    (dist / "RECORD").write_text("cb_stale_demo.py,,\n")
    monkeypatch.syspath_prepend(str(src.parent))
    fingerprint.method_code.cache_clear()
    try:
        module = importlib.import_module("cb_stale_demo")
        specs = [CellSpec("stale-demo", "synthetic", "smoke", 0, overrides=ONE_EPOCH)]
        (rec,) = run_sweep(specs, tmp_path / "out")
        code = rec["provenance"]["code"]["method"]
        assert rec["status"] == "ok" and code["module"] == "cb_stale_demo"
        assert (code["distribution"], code["version"]) == ("cb-stale-demo", "2.3")     # the plug-in's version
        assert pending(specs, tmp_path / "out") == [] and stale_cells(specs, tmp_path / "out") == {}
        src.write_text(PLUGIN.format(scale="0.5"))     # the author edits a constant; a new process reads the file:
        registry._METHODS.pop("stale-demo")
        importlib.reload(module)
        fingerprint.method_code.cache_clear()
        assert stale_cells(specs, tmp_path / "out") == {specs[0].cell: "the method's code changed"}
        assert pending(specs, tmp_path / "out") == specs and pending(specs, tmp_path / "out", keep_stale=True) == []
        def stopped(*args, **kwargs):
            raise KeyboardInterrupt
        more = [*specs, CellSpec("vanilla", "synthetic", "smoke", 1, overrides=ONE_EPOCH)]
        with pytest.raises(KeyboardInterrupt):                               # stopped before its first new cell:
            run_sweep(more, tmp_path / "out", keep_stale=True, fn=stopped)    # the kept cell is marked all the same
        assert ResultStore(tmp_path / "out").stale_marks() == {specs[0].cell: "the method's code changed"}
        run_sweep(specs, tmp_path / "out", keep_stale=True)                 # kept, and marked on the page
        assert ResultStore(tmp_path / "out").stale_marks() == {specs[0].cell: "the method's code changed"}
        assert "Stale results" in build_report(tmp_path / "out").read_text()
        (again,) = run_sweep(specs, tmp_path / "out")                        # run again with the code now
        assert again["provenance"]["started"] >= rec["provenance"]["started"] and again["metrics"] != rec["metrics"]
        assert ResultStore(tmp_path / "out").stale_marks() == {} and stale_cells(specs, tmp_path / "out") == {}
    finally:
        registry._METHODS.pop("stale-demo", None)
        fingerprint.method_code.cache_clear()


def test_untracked_method_files_make_the_tree_dirty(tmp_path, monkeypatch):
    import subprocess

    from collapse_bench import store
    repo = tmp_path / "repo"
    (repo / "methods").mkdir(parents=True)
    (repo / "collapse_bench").mkdir()
    for cmd in (["init", "-q"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    monkeypatch.setattr(store, "_git", lambda *a: subprocess.run(["git", *a], cwd=repo / "collapse_bench",
                                                                  capture_output=True, text=True))
    assert store.git_dirty() is False
    (repo / "notes.txt").write_text("an untracked file elsewhere is not code")
    assert store.git_dirty() is False
    (repo / "methods" / "duvae.py").write_text("# a new method, not committed")
    assert store.git_dirty() is True


def test_gradient_clipping_is_joint_over_encoder_and_decoder():
    """The reference code clips clip_grad_norm_(vae.parameters(), 5) once: a large encoder gradient must also
    shrink the decoder's step, and the encoder/decoder gradient ratio must survive clipping."""
    import torch
    from collapse_bench.data import load_corpus
    from collapse_bench.train import Trainer
    cfg = size_config("smoke", "synthetic")
    corpus = load_corpus("synthetic", None, cfg.limits)
    t = Trainer(registry.get("vanilla")(), cfg, corpus, seed=0)
    enc, dec = t.model.encoder_parameters(), t.model.decoder_parameters()
    norm = lambda ps: torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ps])).item()
    for which in ("both", "encoder"):
        t.optimize(1e4 * sum(p.sum() for p in enc) + 1e-2 * sum(p.sum() for p in dec), which=which)
        e, d = norm(enc), norm(dec)
        assert (e ** 2 + d ** 2) ** 0.5 == pytest.approx(cfg.train.clip, rel=1e-4)
        assert e / d == pytest.approx(1e6 * (sum(p.numel() for p in enc) / sum(p.numel() for p in dec)) ** 0.5, rel=1e-3)


def test_presets_carry_the_recipe_of_their_code_and_land_in_the_record(tmp_path):
    from collapse_bench import presets
    from collapse_bench.sweep import expand_presets
    (spec,) = expand_presets(["ae-fb-4"], ["synthetic"], ["smoke"], [0], {"train": {"epochs": 1}})
    cfg = spec.size_config()
    assert spec.params["pretrain"] == "ae" and spec.params["target"] == 4.0
    # Li et al.'s recipe (lr 0.5, KL weight 0 -> 1 over 10 epochs, patience 5); the user's --set applies last
    assert (cfg.train.lr, cfg.train.kl_start, cfg.train.warm_up, cfg.train.decay_patience) == (0.5, 0.0, 10.0, 5)
    assert cfg.train.epochs == 1 and spec.label == "preset:ae-fb-4"
    rec = run_sweep(expand_presets(["vae"], ["synthetic"], ["smoke"], [0], {"train": {"epochs": 1}}), tmp_path)[0]
    assert rec["status"] == "ok" and rec["preset"] == "vae" and rec["config"]["model"]["encoder_init"] == "uniform"
    with pytest.raises(presets.UnknownPresetError, match="Did you mean 'bnvae-0.7'"):
        expand_presets(["bnvae-07"], ["synthetic"], ["smoke"], [0])
    with pytest.raises(ValueError, match="a preset fixes its method's params"):
        expand_presets(["vae"], ["synthetic"], ["smoke"], [0], {"bnvae": {"gamma": "0.5"}})


def test_curves_record_the_kl_of_every_latent_dimension():
    rec = run_record(CellSpec("vanilla", "synthetic", "smoke", 0, overrides=ONE_EPOCH))
    (point,) = rec["curves"]
    assert len(point["valid_kl_dims"]) == rec["config"]["model"]["nz"]
    assert sum(point["valid_kl_dims"]) == pytest.approx(point["valid_kl"], rel=0.05)   # valid_kl: all of valid
    assert min(point["valid_kl_dims"]) >= 0


def test_sweeps_start_the_dearest_cells_first(tmp_path):
    from collapse_bench.sweep import pending
    specs = expand(["vanilla", "bnvae", "fb", "savae"], ["synthetic"], ["smoke"], [0])
    assert [s.method for s in pending(specs, tmp_path)] == ["savae", "fb", "vanilla", "bnvae"]  # fb: AE + FB


def test_curve_points_inside_epochs_are_latent_only_and_not_timed():
    """train.curve_points_per_epoch=3 adds two points inside each epoch (MI, AU, KL per unit; no validation loss)
    at fractional epochs; `epochs` still counts whole epochs and the step time is unchanged in kind."""
    rec = run_record(CellSpec("vanilla", "synthetic", "smoke", 0, overrides={"train": {"curve_points_per_epoch": 3}}))
    assert rec["status"] == "ok", rec["error"]
    partial = [c for c in rec["curves"] if c.get("partial")]
    whole = [c for c in rec["curves"] if not c.get("partial")]
    assert [c["epoch"] for c in whole] == [1, 2] and rec["timing"]["epochs"] == 2
    assert len(partial) == 4 and all(0 < c["epoch"] % 1 < 1 for c in partial)
    assert all("valid_loss" not in c and len(c["valid_kl_dims"]) == 16 and "valid_mi" in c for c in partial)
    steps = [c["step"] for c in rec["curves"]]
    assert steps == sorted(steps)


def test_iw_nll_on_a_fixed_subset_of_test_sentences(monkeypatch):
    """eval.iw_sentences scores IW-NLL on evaluate.iw_lines' subset: the same sentences whatever the run seed, drawn
    across the whole test split (not its first lines) and kept in file order, and the NLL is the mean over exactly
    those; the other metrics keep the whole test split. The LM's IW-NLL is its exact NLL, so the two seed-0 runs
    (same model) score each sentence alike."""
    from collapse_bench import evaluate as ev
    scored, iw_nll = [], ev.iw_nll

    def recording(method, model, split, *args, **kwargs):
        nll = iw_nll(method, model, split, *args, **kwargs)
        scored.append((split, nll))
        return nll
    monkeypatch.setattr(ev, "iw_nll", recording)
    over = {"eval": {"iw_sentences": 60}, "train": {"epochs": 1}}
    a, b = (run_record(CellSpec("lm", "synthetic", "smoke", seed, overrides=over)) for seed in (0, 1))
    full = run_record(CellSpec("lm", "synthetic", "smoke", 0, overrides={"train": {"epochs": 1}}))
    assert a["status"] == b["status"] == full["status"] == "ok"
    (sub_a, nll_a), (sub_b, _), (whole, nll_whole) = scored
    test = load_cell_corpus("synthetic", None, size_config("smoke", "synthetic").limits).test
    same = lambda x, y: len(x) == len(y) and all(np.array_equal(s, t) for s, t in zip(x.sentences, y.sentences))  # noqa: E731
    assert same(whole, test) and full["metrics"]["iw_sentences"] == full["metrics"]["test_sentences"] == 200
    assert same(sub_a, ev.iw_lines(test, 60)) and same(sub_b, sub_a)         # the fixed subset, whatever the seed
    assert a["metrics"]["iw_sentences"] == 60 and a["metrics"]["test_sentences"] == 200
    index = _positions(sub_a, test)
    assert np.all(np.diff(index) > 0) and index[-1] >= 100 and not same(sub_a, test.subset(np.arange(60)))
    np.testing.assert_allclose(nll_a, nll_whole[index], rtol=1e-5)
    assert a["metrics"]["nll"] == pytest.approx(float(nll_whole[index].mean()), rel=1e-6)
    assert full["metrics"]["nll"] == pytest.approx(float(nll_whole.mean()), rel=1e-6)
    assert full["metrics"]["nll"] != a["metrics"]["nll"]
    with pytest.raises(ConfigError, match="iw_sentences"):
        size_config("smoke", "synthetic").replace(eval={"iw_sentences": 0})


def _positions(subset, split) -> np.ndarray:
    """Where each sentence of `subset` (a subsequence of `split`, in its order) sits in `split`."""
    out, i = [], 0
    for s in subset.sentences:
        while not np.array_equal(split.sentences[i], s):
            i += 1
        out.append(i)
        i += 1
    return np.array(out)
