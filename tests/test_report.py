"""The HTML leaderboard: tables, statistics, escaping, files beside the page, and a real headless browser."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from collapse_bench.report import build_report, load_results
from collapse_bench.report.load import frame
from collapse_bench.report.published import paper_values, tables_for
from collapse_bench.report.stats import add_time_ratio, mark_best, summarize, tied, welch_p
from collapse_bench.report.table import build_boards

XSS = "<script>alert(1)</script>"
PROBE_LABELS = (100, 500, 1000, 2000, 10000)

# label -> (method, params, nll, kl, mi, au, probe accuracy at 100 labels, train seconds)
PROFILES: dict[str, tuple[str, dict[str, Any], float, float, float | None, float, float | None, float]] = {
    "vanilla": ("vanilla", {}, 357.9, 0.05, 0.02, 0.0, 0.55, 100.0),
    "bnvae(gamma=0.6)": ("bnvae", {"gamma": 0.6}, 356.4, 6.4, 5.4, 32.0, 0.86, 103.0),
    "bnvae(gamma=0.7)": ("bnvae", {"gamma": 0.7}, 356.0, 9.0, 7.3, 32.0, 0.88, 104.0),
    "fb(target_kl=4.0)": ("fb", {"target_kl": 4.0}, 359.1, 4.0, 1.9, 30.0, 0.78, 108.0),
    "lm": ("lm", {}, 351.2, 0.0, None, 0.0, None, 80.0),
    XSS: (XSS, {"evil": XSS}, 358.5, 2.0, 1.0, 5.0, 0.65, 120.0),
}


# cells run as a named paper configuration (collapse_bench/presets.py); only these sit beside the paper's figures
PRESET_OF = {"vanilla": "vae", "bnvae(gamma=0.7)": "bnvae-0.7", "lm": "lstm-lm"}


def record(label: str, method: str, seed: int, *, params: dict[str, Any] | None = None, dataset: str = "synthetic",
           size: str = "smoke", metrics: dict[str, Any] | None = None, train_seconds: float = 10.0,
           curves: list[dict[str, Any]] | None = None, error: dict[str, str] | None = None) -> dict[str, Any]:
    """A schema-1 result record (ARCHITECTURE.md); ``error`` makes it a failed cell with empty metrics."""
    params = params or {}
    cell = f"{label}__{dataset}__{size}__seed{seed}"
    return {
        "schema": 1, "cell": cell, "method": method, "params": params, "label": label,
        "dataset": dataset, "size": size, "seed": seed, "status": "failed" if error else "ok", "error": error,
        "metrics": {} if error else (metrics or {}),
        "timing": {"train_seconds": train_seconds, "steps": 300, "seconds_per_step": train_seconds / 300,
                   "eval_seconds": 2.5, "peak_memory_mb": 612.0, "threads": 2},
        "curves": [] if error else (curves or []),
        "config": {"model": {"nz": 32}, "train": {"epochs": 3}, "eval": {"iw_samples": 50}, "limits": {},
                   "device": "cpu"},
        "provenance": {"harness_version": "0.1.0", "git": "abc1234", "dataset_hash": "sha256:00",
                       "packages": {"torch": "2.13.0"}, "python": "3.11.7", "platform": "Linux-x86_64",
                       "hostname": "ci-box", "started": f"2026-11-21T10:{seed:02d}:00",
                       "finished": f"2026-11-21T10:{seed:02d}:30"},
    }


def realistic(label: str, seed: int, dataset: str, size: str, labels: bool) -> dict[str, Any]:
    method, params, nll, kl, mi, au, acc, secs = PROFILES[label]
    rng = np.random.default_rng([seed, len(label), int(nll * 10)])
    jitter = lambda s: float(rng.normal(0, s))  # noqa: E731
    probe = {str(n): {"mean": min(0.99, acc + 0.02 * i + jitter(0.01)), "sd": 0.01, "n": 3}
             for i, n in enumerate(PROBE_LABELS)} if labels and acc is not None else {}
    metrics = {"nll": nll + jitter(0.3), "ppl": math.exp((nll + jitter(0.3)) / 90), "elbo": nll + kl + 1.0,
               "recon": nll, "kl": max(0.0, kl + jitter(0.1)), "mi": 0.0 if mi is None else max(0.0, mi + jitter(0.1)),
               "au": au, "probe": probe, "iw_samples": 0 if mi is None else 50,   # 0: the engine's model without z
               "mi_estimator": "full-set mixture (Li et al. 2019)"}
    curves = [{"epoch": e, "step": 100 * e, "lr": 1.0, "kl_weight": min(1.0, 0.1 + 0.3 * e), "train_loss": nll + 20 / e,
               "train_kl": kl * e / 3, "valid_loss": nll + 15 / e, "valid_recon": nll, "valid_au": round(au * e / 3),
               "valid_kl": kl * e / 3 + jitter(0.1), "valid_mi": 0.0 if mi is None else mi * e / 3 + jitter(0.1)}
              for e in (1, 2, 3)]
    rec = record(label, method, seed, params=params, dataset=dataset, size=size, metrics=metrics,
                 train_seconds=secs * (1 + 0.1 * seed) + jitter(1.0), curves=curves)
    rec["preset"] = PRESET_OF.get(label)
    if seed == 0:                                  # the first seed's cell writes text (collapse_bench/text.py)
        rec["text"] = text_of(label, collapsed=label == "vanilla", latent=mi is not None)
    return rec


def _words(seed: int, n: int, long: bool = False) -> str:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in rng.integers(0, 400, n)]
    if long:                                       # an unbroken 70-character token: it must wrap, not overflow
        words[n // 2] = "x" * 70
    return " ".join(words)


def text_of(label: str, *, collapsed: bool, latent: bool = True, prior: bool = True, long: bool = False,
            sentences: int = 5) -> dict[str, Any]:
    """A record's `text` as collapse_bench/text.py writes it: a collapsed model's greedy reconstructions are one
    sentence whatever the input; `long` gives PTB-length sentences (60 tokens) and unbroken tokens."""
    n = 60 if long else 10
    inputs = [_words(100 + i, n, long) for i in range(sentences)]
    inputs[-1] = XSS + " " + inputs[-1]
    k = len(label)
    greedy = [_words(k, 8)] * sentences if collapsed else [_words(k + i, n, long) for i in range(sentences)]
    out: dict[str, Any] = {"seed": 0, "decoding": {"greedy": "argmax", "sampled": "temperature 1"}, "max_tokens": n + 1,
                           "test_index": list(range(sentences)), "inputs": inputs, "reconstructions": None,
                           "interpolation": None, "samples": None, "notes": [], "seconds": 0.1}
    if latent:
        out["reconstructions"] = {"mode_greedy": greedy, "sample_sampled": [_words(k * 7 + i, n - 1, long)
                                                                             for i in range(sentences)]}
        out["interpolation"] = {"t": [0.0, 0.25, 0.5, 0.75, 1.0],
                                "greedy": [greedy[0], greedy[0], "", greedy[1], greedy[1]]}
    else:
        out["notes"].append(f"{label} has no latent variable: no reconstructions and no interpolation")
    if prior:
        many = _words(k * 3, n + 1, long)          # one sample reaches the length limit: shown cut (…)
        div = {"unique": 1 if collapsed else 97, "distinct_1": 0.01 if collapsed else 0.4, "distinct_2": 0.02,
               "self_bleu": 1.0 if collapsed else 0.123456}
        out["samples"] = {"n": 100, "greedy": [many, "", *(_words(k + 9 + i, 9) for i in range(3))],
                          "sampled": [_words(k + 20 + i, n) for i in range(5)],
                          "diversity": {"greedy": div, "sampled": dict(div, unique=100)}, "measures": "..."}
    else:
        out["notes"].append(f"{label} is trained without a prior term: no samples")
    return out


def write(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    (run_dir / "results").mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(records):
        name = str(r.get("cell", f"record{i}")).replace("/", "_")
        (run_dir / "results" / f"{name}.json").write_text(json.dumps(r), encoding="utf-8")
    return run_dir


def sweep(run_dir: Path) -> Path:
    """Six labels × 3 seeds on synthetic/smoke (with probe) and on yelp/paper (no labels), one failed cell."""
    recs = [realistic(label, s, ds, size, ds == "synthetic") for ds, size in (("synthetic", "smoke"), ("yelp", "paper"))
            for label in PROFILES for s in (0, 1, 2)]
    recs.append(record("savae", "savae", 0, error={"type": "RuntimeError", "message": "CUDA <oom> & out of memory",
                                                     "traceback": "Traceback ..."}))
    return write(run_dir, recs)


class BoardParser(HTMLParser):
    """Rows of every ``table.board``: tr class, label (first data-value), cell texts, data-values."""

    def __init__(self) -> None:
        super().__init__()
        self.boards: list[list[dict[str, Any]]] = []
        self._in_board, self._row, self._cell = False, None, None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._in_board = a.get("class") == "board"
            if self._in_board:
                self.boards.append([])
        elif self._in_board and tag == "tr" and a.get("class"):
            self._row = {"cls": a["class"], "cells": [], "values": []}
        elif self._row is not None and tag == "td":
            self._cell = []
            self._row["values"].append(a.get("data-value"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._row["label"] = self._row["values"][0]
            self.boards[-1].append(self._row)
            self._row = None
        elif tag == "table":
            self._in_board = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> list[list[dict[str, Any]]]:
    p = BoardParser()
    p.feed(html)
    return p.boards


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = sweep(tmp_path_factory.mktemp("run"))
    out = build_report(run)
    return out, out.read_text(encoding="utf-8")


def test_load_results_one_row_per_file_with_failed_cells(built: tuple[Path, str]) -> None:
    df = load_results(built[0].parent)
    assert len(df) == 2 * 6 * 3 + 1
    failed = df[df["status"] == "failed"]
    assert failed["label"].tolist() == ["savae"] and "out of memory" in failed["error_message"].iloc[0]
    assert {"nll", "mi", "au", "train_seconds", "probe@100", "probe@10000"} <= set(df.columns)
    assert df.loc[df["label"] == "lm", ["kl", "mi", "au"]].isna().all().all()


def test_one_row_per_label_per_board_and_failed_row(built: tuple[Path, str]) -> None:
    out, html = built
    assert out == out.parent / "leaderboard.html"
    synthetic, yelp = parse(html)
    assert sorted(r["label"] for r in synthetic) == sorted([*PROFILES, "savae"])
    assert sorted(r["label"] for r in yelp) == sorted(PROFILES)
    (failed,) = [r for r in synthetic if r["cls"] == "failed"]
    assert failed["label"] == "savae" and synthetic[-1] is failed          # failed rows sort last
    assert "failed" in failed["cells"][-1] and "RuntimeError: CUDA <oom> & out of memory" in failed["cells"][-1]
    assert "CUDA &lt;oom&gt; &amp; out of memory" in html
    assert all(c == "–" for c in failed["cells"][2:-2])                       # every metric shows a dash


def test_plugin_strings_are_escaped(built: tuple[Path, str]) -> None:
    html = built[1]
    assert XSS not in html and html.count("<script") == 1                     # only our sort script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<svg") >= 7                                            # 4 plots + 3 without a probe board
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|<link[^>]+stylesheet|@import""", html)  # offline


def test_text_section_marks_one_reconstruction_for_different_inputs() -> None:
    """Per label the lowest ok seed with text; a greedy reconstruction equal to a different input's is marked with
    that input, and a model with one reconstruction for all its different inputs is collapsed; identical inputs
    are not evidence. A model without z, or without a prior, shows why a part is missing."""
    from collapse_bench.report.text_section import EMPTY, board_text
    recs = [realistic(label, seed, "synthetic", "smoke", True) for label in PROFILES for seed in (0, 1)]
    later = record("late", "late", 2) | {"text": text_of("late", collapsed=False, prior=False)}
    failed = record("late", "late", 1, error={"type": "E", "message": "m"}) | {"text": text_of("late", collapsed=True)}
    twins = text_of("twins", collapsed=True)
    twins["inputs"] = [twins["inputs"][0]] * 5
    twin = record("twins", "twins", 0) | {"text": twins}
    labels = sorted([*PROFILES, "late", "twins", "none"])
    shown, missing = board_text([*recs, later, failed, twin], "synthetic", "smoke", labels, "b")
    by = {t.label: t for t in shown}
    assert missing == ["none"] and [t.label for t in shown] == [x for x in labels if x != "none"]
    v = by["vanilla"]
    assert v.collapsed and v.recon_count == "1 of 5" and [r.same_as for r in v.recons] == [None, 1, 1, 1, 1]
    assert v.seed == "0" and v.greedy[0].endswith(" …") and v.greedy[1] == EMPTY    # cut at the limit; empty
    assert v.interpolation[2] == ("0.50", EMPTY) and v.diversity["greedy"] == ["1", "0.010", "0.020", "1.000"]
    bn = by["bnvae(gamma=0.6)"]
    assert not bn.collapsed and bn.recon_count == "5 of 5" and all(r.same_as is None for r in bn.recons)
    assert by["lm"].recons == [] and by["lm"].recon_count == "–" and "no latent" in by["lm"].notes[0]
    assert by["late"].seed == "2" and by["late"].greedy == [] and "no samples" in by["late"].notes[0]
    assert not by["twins"].collapsed and all(r.same_as is None for r in by["twins"].recons)


def test_text_section_on_the_page(built: tuple[Path, str]) -> None:
    html = built[1]
    assert html.count("What the models write") == 2
    assert len(re.findall(r'<tr class="collapsed"><td class="name"><a href="#[^"]+">vanilla</a>', html)) == 2
    assert html.count('<td class="sentence same">') == 2 * 4          # vanilla's inputs 2-5, on both boards
    assert html.count("the same as #1's, a different input") == 2 * 4
    assert html.count("(empty: &lt;/s&gt; first)") >= 2 and "0.123" in html and "97 of 100" in html
    assert "lm has no latent variable" in html and "No text recorded for savae" in html


def test_missing_metrics_are_dashes(built: tuple[Path, str]) -> None:
    synthetic, yelp = parse(built[1])
    lm = next(r for r in synthetic if r["label"] == "lm")
    header = ["method", "seeds", "nll", "ppl", "kl", "mi", "au", *(f"p{n}" for n in PROBE_LABELS), "time", "step", "rank",
              "status"]
    row = dict(zip(header, lm["cells"], strict=True))
    assert row["mi"] == row["kl"] == row["au"] == row["p100"] == "–" and "(3)" in row["nll"]   # no z: n/a, not 0
    assert row["rank"] == "4.00"          # best NLL and time, but the last places (6 of 6) for MI, AU and probe
    assert len(yelp[0]["cells"]) == len(header) - len(PROBE_LABELS)         # no probe columns without labels


def test_published_figures_beside_ours(built: tuple[Path, str]) -> None:
    synthetic, yelp = parse(built[1])
    bn7 = next(r for r in yelp if r["label"] == "bnvae(gamma=0.7)")
    assert "paper 355.9" in bn7["cells"][2] and "paper 7.4" in bn7["cells"][5]   # Yelp, from scratch
    bn6 = next(r for r in yelp if r["label"] == "bnvae(gamma=0.6)")
    assert not any("paper" in c for c in bn6["cells"])          # the same method, but not run as the row's preset
    vae = next(r for r in yelp if r["label"] == "vanilla")
    assert "paper 357.9" in vae["cells"][2] and "paper" not in vae["cells"][5]  # He et al.'s per-batch MI: not beside
    assert "per-batch MI estimator" in built[1]
    assert not any("paper" in c for r in synthetic for c in r["cells"])
    ours = re.findall(r'<td class="name">BN-VAE \(0.7\) \*</td>.*?<td class="text">([^<]*)</td>', built[1])
    assert ours == ["bnvae(gamma=0.7)", "not run (preset ae-bnvae-0.7)"]      # from scratch; with a pretrained AE
    lm_table, _ = tables_for("yelp", "paper")
    row = next(r for r in lm_table.rows if r.model == "BN-VAE (0.7) *")
    assert row.matches("bnvae-0.7") and not row.matches("ae-bnvae-0.7") and not row.matches(None)
    (cls,) = tables_for("short-yelp", "paper")
    assert cls.rows[-1].matches("bnvae-0.7") and cls.not_comparable      # fine-tuned encoder: never side by side
    assert paper_values([cls], "bnvae-0.7") == {}
    assert tables_for("yelp", "smoke") == []


def test_vmf_rows_show_only_the_figures_measured_our_way() -> None:
    # BNV's vMF "IW-NLL" uses a Gaussian q on 5 samples, and its KL is Guu et al.'s approximation (2.08 vs 2.17)
    for preset in ("vmf-13", "ae-vmf-13"):
        shown = paper_values(tables_for("yelp", "paper"), preset)
        assert "nll" not in shown and "kl" not in shown and shown["au"] == "32.0"


def test_every_published_row_maps_to_a_preset_that_builds() -> None:
    from collapse_bench import presets
    from collapse_bench.sweep import expand_presets
    seen = set()
    for dataset in ("yelp", "short-yelp"):
        for decoder in ("lstm", "cnn", "transformer"):
            for t in tables_for(dataset, "paper", decoder):
                for r in t.rows:
                    assert r.decoder == decoder
                    p = presets.get(r.preset)
                    (spec,) = expand_presets([r.preset], [dataset], ["paper"], [0])
                    cfg = spec.size_config()
                    assert spec.method == p.method and cfg.train.lr == p.recipe["train"]["lr"]
                    assert cfg.model.encoder_init == p.recipe["model"]["encoder_init"]
                    assert cfg.model.decoder == decoder        # a row sits only on boards of its preset's decoder
                    seen.add(r.model)
    assert "CNN-VAE" in seen and "BN-VAE (0.7) *" in seen
    assert [t.title for t in tables_for("yelp", "paper", "cnn")] == ["Language modelling, Yelp"]
    assert tables_for("short-yelp", "paper", "cnn") == [] and tables_for("yelp", "paper", "transformer") == []


def test_tie_marking_on_known_numbers() -> None:
    a, b, c = summarize([100, 101, 102]), summarize([100.5, 101.5, 102.5]), summarize([110, 111, 112])
    assert a.mean == 101 and a.sd == pytest.approx(1.0)
    assert a.lo == pytest.approx(101 - 4.302653 / math.sqrt(3), abs=1e-5)   # t_{0.975,2} = 4.302653
    assert welch_p(a, b) == pytest.approx(0.5734, abs=1e-3) and tied(a, b)
    assert welch_p(a, c) < 0.001 and not tied(a, c)
    # unequal sizes and variances (Welch-Satterthwaite df) and one side without variance; scipy.stats.ttest_ind(...,
    # equal_var=False) gives 0.442783 and 0.004813
    assert welch_p(summarize([1, 2, 3, 4, 5]), summarize([2, 4, 9])) == pytest.approx(0.4427830, abs=1e-6)
    assert welch_p(summarize([1, 2, 3, 4, 5]), summarize([7, 7, 7])) == pytest.approx(0.0048127, abs=1e-6)
    assert mark_best({"a": a, "b": b, "c": c, "d": None}, "lower") == ({"a"}, {"b"})
    assert mark_best({"a": a, "b": b, "c": c}, "higher") == ({"c"}, set())
    assert mark_best({"a": a, "b": b}, None) == (set(), set())                # KL: no direction, no best
    one = summarize([101.0])
    assert one.n == 1 and math.isnan(one.sd) and tied(a, one) and not tied(a, summarize([101.5]))


def test_ties_and_ratio_in_the_built_table(tmp_path: Path) -> None:
    nll = {"vanilla": [100, 101, 102], "near": [100.5, 101.5, 102.5], "far": [110, 111, 112]}
    secs = {"vanilla": [10, 20, 40], "near": [20, 30, 40], "far": [10, 20, 40]}
    recs = [record(m, m, s, metrics={"nll": nll[m][s], "kl": 1.0, "probe": {}}, train_seconds=secs[m][s])
            for m in nll for s in range(3)]
    recs.append(record("orphan", "orphan", 7, metrics={"nll": 105.0}, train_seconds=5.0))   # no vanilla seed 7
    boards = build_boards(add_time_ratio(frame(recs)))
    rows = {r.label: r for r in boards[0].rows}
    assert rows["vanilla"].cells["nll"].best and rows["near"].cells["nll"].tied
    assert not rows["far"].cells["nll"].tied and not rows["far"].cells["nll"].best
    ratio = rows["near"].cells["time_ratio"].summary          # per seed 2, 1.5, 1: paired, not 90/70
    assert (ratio.n, ratio.mean, ratio.sd) == (3, pytest.approx(1.5), pytest.approx(0.5))
    assert (ratio.lo, ratio.hi) == (pytest.approx(1.5 - 1.242069, abs=1e-5), pytest.approx(1.5 + 1.242069, abs=1e-5))
    assert rows["near"].cells["time_ratio"].text == "1.50 ± 0.50 (3)"
    assert rows["vanilla"].cells["time_ratio"].summary.mean == 1.0
    assert rows["orphan"].cells["time_ratio"].summary is None
    # far has vanilla's seconds (ratio 1 = best, shared); near's 1.5 ± 0.5 is not distinguishable from 1 (p ≈ 0.22)
    assert rows["far"].cells["time_ratio"].best and rows["vanilla"].cells["time_ratio"].best
    assert rows["near"].cells["time_ratio"].tied
    # mean rank over NLL (vanilla 1, near 2, orphan 3, far 4) and time (vanilla = far = 1.5, near 3, orphan
    # without a ratio last: 4)
    assert [(r.label, r.mean_rank) for r in boards[0].rows] == [("vanilla", 1.25), ("near", 2.5), ("far", 2.75),
                                                                ("orphan", 3.5)]
    none = build_boards(add_time_ratio(frame([r for r in recs if r["method"] != "vanilla"])))[0]
    assert all(r.cells["time_ratio"].text == "–" for r in none.rows)


def test_a_starved_cell_and_the_cells_paired_with_it_get_no_time_ratio(tmp_path: Path) -> None:
    secs = {"vanilla": [10, 100, 10, 10], "bnvae": [20, 20, 200, 30]}
    cpu = {"vanilla": [10, 9, 10, 10], "bnvae": [20, 20, 20, None]}   # vanilla seed 1, bnvae seed 2: 10% of a core
    recs = []
    for m in secs:
        for s in range(4):
            r = record(m, m, s, metrics={"nll": 100.0, "kl": 1.0}, train_seconds=secs[m][s])
            if cpu[m][s] is not None:                  # seed 3 of bnvae: a record from before train_cpu_seconds
                r["timing"]["train_cpu_seconds"] = cpu[m][s]
            recs.append(r)
    gpu = record("bnvae", "bnvae", 0, metrics={"nll": 100.0}, train_seconds=20, dataset="ptb")
    gpu["timing"]["train_cpu_seconds"], gpu["config"]["device"] = 1.0, "cuda:0"     # waits on the GPU: not starved
    gpu_vanilla = record("vanilla", "vanilla", 0, metrics={"nll": 100.0}, dataset="ptb")
    gpu_vanilla["config"]["device"] = "cuda:0"
    df = add_time_ratio(frame(recs + [gpu, gpu_vanilla])).set_index(["dataset", "label", "seed"])
    ratio = df["time_ratio"]
    assert list(df.index[df["starved"]]) == [("synthetic", "vanilla", 1), ("synthetic", "bnvae", 2)]
    assert ratio["synthetic", "bnvae", 0] == 2.0 and ratio["synthetic", "bnvae", 3] == 3.0
    assert math.isnan(ratio["synthetic", "bnvae", 1]) and math.isnan(ratio["synthetic", "bnvae", 2])
    assert math.isnan(ratio["synthetic", "vanilla", 1]) and ratio["synthetic", "vanilla", 0] == 1.0
    assert ratio["ptb", "bnvae", 0] == 2.0 and math.isnan(df["step_ratio"]["synthetic", "bnvae", 1])
    run = write(tmp_path / "run", recs)
    warned: list[str] = []
    html = build_report(run, warn=warned.append).read_text()
    assert "Starved cells" in html and "bnvae__synthetic__smoke__seed2: 10% of a core" in html
    assert warned == ["bnvae__synthetic__smoke__seed2: trained on 10% of a core, its time is left out of the time "
                      "ratios", "vanilla__synthetic__smoke__seed1: trained on 9% of a core, its time is left out of "
                      "the time ratios"]


def test_probe_label_counts_share_one_rank() -> None:
    probe = {"a": {"100": {"mean": 0.9}, "500": {"mean": 0.5}}, "b": {"100": {"mean": 0.8}, "500": {"mean": 0.6}}}
    nll = {"a": 1.0, "b": 2.0}
    boards = build_boards(add_time_ratio(frame([record(m, m, 0, metrics={"nll": nll[m], "probe": probe[m]})
                                                for m in "ab"])))
    # NLL ranks a 1, b 2; probe ranks (1, 2) and (2, 1) average to 1.5 each; probe shown in %
    assert {r.label: r.mean_rank for r in boards[0].rows} == {"a": 1.25, "b": 1.75}
    assert boards[0].rows[0].cells["probe@100"].text == "90.0 (1)"


def test_partial_failure_keeps_the_row(tmp_path: Path) -> None:
    recs = [record("x", "x", 0, metrics={"nll": 1.0}), record("x", "x", 1, error={"type": "E", "message": "boom"})]
    (row,) = build_boards(add_time_ratio(frame(recs)))[0].rows
    assert (row.status, row.n_ok, row.n_failed, row.errors) == ("partial", 1, 1, ["seed 1: E: boom"])


def test_csv_written_beside_the_page(built: tuple[Path, str]) -> None:
    out = built[0]
    csv = pd.read_csv(out.parent / "results.csv")
    assert len(csv) == 7 + 6 and set(csv["dataset"]) == {"synthetic", "yelp"}
    bn = csv[(csv["label"] == "bnvae(gamma=0.7)") & (csv["dataset"] == "synthetic")].iloc[0]
    raw = load_results(out.parent)
    mine = raw[(raw["label"] == "bnvae(gamma=0.7)") & (raw["dataset"] == "synthetic")]
    assert bn["nll_mean"] == pytest.approx(mine["nll"].mean()) and bn["nll_n"] == 3
    assert bn["nll_sd"] == pytest.approx(mine["nll"].std(ddof=1)) and bn["mi_best"]
    assert csv.loc[csv["label"] == "savae", "status"].item() == "failed"
    assert 'href="results.csv"' in built[1] and 'href="results.jsonl"' in built[1]


def test_rebuild_from_raw_results_alone(built: tuple[Path, str], tmp_path: Path) -> None:
    src = built[0].parent
    shutil.copy(src / "results.jsonl", tmp_path / "results.jsonl")            # nothing else kept
    again = build_report(tmp_path, tmp_path / "site" / "index.html")
    assert again == tmp_path / "site" / "index.html"
    assert (tmp_path / "site" / "results.csv").read_text() == (src / "results.csv").read_text()
    assert (tmp_path / "site" / "results.jsonl").read_text() == (src / "results.jsonl").read_text()

    def strip(html: str) -> list[str]:
        return [line for line in html.splitlines() if "<dt>built</dt>" not in line]

    assert strip(again.read_text()) == strip(built[1])


def test_robust_to_sparse_and_broken_input(tmp_path: Path) -> None:
    empty = build_report(tmp_path / "nothing")
    assert "No result files" in empty.read_text()
    run = write(tmp_path / "sparse", [
        {"method": "vanilla", "dataset": "d", "size": "smoke", "seed": 0, "status": "ok", "metrics": {"nll": 3.0},
         "provenance": {"started": "2026-01-01T00:00", "hostname": "h"}, "timing": {"threads": 2}},
        {"method": "m$x$", "label": "_m$x$", "dataset": "d", "size": "smoke", "seed": "a", "status": "ok",
         "params": {"k": [1, 2]}, "metrics": {"nll": "NaN", "mi": 1.0, "probe": {"all": {"mean": 0.5}}},
         "curves": [{"epoch": 1, "valid_kl": 0.1}, "junk"], "timing": None, "provenance": None, "error": "?"},
        {"cell": "c3", "method": "m", "dataset": "d", "size": "smoke", "seed": 1, "status": "failed", "error": "plain"},
        {"cell": "c4", "method": "m", "dataset": "e", "seed": 0, "status": "failed", "metrics": {}},  # board all failed
        {"cell": "c5", "method": "t1", "dataset": "d", "size": "smoke", "seed": 0, "status": "ok", "text": "junk"},
        {"cell": "c6", "method": "t2", "dataset": "d", "size": "smoke", "seed": 0, "status": "ok",
         "text": {"inputs": "x", "reconstructions": {"mode_greedy": [1, None]}, "interpolation": {"t": "?"},
                  "samples": {"n": "?", "greedy": None, "diversity": {"greedy": {"unique": "?", "self_bleu": True}}}}},
        {"cell": "c7", "method": "t3", "dataset": "d", "size": "smoke", "seed": 0, "status": "ok",
         "text": {"error": {"type": "RuntimeError", "message": "no text today"}}},
    ])
    (run / "results" / "torn.json").write_text("{\"cell\": ", encoding="utf-8")
    html = build_report(run).read_text()
    assert "torn.json" in html and "_m$x$" in html and "plain" in html and "2026-01-01T00:00 →" in html
    d, e = parse(html)
    assert len(d) == 6 and [r["cls"] for r in e] == ["failed"]
    assert "no text: RuntimeError: no text today" in html and "What the models write" in html


# ----------------------------------------------------------------------------------------------- browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _driver(profile: str) -> Any:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"Debian chromium and chromium-driver are needed ({CHROMIUM}, {CHROMEDRIVER}); "
                    "apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1500,1800", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.mark.browser
def test_page_in_headless_chromium(built: tuple[Path, str], tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    driver = _driver(tempfile.mkdtemp(dir=tmp_path))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                               {"source": "window.__alerts = []; window.alert = m => window.__alerts.push(String(m));"})
        driver.get(built[0].as_uri())
        table = driver.find_elements(By.CSS_SELECTOR, "table.board")[0]
        order = lambda: [td.text.split("\n")[0] for td in table.find_elements(By.CSS_SELECTOR, "tbody td.name")]  # noqa: E731
        before = order()
        assert sorted(before) == sorted([*PROFILES, "savae"])
        nll_th = next(th for th in table.find_elements(By.CSS_SELECTOR, "th") if th.text.startswith("NLL"))
        nll_th.click()
        ascending = order()
        nll_th.click()
        descending = order()
        assert ascending != before and ascending[0] == "lm"                  # the LM has the lowest NLL
        assert ascending[-1] == "savae" == descending[-1]                     # the failed row has no value: last
        assert descending[:-1] == ascending[:-1][::-1]
        assert XSS in order()                                                  # shown as text
        assert driver.execute_script("return window.__alerts") == []
        with pytest.raises(NoAlertPresentException):
            _ = driver.switch_to.alert.text
        assert len(driver.find_elements(By.CSS_SELECTOR, "figure svg")) >= 7
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        png = tmp_path / "leaderboard.png"
        driver.save_screenshot(str(png))
        from PIL import Image
        with Image.open(png) as img:
            colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 64
    finally:
        driver.quit()


@pytest.mark.browser
def test_report_from_a_real_smoke_sweep_in_headless_chromium(tmp_path: Path, unreadable_yelp: str) -> None:
    """A real sweep (two methods, one named like a script, and one failed cell) -> report -> browser."""
    from selenium.webdriver.common.by import By

    from collapse_bench import registry
    from collapse_bench.method import Method
    from collapse_bench.cell import CellSpec
    from collapse_bench.sweep import run_sweep

    registry.register(XSS)(type("Hostile", (Method,), {"__doc__": "A method whose name is markup."}))
    try:
        one_epoch = {"train": {"epochs": 1}}
        # the hostile method is a vanilla VAE: another seed keeps its NLL distinct (no ties in the sort check)
        specs = [CellSpec(m, "synthetic", "smoke", 0, overrides=one_epoch) for m in ("vanilla", "lm")]
        specs.append(CellSpec(XSS, "synthetic", "smoke", 1, overrides=one_epoch))
        specs.append(CellSpec("vanilla", "yelp", "smoke", 0, overrides=one_epoch, data_dir=unreadable_yelp))
        records = run_sweep(specs, tmp_path / "run")
    finally:
        registry._METHODS.pop(XSS, None)
    assert sorted(r["status"] for r in records) == ["failed", "ok", "ok", "ok"]
    assert sorted((r["seed"], r["text"] is not None) for r in records if r["status"] == "ok") == [
        (0, True), (0, True), (1, False)]                                              # the first seed's cells only
    page = build_report(tmp_path / "run")
    html = page.read_text(encoding="utf-8")
    assert "What the models write" in html and "lm has no latent variable" in html
    assert f"No text recorded for {XSS.replace('<', '&lt;').replace('>', '&gt;')}" in html      # its seed is 1
    driver = _driver(tempfile.mkdtemp(dir=tmp_path))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                               {"source": "window.__alerts = []; window.alert = m => window.__alerts.push(String(m));"})
        driver.get(page.as_uri())
        tables = driver.find_elements(By.CSS_SELECTOR, "table.board")
        names = lambda t: [td.text.split("\n")[0] for td in t.find_elements(By.CSS_SELECTOR, "tbody td.name")]  # noqa: E731
        synthetic = next(t for t in tables if "vanilla" in names(t) and "lm" in names(t))
        assert sorted(names(synthetic)) == sorted(["vanilla", "lm", XSS])      # one row per method, name as text
        assert any("failed" in t.text for t in tables)                         # the failed yelp cell is shown
        before = names(synthetic)
        th = next(th for th in synthetic.find_elements(By.CSS_SELECTOR, "th") if th.text.startswith("NLL"))
        th.click()
        first = names(synthetic)
        th.click()
        assert names(synthetic) == first[::-1] and sorted(first) == sorted(before)
        assert driver.execute_script("return window.__alerts") == []
        assert driver.find_elements(By.CSS_SELECTOR, "figure svg")
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        png = tmp_path / "real.png"
        driver.save_screenshot(str(png))
        from PIL import Image
        with Image.open(png) as img:
            assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 64
    finally:
        driver.quit()


def test_cells_with_overridden_size_fields_get_their_own_board(tmp_path: Path) -> None:
    plain = [record("vanilla", "vanilla", s) for s in (0, 1)]
    short = [record("savae", "savae", s) | {"overrides": {"train": {"epochs": 2}}} for s in (0, 1)]
    df = load_results(write(tmp_path, plain + short))
    assert sorted(df["size"].unique()) == ["smoke", "smoke (train.epochs=2)"]
    page = build_report(tmp_path).read_text()
    assert "smoke (train.epochs=2)" in page


def decoder_record(label: str, method: str, seed: int, decoder: str, nll: float, secs: float, *,
                   via: str = "set") -> dict[str, Any]:
    """A record of `decoder`: from `--set model.decoder=...` (`via='set'`: overrides and config), a preset (config
    only), or a cell that failed before its config was known ('failed': overrides only)."""
    rec = record(label, method, seed, metrics={"nll": nll, "kl": 1.0, "mi": 0.5, "au": 3, "iw_samples": 50},
                 train_seconds=secs, curves=[{"epoch": 1, "step": 10, "valid_kl": 0.5}],
                 error={"type": "CellError", "message": "worker died"} if via == "failed" else None)
    if decoder != "lstm":
        if via != "preset":
            rec["overrides"] = {"model": {"decoder": decoder}}
            rec["cell"] += f"__cfg{decoder}"
        if via == "failed":
            del rec["config"]
        else:
            rec["config"]["model"]["decoder"] = decoder
    return rec


def test_a_remedy_is_compared_only_with_vanilla_of_its_decoder(tmp_path: Path) -> None:
    """Records of two decoders on one dataset and size: one board each, named and keyed by the decoder; the time
    ratio and the differences to vanilla pair each decoder's cells with its own vanilla; results.csv has the
    decoder column."""
    recs = [decoder_record("vanilla", "vanilla", s, "lstm", 60.0, 10.0) for s in (0, 1)]
    recs += [decoder_record("bnvae", "bnvae", s, "lstm", 59.0, 11.0) for s in (0, 1)]
    recs += [decoder_record("vanilla", "vanilla", s, "cnn", 80.0, 40.0) for s in (0, 1)]
    recs += [decoder_record("bnvae", "bnvae", s, "cnn", 70.0, 60.0) for s in (0, 1)]
    recs.append(decoder_record("fb", "fb", 0, "cnn", 0.0, 0.0, via="failed"))
    recs.append(decoder_record("fb", "fb", 1, "transformer", 75.0, 30.0, via="preset"))
    df = load_results(write(tmp_path, recs))
    assert sorted(df["size"].unique()) == ["smoke"]              # the decoder is a key of its own, not a size field
    assert df.groupby("decoder").size().to_dict() == {"cnn": 5, "lstm": 4, "transformer": 1}
    page = build_report(tmp_path).read_text()
    assert re.findall(r"<h2>([^<]*)</h2>", page)[:3] == [f"synthetic · size smoke · decoder {d}"
                                                         for d in ("lstm", "cnn", "transformer")]
    assert len({b for b in re.findall(r'id="(board-[^"]*)"', page) if not b.endswith("-text")}) == 3
    csv = pd.read_csv(tmp_path / "results.csv").set_index(["decoder", "label"])
    assert csv.loc[("cnn", "bnvae"), "time_ratio_mean"] == pytest.approx(1.5)      # 60 / 40, not 60 / 10
    assert csv.loc[("lstm", "bnvae"), "time_ratio_mean"] == pytest.approx(1.1)
    assert csv.loc[("cnn", "bnvae"), "nll_vs_vanilla"] == pytest.approx(-10.0)     # 70 - 80, not 70 - 60
    assert csv.loc[("lstm", "bnvae"), "nll_vs_vanilla"] == pytest.approx(-1.0)
    assert csv.loc[("cnn", "fb"), "status"] == "failed"                 # its overrides name its decoder
    assert math.isnan(csv.loc[("transformer", "fb"), "time_ratio_mean"])   # no transformer vanilla: no ratio
    findings = (tmp_path / "findings.md").read_text()
    assert "| synthetic · cnn decoder |" in findings and "| synthetic |" in findings


# --------------------------------------------------------------------------------- the study's page, 17 methods

FIGURE_GEOMETRY_JS = """
const px = 1.0;
const out = [];
for (const svg of document.querySelectorAll('figure svg')) {
  const title = svg.closest('figure').querySelector('figcaption').textContent;
  const box = svg.getBoundingClientRect();
  const axes = [];
  for (const g of svg.querySelectorAll('g[id^="axes_"]')) {
    const patch = g.querySelector(':scope > g[id^="patch_"] path');
    if (patch) { axes.push(patch.getBoundingClientRect()); }
  }
  const legends = [...svg.querySelectorAll('g[id^="legend_"]')].map(g => g.getBoundingClientRect());
  const overlaps = [];
  for (const l of legends) for (const a of axes) {
    const w = Math.min(l.right, a.right) - Math.max(l.left, a.left);
    const h = Math.min(l.bottom, a.bottom) - Math.max(l.top, a.top);
    if (w > px && h > px) { overlaps.push([w, h]); }
  }
  const cut = [];
  for (const t of svg.querySelectorAll('text')) {
    const r = t.getBoundingClientRect();
    if (r.width === 0) { continue; }
    if (r.left < box.left - px || r.right > box.right + px || r.top < box.top - px || r.bottom > box.bottom + px) {
      cut.push(t.textContent);
    }
  }
  out.push({title: title, axes: axes.length, legends: legends.length, overlaps: overlaps, cut: cut});
}
return out;
"""


def study_records() -> list[dict[str, Any]]:
    """Every registered method x 3 seeds on short-yelp (probe) and ptb, at size study, with curves inside epochs
    and the KL of 32 units: the shape of the published study's results."""
    from collapse_bench import registry
    recs = []
    for dataset in ("short-yelp", "ptb"):
        for k, name in enumerate(registry.names()):
            for seed in (0, 1, 2):
                rng = np.random.default_rng([k, seed, len(dataset)])
                kl = 0.05 if name == "vanilla" else float(k % 7 + rng.uniform(0, 0.3))
                dims = rng.exponential(kl / 32, size=32)
                curves = [{"epoch": e / 2, "step": 50 * e, "partial": e % 2 == 1 or None, "kl_weight": min(1.0, e / 4),
                           "valid_mi": kl / 3 * e / 8, "valid_au": int(min(32, k * 2) * e / 8),
                           "valid_kl": None if e % 2 else kl * e / 8, "valid_kl_dims": list(dims * e / 8)}
                          for e in range(1, 9)]
                metrics = {"nll": 33 + rng.normal(0, 0.2) + k / 10, "ppl": 50.0, "elbo": 34.0, "recon": 33.0,
                           "kl": kl, "mi": kl / 3, "au": 0 if name == "vanilla" else min(32, k * 2), "iw_samples": 500,
                           "probe": {str(n): {"mean": 0.6 + k / 60 + 0.02 * i, "sd": None, "n": 1}
                                     for i, n in enumerate(PROBE_LABELS)} if dataset == "short-yelp" else {}}
                r = record(name, name, seed, dataset=dataset, size="study", metrics=metrics, curves=curves,
                           train_seconds=60.0 * (1 + (name == "savae") * 30 + (name == "agg") * 8) * (1 + 0.05 * seed))
                r["label"] = f"{name}(pretrain=none, some_parameter={k})" if k % 3 == 0 else name
                if seed == 0:
                    r["text"] = text_of(name, collapsed=name == "vanilla", latent=name != "lm", prior=name != "ae",
                                        long=dataset == "ptb")
                recs.append(r)
    return recs


@pytest.mark.browser
def test_study_page_with_every_method_legends_clear_and_no_label_cut(tmp_path: Path) -> None:
    """The study's page with all 17 methods in headless Chromium: no legend overlaps an axes' plotting area and
    no text of a figure (axis labels, tick labels, titles, legend entries) falls outside its SVG."""
    page = build_report(write(tmp_path / "study", study_records()))
    html = page.read_text(encoding="utf-8")
    assert html.count("Where collapse happens") == 2 and "Read against the papers" in html
    driver = _driver(tempfile.mkdtemp(dir=tmp_path))
    try:
        driver.get(page.as_uri())
        figures = driver.execute_script(FIGURE_GEOMETRY_JS)
        from collapse_bench.report.families import family_of
        families = len({family_of(r["method"]) for r in study_records()})
        # short-yelp: curves and probe (one figure a family each: 17 methods), Pareto, time, heatmaps; ptb: no probe
        assert len(figures) == 3 * families + 3 + 3
        for fig in figures:
            assert fig["axes"] >= 1, fig["title"]
            assert fig["overlaps"] == [], f"legend covers data in {fig['title']!r}: {fig['overlaps']}"
            assert fig["cut"] == [], f"text cut in {fig['title']!r}: {fig['cut']}"
        heat = [f for f in figures if f["title"].startswith("Where collapse happens")]
        assert len(heat) == 2 and all(f["axes"] >= 17 for f in heat)   # one panel per Gaussian method + colour bar
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


TEXT_GEOMETRY_JS = """
document.querySelectorAll('details.text-method').forEach(d => { d.open = true; });
const px = 1.0, root = document.documentElement;
const out = {tables: 0, cells: 0, cut: [], overlaps: [], outside: [], empty: [],
             page: [root.scrollWidth, root.clientWidth]};
for (const table of document.querySelectorAll('table.text-summary, table.sentences')) {
  out.tables += 1;
  const box = table.closest('section').getBoundingClientRect(), t = table.getBoundingClientRect();
  if (t.left < box.left - px || t.right > box.right + px) { out.outside.push([table.className, t.right - box.right]); }
  const cells = [...table.querySelectorAll('th, td')], rects = cells.map(c => c.getBoundingClientRect());
  cells.forEach((c, i) => {
    out.cells += 1;
    const a = rects[i];
    if (a.width === 0 || a.height === 0) { out.empty.push(c.textContent.slice(0, 40)); }
    if (c.scrollWidth > c.clientWidth + px || c.scrollHeight > c.clientHeight + px) {
      out.cut.push(c.textContent.slice(0, 40));
    }
    for (let j = i + 1; j < cells.length; j++) {
      const b = rects[j];
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > px && h > px) { out.overlaps.push([c.textContent.slice(0, 30), cells[j].textContent.slice(0, 30)]); }
    }
  });
}
return out;
"""


@pytest.mark.browser
def test_text_section_in_headless_chromium_nothing_cut_no_overlap(tmp_path: Path) -> None:
    """The study's shape with text (17 methods, PTB-length sentences, unbroken 70-character tokens, long labels),
    every method's text opened: no cell's content overflows it, no two cells overlap, every table stays inside its
    board's section and the page needs no horizontal scrolling."""
    page = build_report(write(tmp_path / "study", study_records()))
    driver = _driver(tempfile.mkdtemp(dir=tmp_path))
    try:
        driver.get(page.as_uri())
        geo = driver.execute_script(TEXT_GEOMETRY_JS)
        methods = len({r["method"] for r in study_records()})
        assert geo["tables"] >= 2 * (1 + 2 * methods)       # per board: the summary; per method two tables or more
        assert geo["cut"] == [] and geo["overlaps"] == [] and geo["outside"] == [] and geo["empty"] == []
        assert geo["page"][0] <= geo["page"][1], f"the page scrolls sideways: {geo['page']}"
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


# method -> (params, KL, MI, AU, probe accuracy at 100 labels, train seconds), one value per seed, at nz 16
KNOWN: dict[str, tuple[dict[str, Any], list[float], list[float], list[float], list[float], float]] = {
    "vanilla": ({}, [0.05, 0.04, 0.06], [0.02, 0.01, 0.03], [0, 0, 0], [0.60, 0.61, 0.59], 100.0),
    "beta": ({"beta": 0.4}, [1.0, 1.1, 0.9], [0.5, 0.6, 0.4], [3, 4, 2], [0.62, 0.63, 0.61], 100.0),
    "cyclic": ({}, [0.1, 0.2, 0.1], [0.1, 0.1, 0.1], [0, 1, 0], [0.60, 0.62, 0.61], 100.0),
    "skip": ({}, [2.0, 2.2, 1.8], [1.0, 1.1, 0.9], [2, 3, 2], [0.63, 0.64, 0.62], 100.0),
    # floor nz·δ = 16 · 0.15 = 2.4 (not the default δ 0.1 and nz 32: 3.2, which the KL 2.6 would be under)
    "delta": ({"delta": 0.15, "pretrain": "none"}, [2.6, 2.6, 2.6], [0.1, 0.2, 0.1], [16, 16, 16], [0.62, 0.6, 0.61],
              100.0),
    # floor nz·γ²/2 = 16 · 0.25 / 2 = 2.0, AU = nz = 16 (not γ 0.6, nz 32: 5.76 and 32); the best MI
    "bnvae": ({"gamma": 0.5, "pretrain": "none"}, [2.4, 2.5, 2.6], [3.0, 3.1, 2.9], [16, 16, 16], [0.71, 0.73, 0.70],
              103.0),
    "agg": ({}, [3.0, 3.1, 2.9], [1.5, 1.6, 1.4], [5, 6, 4], [0.70, 0.72, 0.71], 900.0),
}


def known_records(methods: tuple[str, ...] = tuple(KNOWN), *, without_latent: bool = True) -> list[dict[str, Any]]:
    """Three seeds of each of ``methods`` at nz 16 on short-yelp, and (``without_latent``) a model without a latent
    whose metrics claim an MI above everyone's: a record without a latent has no MI, whatever it is called."""
    recs = []
    for m in methods:
        params, kls, mis, aus, probes, secs = KNOWN[m]
        for seed, (kl, mi, au, acc) in enumerate(zip(kls, mis, aus, probes)):
            metrics = {"nll": 30.0, "kl": kl, "mi": mi, "au": au, "iw_samples": 100,
                       "probe": {"100": {"mean": acc, "sd": 0.01, "n": 3}}}
            recs.append(record(m, m, seed, params=dict(params), dataset="short-yelp", size="study", metrics=metrics,
                               train_seconds=secs))
    if without_latent:
        recs += [record("nolatent", "nolatent", seed, dataset="short-yelp", size="study", train_seconds=80.0,
                        metrics={"nll": 29.0, "kl": 0.0, "mi": 50.0, "au": 0, "iw_samples": 0, "has_latent": False,
                                 "probe": {}}) for seed in range(3)]
    for r in recs:
        r["config"]["model"]["nz"] = 16
    return recs


def findings_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    from collapse_bench.report.findings import check_findings
    from collapse_bench.report.stats import add_time_ratio
    return {f.id: f for f in check_findings(add_time_ratio(frame(records)), "short-yelp")}


def test_findings_on_known_answers() -> None:
    """Each finding's verdict follows its criterion on constructed results, with the parameters (δ, γ, nz) read
    from the records themselves."""
    found = findings_of(known_records())
    assert {k: f.verdict for k, f in found.items()} == {
        "vanilla-collapses": "reproduced",                # KL 0.05 < 0.5, AU 0
        "little-kl": "partly reproduced",                 # beta and skip ≥ vanilla + 0.5, cyclic not
        "delta-floor": "reproduced",                      # 2.4 ≤ 2.6 < 3.4, MI 0.13 < 0.5
        "bnvae": "reproduced",                            # AU 16 = nz every seed, KL 2.5 ≥ 2.0, best MI
        "probe-100": "reproduced",                        # bnvae best (71.3%), agg (71.0%) tied with it
        "cost-bnvae": "reproduced",                       # 1.03× inside [1.03/1.5, 1.03·1.5]
        "cost-agg": "not reproduced",                     # 9× outside [2.8/1.5, 4.6·1.5]
        "cost-savae": "not comparable",                   # no savae cell
    }
    assert found["vanilla-collapses"].evidence == "vanilla KL 0.05 ± 0.01, MI 0.02 ± 0.01, AU 0.0 ± 0.0 (3 seeds)"
    assert "floor nz·δ = 2.40" in found["delta-floor"].evidence
    assert found["bnvae"].evidence.startswith("BN-VAE (γ 0.5) AU 16.0 ± 0.0 of 16 (every seed at 16); "
                                              "KL 2.50 ± 0.10 against nz·γ²/2 = 2.00; MI 3.00 ± 0.10, the best MI")
    assert found["probe-100"].evidence.startswith("agg 71.0 ± 1.0% (tied with the best); bnvae 71.3 ± 1.5% (best)")
    assert found["cost-agg"].evidence.startswith("whole-run training time 9.00 ± 0.00× vanilla")
    assert found["cost-savae"].evidence == "not run here: savae"


def test_findings_whose_methods_did_not_run_are_not_comparable() -> None:
    """No finding is reproduced on no evidence: without β-VAE, cyclic and Skip-VAE 'keep a little KL' is not
    comparable (it was 'reproduced', zero of zero methods counting as all), and a record without the parameter
    a floor needs makes that finding not comparable rather than assume a default."""
    found = findings_of(known_records(("vanilla", "delta", "bnvae", "agg"), without_latent=False))
    assert (found["little-kl"].verdict, found["little-kl"].evidence) == ("not comparable",
                                                                         "not run here: beta, cyclic, skip")
    recs = known_records(("vanilla", "bnvae"), without_latent=False)
    for r in recs:
        r["params"].pop("gamma", None)
    bn = findings_of(recs)["bnvae"]
    assert (bn.verdict, bn.evidence) == ("not comparable", "not measured: bnvae's records give no parameter gamma")


def test_page_is_a_function_of_the_results(tmp_path: Path) -> None:
    """Rebuilding on the same results gives the same bytes (no build time on the page): `study` rerun on committed
    results changes nothing."""
    run = write(tmp_path / "run", study_records()[:40])
    first = build_report(run).read_bytes()
    assert build_report(run).read_bytes() == first


PUBLISHED_STUDY = Path(__file__).resolve().parents[1] / "reports" / "archive" / "study-2026-11"


@pytest.mark.browser
def test_the_published_study_page_in_headless_chromium(tmp_path: Path) -> None:
    """The committed study page, rebuilt from its committed raw results into a temporary folder (so that the page
    checked is the one this code builds): every method on both boards, legends clear of the data, no text cut."""
    if not (PUBLISHED_STUDY / "results").is_dir():
        pytest.skip(f"{PUBLISHED_STUDY}/results is not there (the study has not been published yet)")
    shutil.copytree(PUBLISHED_STUDY / "results", tmp_path / "study" / "results")
    page = build_report(tmp_path / "study")
    driver = _driver(tempfile.mkdtemp(dir=tmp_path))
    try:
        driver.get(page.as_uri())
        figures = driver.execute_script(FIGURE_GEOMETRY_JS)
        assert figures
        for fig in figures:
            assert fig["overlaps"] == [], f"legend covers data in {fig['title']!r}: {fig['overlaps']}"
            assert fig["cut"] == [], f"text cut in {fig['title']!r}: {fig['cut']}"
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


# ------------------------------------------------------------------ per-sentence evidence, collapse rate, families

def test_paired_bootstrap_on_known_answers() -> None:
    from collapse_bench.report.evidence import paired_bootstrap
    mean, lo, hi = paired_bootstrap(np.full((3, 400), 0.25))              # constant: a zero-width interval at it
    assert lo == hi and mean == pytest.approx(0.25) and lo == pytest.approx(0.25)
    sym = np.tile(np.r_[np.full(500, -1.0), np.full(500, 1.0)], (3, 1))   # symmetric about 0
    mean, lo, hi = paired_bootstrap(sym)
    assert mean == 0 and lo < 0 < hi and lo == pytest.approx(-hi, abs=0.01)
    # the half-width of a mean of n values of sd 1: about 1.96 / sqrt(n) = 0.062 (within bootstrap noise)
    assert (hi - lo) / 2 == pytest.approx(1.96 / math.sqrt(1000), rel=0.1)
    rng = np.random.default_rng(5)
    skew = rng.exponential(2.0, size=(3, 300)) + np.arange(3)[:, None]     # the mean inside, seeds pooled
    mean, lo, hi = paired_bootstrap(skew)
    assert mean == pytest.approx(skew.mean()) and lo < mean < hi
    assert paired_bootstrap(skew) == (mean, lo, hi)                         # a fixed generator seed: the same
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros((2, 0)))


def _npz(path: Path, nll: np.ndarray, index: np.ndarray) -> None:
    np.savez_compressed(path, nll=np.asarray(nll, dtype=np.float64), index=np.asarray(index, dtype=np.int32))


def _sentence_run(run: Path, shuffle: bool, drop: str | None = None) -> Path:
    """vanilla and 'better' x 3 seeds, 200 sentences at positions 0, 3, 6, ...; better is 0.5 nats lower on every
    sentence but noise. ``shuffle`` writes each file in its own order; ``drop`` names a cell without a file."""
    recs = [record(m, m, s, dataset="d", size="study", metrics={"nll": 30.0, "kl": 1.0, "au": 1})
            for m in ("vanilla", "better") for s in range(3)]
    write(run, recs)
    index = np.arange(200) * 3
    base = np.random.default_rng(0).normal(30, 5, size=200)               # sentences differ a lot, pairs little
    for k, r in enumerate(recs):
        nll = base + (r["method"] == "better") * (-0.5 + np.random.default_rng(k).normal(0, 0.1, 200))
        order = np.random.default_rng(100 + k).permutation(200) if shuffle else np.arange(200)
        if r["cell"] != drop:
            _npz(run / "results" / f"{r['cell']}.sentences.npz", nll[order], index[order])
    return run


def test_sentence_pairing_uses_the_index_not_the_file_order(tmp_path: Path) -> None:
    from collapse_bench.report.evidence import NO_FILE, sentence_evidence
    from collapse_bench.report.load import read_records

    def read_records_evidence(run: Path) -> dict[str, Any]:
        return sentence_evidence(read_records(run).records, run / "results", ("d", "study", "lstm"))

    ordered = read_records_evidence(_sentence_run(tmp_path / "a", shuffle=False))["better"]
    shuffled = read_records_evidence(_sentence_run(tmp_path / "b", shuffle=True))["better"]
    assert ordered == shuffled and (ordered.seeds, ordered.sentences) == (3, 200)
    assert ordered.lo < ordered.mean < ordered.hi and ordered.mean == pytest.approx(-0.5, abs=0.03)
    assert ordered.hi - ordered.lo < 0.1             # paired: the sentences' own spread (sd 5) cancels
    gone = read_records_evidence(_sentence_run(tmp_path / "c", shuffle=True, drop="better__d__study__seed1"))
    assert gone["better"].seeds == 2 and gone["better"].missing == f"{NO_FILE}: seed 1"
    van = read_records_evidence(_sentence_run(tmp_path / "e", shuffle=False, drop="vanilla__d__study__seed0"))
    assert van["better"].seeds == 2 and van["better"].missing.endswith("seed 0")


def test_collapse_rate_and_epoch_on_synthetic_records() -> None:
    from collapse_bench.report.evidence import collapse_epoch, collapse_rates

    def pts(aus: list[int]) -> list[dict[str, Any]]:
        return [{"epoch": (i + 1) / 2, "valid_au": au} for i, au in enumerate(aus)]

    assert collapse_epoch(pts([3, 2, 0, 0])) == "1.5" and collapse_epoch(pts([0, 0])) == "0.5"
    assert collapse_epoch(pts([0, 0, 1])) == "never" and collapse_epoch(pts([2, 0, 1, 0])) == "2"
    assert collapse_epoch([{"epoch": 1, "valid_kl": 0.1}]) == "–"
    recs = [record("m", "m", s, metrics={"kl": kl, "au": au, "iw_samples": 5}, curves=pts(c))
            for s, (kl, au, c) in enumerate([(0.01, 0, [1, 0, 0]), (0.5, 0, [1, 1, 0]), (2.0, 3, [0, 3, 3])])]
    recs.append(record("lm", "lm", 0, metrics={"kl": 0.0, "au": 0, "iw_samples": 0}))
    got = collapse_rates(recs, ("synthetic", "smoke", "lstm"))
    m = got["m"]
    assert (m.au_text, m.kl_text) == ("2/3", "1/3")
    assert m.epochs_text == "seed 0: 1, seed 1: 1.5, seed 2: never"
    assert got["lm"].au_text == "–" and got["lm"].epochs_text == "–"       # no latent: no collapse to count


def test_every_study_method_has_a_family() -> None:
    from collapse_bench.config import STUDY_METHODS
    from collapse_bench.report.families import FAMILIES, OTHER, family_of
    listed = [m for methods in FAMILIES.values() for m in methods]
    assert len(listed) == len(set(listed))                                   # one family a method
    assert {m: family_of(m) for m in STUDY_METHODS if family_of(m) == OTHER} == {}
    assert family_of("a-plug-in") == OTHER and family_of("savae") == "optimisation schedules"


PLUG_INS = ("plug-a", "plug-b", "plug-c")           # unknown to the families: they go to `other`
DECODERS = ("lstm", "cnn", "transformer")


def wide_records(seeds: tuple[int, ...] = (0, 1)) -> list[dict[str, Any]]:
    """The study's methods and three plug-ins (25 methods) x 3 decoders on short-yelp at size study, with curves
    (within-epoch points, AU that falls to 0 for some), a probe and the KL of 16 units: the page at its widest."""
    from collapse_bench.config import STUDY_METHODS
    recs = []
    for k, name in enumerate((*STUDY_METHODS, *PLUG_INS)):
        for d, decoder in enumerate(DECODERS):
            for seed in seeds:
                rng = np.random.default_rng([k, d, seed])
                au = 0 if k % 4 == 0 else min(16, k)
                curves = [{"epoch": e / 2, "step": 50 * e, "valid_kl": (k % 5) * e / 8 + 0.01,
                           "valid_mi": (k % 5) * e / 30, "valid_au": au if e > 4 else max(au, 8 - e),
                           "valid_kl_dims": list(rng.exponential(0.1, 16) * e)} for e in range(1, 9)]
                metrics = {"nll": 33 + k / 10 + d + rng.normal(0, 0.2), "ppl": 50.0, "elbo": 34.0, "recon": 33.0,
                           "kl": 0.05 if au == 0 else float(k % 5 + 0.5), "mi": (k % 5) / 3, "au": au,
                           "iw_samples": 0 if name == "lm" else 100, "has_latent": name != "lm",
                           "probe": {str(n): {"mean": 0.6 + k / 80 + 0.02 * i} for i, n in enumerate(PROBE_LABELS)}}
                r = record(name, name, seed, dataset="short-yelp", size="study", metrics=metrics, curves=curves,
                           train_seconds=60.0 * (1 + k / 10) * (1 + 0.05 * seed))
                r["config"]["model"] |= {"decoder": decoder, "nz": 16}
                if decoder != "lstm":
                    r["overrides"] = {"model": {"decoder": decoder}}
                    r["cell"] += f"__{decoder}"
                if k % 3 == 0:
                    r["label"] = f"{name}(pretrain=none, some_parameter={k})"
                recs.append(r)
    return recs


def _with_sentences(run: Path, records: list[dict[str, Any]], skip: str) -> Path:
    """Per-sentence files for every cell but those of method ``skip``; each cell's own order of sentences."""
    write(run, records)
    base = np.random.default_rng(1).normal(30, 4, 120)
    for i, r in enumerate(records):
        if r["method"] != skip:
            order = np.random.default_rng(i).permutation(120)
            shift = 0.0 if r["method"] == "vanilla" else -0.2
            _npz(run / "results" / f"{r['cell']}.sentences.npz", (base + shift)[order], (order * 2)[:])
    return run


def test_evidence_and_borrowed_cells_on_the_page(tmp_path: Path) -> None:
    recs = [r for r in wide_records() if r["method"] in ("vanilla", "bnvae", "fb", "lm")]
    run = _with_sentences(tmp_path / "run", recs, skip="fb")
    (run / "against.json").write_text(json.dumps({"dir": "reports/study/quick", "cells": [recs[0]["cell"]]}))
    html = build_report(run).read_text(encoding="utf-8")
    assert html.count("Collapse and per-sentence evidence") == len(DECODERS)
    assert "no per-sentence file" in html and "-0.200 [-0.200, -0.200]" in html and "2 · 120" in html
    assert "Borrowed cells" in html and "reports/study/quick" in html and recs[0]["cell"] in html
    # here vanilla keeps its units (never) and bnvae's AU falls to 0 at the 5th half-epoch point, 2.5
    assert "seed 0: never, seed 1: never" in html and "seed 0: 2.5, seed 1: 2.5" in html
    assert "Borrowed cells" not in build_report(_with_sentences(tmp_path / "own", recs, skip="fb")).read_text()


FAMILY_FILTER_JS = """
const boxes = [...document.querySelectorAll('input.family-filter')];
const visible = el => el.getClientRects().length > 0;
const out = {};
for (const box of boxes) {
  boxes.forEach(b => { if (b.checked) { b.click(); } });
  box.click();
  out[box.value] = {
    rows: [...document.querySelectorAll('table.board tbody tr')].filter(visible)
      .map(tr => [tr.dataset.family, tr.cells[0].dataset.value]),
    evidence: [...document.querySelectorAll('table.evidence tbody tr')].filter(visible).map(tr => tr.dataset.family),
    figures: [...document.querySelectorAll('figure[data-family]')].filter(visible).map(f => f.dataset.family),
  };
}
boxes.forEach(b => { if (!b.checked) { b.click(); } });
out.all = [...document.querySelectorAll('[data-family]')].filter(el => el.hidden).length;
return out;
"""


@pytest.mark.browser
def test_page_of_25_methods_and_3_decoders_in_headless_chromium(tmp_path: Path) -> None:
    """25 methods x 3 decoders: figures clear (no legend on the data, no text cut), every method reachable through
    its family's checkbox (its rows and its family's curves shown, the other families' hidden) and the page the
    same bytes on a rebuild."""
    from collapse_bench.report.families import family_of, family_slug
    recs = wide_records()
    run = _with_sentences(tmp_path / "wide", recs, skip="twr")
    page = build_report(run)
    first = page.read_bytes()
    assert build_report(run).read_bytes() == first
    labels: dict[str, set[str]] = {}
    for r in recs:
        labels.setdefault(family_slug(family_of(r["method"])), set()).add(r["label"])
    assert len({r["method"] for r in recs}) >= 25 and "other" in labels       # the study's methods and 3 plug-ins
    driver = _driver(tempfile.mkdtemp(dir=tmp_path))
    try:
        driver.get(page.as_uri())
        for fig in driver.execute_script(FIGURE_GEOMETRY_JS):
            assert fig["overlaps"] == [], f"legend covers data in {fig['title']!r}: {fig['overlaps']}"
            assert fig["cut"] == [], f"text cut in {fig['title']!r}: {fig['cut']}"
        shown = driver.execute_script(FAMILY_FILTER_JS)
        assert sorted(k for k in shown if k != "all") == sorted(labels)
        for slug, want in labels.items():
            rows = shown[slug]["rows"]
            assert {f for f, _ in rows} == {slug} and sorted(lab for _, lab in rows) == sorted([*want] * len(DECODERS))
            assert shown[slug]["figures"] == [slug] * 2 * len(DECODERS)      # its curves and its probe panel
            assert set(shown[slug]["evidence"]) == {slug}
        assert shown["all"] == 0                      # every box checked again: nothing hidden
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


def _tiers(root: Path) -> Path:
    """quick (size study) and deep (size deep) of the known records; at deep, vanilla and beta keep more KL (with
    the seeds' spread), nothing else changes."""
    write(root / "quick", known_records())
    deep = known_records()
    for r in deep:
        r["size"], r["cell"] = "deep", r["cell"].replace("__study__", "__deep__")
        if r["method"] in ("vanilla", "beta"):
            r["metrics"]["kl"] += 1.0
    write(root / "deep", deep)
    return root


def test_both_tiers_side_by_side(tmp_path: Path) -> None:
    from collapse_bench.cli import main
    from collapse_bench.report.tiers import TIERS_MD, build_study_tiers
    root = _tiers(tmp_path / "study")
    index = build_study_tiers(root, ["quick", "deep"])
    assert index == root / "index.html" and (root / "quick" / "leaderboard.html").is_file()
    assert (root / "deep" / "leaderboard.html").is_file()
    md = (root / TIERS_MD).read_text(encoding="utf-8")
    lines = md.splitlines()
    assert "| board | paper's finding | quick | deep | quick → deep |" in lines
    collapse = next(line for line in lines if "The vanilla VAE collapses" in line)
    assert collapse.endswith("| reproduced | not reproduced | moved |")          # KL 0.05 -> 1.05
    assert next(line for line in lines if "BN-VAE keeps AU" in line).endswith("| reproduced | reproduced | held |")
    assert next(line for line in lines if "SA-VAE costs" in line).endswith("| not comparable | not comparable | – |")
    beta = next(line for line in lines if line.startswith("| short-yelp · lstm | beta |"))
    assert "1.00 ± 0.10 (3) → 2.00 ± 0.10 (3) **moved**" in beta                   # KL moved; AU held
    assert "3.00 ± 1.00 (3) → 3.00 ± 1.00 (3) **held**" in beta
    bn = next(line for line in lines if line.startswith("| short-yelp · lstm | bnvae |"))
    assert "**moved**" not in bn and "1.03 ± 0.00 (3) → 1.03 ± 0.00 (3) **held**" in bn   # equal, no variance
    page = index.read_text(encoding="utf-8")
    assert 'href="quick/leaderboard.html"' in page and 'href="deep/leaderboard.html"' in page and "<script" not in page
    assert "## Does each remedy keep z alive? (quick)" in lines and "## Does each remedy keep z alive? (deep)" in lines
    assert "<h2>Does each remedy keep z alive? (deep)</h2>" in page
    first = (md, page)
    assert main(["report", str(root)]) == 0                                          # the CLI's way in: the same
    assert ((root / TIERS_MD).read_text(encoding="utf-8"), index.read_text(encoding="utf-8")) == first
    assert main(["report", str(tmp_path / "study" / "quick")]) == 0                # a tier alone: its page


def test_drift_table_gathers_each_cells_bf16_check() -> None:
    """drift.md's rows: by tier, decoder and method, the mean over cells of the checks' mean |Δ|, the largest |Δ|
    of any sentence and how many cells kept bf16; unchecked and failed cells are left out."""
    from collapse_bench.report.drift import drift_markdown, drift_rows

    def cell(method: str, decoder: str, mean: float, largest: float, within: bool, status: str = "ok") -> dict:
        check = {"sentences": 50, "mean_abs_diff": mean, "max_abs_diff": largest, "fp32_mean_nll": 40.0,
                 "bound": 0.01, "within_bound": within}
        return {"method": method, "status": status, "config": {"model": {"decoder": decoder}},
                "scoring": {"precision": {"asked": "bf16", "used": "bf16" if within else "fp32", "check": check}}}
    unchecked = {"method": "vanilla", "status": "ok", "scoring": {"precision": {"asked": "fp32", "check": None}}}
    records = [cell("vanilla", "lstm", 0.004, 0.02, True), cell("vanilla", "lstm", 0.012, 0.05, False),
               cell("bnvae", "cnn", 0.03, 0.09, False), cell("bnvae", "cnn", 9.0, 9.0, True, status="failed"),
               unchecked]
    rows = drift_rows({"quick": records, "deep": [unchecked]})
    assert [(r["decoder"], r["method"], r["cells"], r["bf16"]) for r in rows] == [("cnn", "bnvae", 1, 0),
                                                                                 ("lstm", "vanilla", 2, 1)]
    assert rows[1]["mean_abs"] == pytest.approx(0.008) and rows[1]["max_abs"] == 0.05
    md = drift_markdown({"quick": records})
    assert "| quick | lstm | vanilla | 2 | 50 | 0.0080 | 0.0500 | 1 of 2 |" in md and "(0.01 nats)" in md
    assert "No record" in drift_markdown({"deep": [unchecked]})


def test_alive_answers_per_seed_against_vanilla_of_the_same_decoder_and_seed() -> None:
    """z is alive in a seed when MI is ≥ 0.5 nats above vanilla's and the decoder's gain from z (NLL − recon) is
    ≥ 0.5 above vanilla's, vanilla being the cell of the same decoder and seed; KL up alone is "KL only"; a decoder
    worse than vanilla's that reads z is alive; the LM has no row."""
    from collapse_bench.report.alive import alive_markdown, alive_tables

    def cell(label: str, decoder: str, seed: int, kl: float, mi: float, nll: float, recon: float, au: int = 0) -> dict:
        method = label.split("(")[0]
        rec = record(label, method, seed, metrics={"nll": nll, "recon": recon, "kl": kl, "mi": mi, "au": au,
                                                   "elbo": recon + kl, "iw_samples": 0 if method == "lm" else 50})
        rec["config"]["model"]["decoder"] = decoder
        return rec
    records = []
    for seed in (0, 1, 2):
        lstm, cnn = 50.0 + seed, 60.0 + seed                 # vanilla's NLL = recon: collapsed; by decoder and seed
        records += [cell("vanilla", "lstm", seed, 0.0, 0.0, lstm + 0.3, lstm), cell("vanilla", "cnn", seed, 0.0, 0.0,
                                                                                    cnn, cnn)]
        records.append(cell("bnvae", "lstm", seed, 6.0, 3.0, lstm + 1.3, lstm - 4.0, au=32))       # gain +5
        records.append(cell("bnvae", "cnn", seed, 6.0, 3.0, cnn, cnn - 0.49, au=32))              # reads too little
        records.append(cell("delta", "lstm", seed, 4.0, 0.1, lstm + 1.0, lstm))                    # floor, no MI
        records.append(cell("beta", "lstm", seed, 0.3, 0.6 if seed < 2 else 0.4, lstm + 0.3, lstm - 0.6))
        records.append(cell("word-dropout", "lstm", seed, 1.5, 1.0, lstm + 2.3, lstm + 1.0))       # worse, reads z
        records.append(cell("lm", "lstm", seed, 0.0, 0.0, lstm, lstm))
    records.append(cell("skip", "transformer", 0, 5.0, 3.0, 45.0, 40.0))                           # no vanilla pair
    (table,) = alive_tables(add_time_ratio(frame(records)))
    assert table.decoders == ["lstm", "cnn"] and set(table.rows) == {"bnvae", "delta", "beta", "word-dropout"}
    assert table.rows["bnvae"]["lstm"].answer == "yes (3/3)" and table.rows["bnvae"]["lstm"].d_gain == pytest.approx(5)
    assert table.rows["bnvae"]["cnn"].answer == "KL only (3/3)"
    assert table.rows["delta"]["lstm"].answer == "KL only (3/3)" and "cnn" not in table.rows["delta"]
    assert table.rows["beta"]["lstm"].answer == "yes 2/3, no 1/3"
    assert table.rows["word-dropout"]["lstm"].answer == "yes (3/3)"
    lines = alive_markdown([table])
    assert "| bnvae | **yes (3/3)** KL 6.00 · MI 3.00 · AU 32 · Δgain +5.00 | **KL only (3/3)** KL 6.00 · MI 3.00 · " \
           "AU 32 · Δgain +0.49 |" in lines
    assert "| delta | **KL only (3/3)** KL 4.00 · MI 0.10 · AU 0 · Δgain +0.70 | – |" in lines
