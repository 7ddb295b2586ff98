"""Build the side-by-side tables of reports/parity.md from reports/parity/results/*.json.

    python reports/parity/table.py                     # prints Markdown: the main table
    python reports/parity/table.py delta-estimator     # δ-VAE's IW-NLL split by delta_estimator.py
    python reports/parity/table.py subset-first        # the second row's runs (results/subset-first/, issue 24)
    python reports/parity/table.py subset-first-bands  # vanilla's seed bands on that subset, each side
    python reports/parity/table.py long-parity         # long_parity.py's lockstep epochs (results/subset-first/)
    python reports/parity/table.py duvae-bands         # DU-VAE: ours against the band of the original's seeds
    python reports/parity/table.py duvae-probe-ss      # DU-VAE: their text_ss.py probe on one model each side
    python reports/parity/table.py duvae-bn-stats      # DU-VAE: test KL with final vs re-estimated BN statistics
    python reports/parity/table.py step-parity-remedies   # TWR-VAE / Coupled-VAE step-level replays (tests' fixture)
    python reports/parity/table.py --update reports/parity.md   # rewrites each table under its marker comment
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from collapse_bench.report.marked import rewrite_marked
from common import HERE, LABEL_SIZES, METHODS, RESULTS, subset_results

COLUMNS = [("iw_nll", "IW-NLL", 2), ("kl", "KL", 2), ("mi", "MI", 2), ("au", "AU", 0), ("elbo_nll", "−ELBO", 2)]
PROBES = ("100", "1000", "10000")


def load(folder: Path = RESULTS) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for f in sorted(folder.glob("*__seed*.json")):
        if f.name.startswith("long_parity"):      # long_parity.py's lockstep records: long_parity()
            continue
        r = json.loads(f.read_text())
        impl = f.stem.split("__")[0]       # ours, original, original-shuffled, original-scored-by-ours
        out.setdefault((r["method"], impl), []).append(r)
    return out


def fmt(values: list[float], digits: int) -> str:
    vals = [v for v in values if v == v]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return " / ".join(f"{v:.{digits}f}" for v in vals)


def vae_epochs(timing: dict) -> list[float]:
    """Seconds per epoch of the VAE's own training: ours times AE pretraining inside its first epoch."""
    seconds = list(timing["epoch_seconds"])
    seconds[0] -= timing.get("before_training_seconds", 0.0)
    return seconds


def valid_elbo(r: dict) -> float:
    """The final epoch's validation -ELBO (full valid set, one sample, KL weight 1): ours' curve, the original's
    test(VAL) as run_original.py records it; NaN for records written before it was recorded."""
    if "curves" in r:
        points = [p for p in r["curves"] if not p.get("partial")]
    else:
        points = r.get("valid_curve") or []
    return float(points[-1]["valid_loss"]) if points else float("nan")


def main_table(folder: Path = RESULTS, with_valid: bool = False) -> list[str]:
    runs = load(folder)
    rows = ["| method | implementation | seeds | " + " | ".join(c for _, c, _ in COLUMNS)
            + (" | valid −ELBO" if with_valid else "")
            + " | " + " | ".join(f"probe@{p} raw μ" for p in PROBES) + " | probe@100 std. | s/epoch |",
            "|" + "---|" * (4 + len(COLUMNS) + with_valid + len(PROBES) + 1)]
    for method in METHODS:
        impls = sorted({impl for (m, impl) in runs if m == method and not impl.startswith(TYPED_IN)},
                       key=lambda i: (i != "original", i))
        for impl in impls:
            rs = sorted(runs[(method, impl)], key=lambda r: r["seed"])
            m = [r["metrics"] for r in rs]
            cells = [fmt([x[k] for x in m], d) for k, _, d in COLUMNS] + ([fmt([valid_elbo(r) for r in rs], 2)]
                                                                        if with_valid else [])
            probes = [fmt([100 * x["probe_raw_mu"][p] for x in m], 1) for p in PROBES]
            std = fmt([100 * x["probe_standardised"]["100"] for x in m if "probe_standardised" in x], 1)
            epoch = fmt([statistics.mean(vae_epochs(r["timing"])) for r in rs if "epoch_seconds" in r["timing"]], 0)
            rows.append(f"| {method} | {impl} | {','.join(str(r['seed']) for r in rs)} | " + " | ".join(cells) + " | "
                        + " | ".join(probes) + f" | {std} | {epoch} |")
    return rows


def delta_estimator() -> list[str]:
    """One row per δ-VAE model measured by delta_estimator.py, beside its IW-NLL from the main results."""
    lines = ["| implementation | seed | σ per unit (min / mean / max) | IW-NLL (q, K=500) | latent-space bias of the "
             "estimator | IW-NLL − bias | IW-NLL (prior as proposal) | E_q[−log p(x\\|z)] |",
             "|---|---|---|---|---|---|---|---|"]
    models = [json.loads(f.read_text()) for f in sorted((RESULTS / "delta_estimator").glob("*.json"))]
    models = [r for r in models if r["implementation"] != "study"]       # the study's cells: quoted in the text
    for r in sorted(models, key=lambda r: (not r["implementation"].startswith("original"), r["implementation"], r["seed"])):
        main_result = RESULTS / f"{r['implementation']}__delta__seed{r['seed']}.json"
        iw = json.loads(main_result.read_text())["metrics"]["iw_nll"] if main_result.exists() else float("nan")
        m = r["metrics"]
        sigma = " / ".join(f"{v:.3f}" for v in m["sigma_unit_means"])
        lines.append(f"| {r['implementation']} | {r['seed']} | {sigma} | {iw:.2f} | {m['latent_iw_bias']:.2f} | "
                     f"{iw - m['latent_iw_bias']:.2f} | {m['iw_nll_prior']:.2f} | {m['recon_q']:.2f} |")
    return lines


TYPED_IN = "issue24-"     # figures typed in from issue 24's table (runs of another session): bands only, marked


def side_runs(runs: dict, method: str, side: str) -> list[tuple[dict, bool]]:
    """A side's runs, ours first; a typed-in record of a seed that was not rerun here is added, marked True."""
    own = sorted(runs.get((method, side), []), key=lambda r: r["seed"])
    seeds = {r["seed"] for r in own}
    typed = [r for r in runs.get((method, TYPED_IN + side), []) if r["seed"] not in seeds]
    return [(r, False) for r in own] + [(r, True) for r in sorted(typed, key=lambda r: r["seed"])]


def band(values: list[float]) -> str:
    if len(values) < 2:
        return fmt(values, 2)
    return (f"{min(values):.2f} – {max(values):.2f} ({statistics.mean(values):.2f} ± "
            f"{statistics.stdev(values):.2f})")


def welch(a: list[float], b: list[float]) -> str:
    """Difference of means (a − b), Welch's t and its two-sided p (scipy), for the reader's judgement."""
    if len(a) < 2 or len(b) < 2:
        return "–"
    from scipy import stats
    t, p = stats.ttest_ind(a, b, equal_var=False)
    return f"{statistics.mean(a) - statistics.mean(b):+.2f} (t = {t:.2f}, p = {p:.2f})"


def subset_bands(subset: str = "first", method: str = "vanilla") -> list[str]:
    """Each side's seed band (min – max, mean ± sd) of the final valid −ELBO and the IW-NLL, and where ours' runs
    fall against the original's band."""
    runs = load(subset_results(subset))
    orig, ours = side_runs(runs, method, "original"), side_runs(runs, method, "ours")
    seeds = lambda side: ",".join(f"{r['seed']}{'*' if typed else ''}" for r, typed in side)  # noqa: E731
    metrics = {"valid −ELBO (final epoch)": valid_elbo, "IW-NLL (test 0–499, K = 500)": lambda r: r["metrics"]["iw_nll"]}
    lines = ["| quantity | original: seeds | original: runs | original: band (mean ± sd) | ours: seeds | ours: runs | "
             "ours: band (mean ± sd) | ours' runs inside the original's band | ours − original (Welch) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, get in metrics.items():
        o, u = [get(r) for r, _ in orig], [get(r) for r, _ in ours]
        inside = sum(min(o) <= v <= max(o) for v in u) if o else 0
        lines.append(f"| {name} | {seeds(orig)} | {fmt(o, 2)} | {band(o)} | "
                     f"{seeds(ours)} | {fmt(u, 2)} | {band(u)} | {inside} of {len(u)} | "
                     f"{welch(u, o)} |")
    return lines


BAND_METRICS = {"IW-NLL": (lambda r: r["metrics"]["iw_nll"], 2), "KL": (lambda r: r["metrics"]["kl"], 2),
                "MI": (lambda r: r["metrics"]["mi"], 2), "AU": (lambda r: r["metrics"]["au"], 0),
                "−ELBO": (lambda r: r["metrics"]["elbo_nll"], 2), "valid −ELBO (final epoch)": (valid_elbo, 2),
                **{f"probe@{p} raw μ": (lambda r, p=p: 100 * r["metrics"]["probe_raw_mu"][p], 1) for p in PROBES}}


def method_bands(method: str = "duvae", folder: Path = RESULTS) -> list[str]:
    """Per quantity: the original's runs and band (min – max over its seeds), ours' runs, how many of ours fall
    inside, and by how much the farthest one is outside (+ above, − below); then each side's epoch time."""
    runs = load(folder)
    orig = sorted(runs.get((method, "original"), []), key=lambda r: r["seed"])
    ours = sorted(runs.get((method, "ours"), []), key=lambda r: r["seed"])
    shuffled = sorted(runs.get((method, "original-shuffled"), []), key=lambda r: r["seed"])
    seeds = lambda rs: ",".join(str(r["seed"]) for r in rs)  # noqa: E731
    lines = [f"| quantity | original (seeds {seeds(orig)}) | original's band | ours (seeds {seeds(ours)}) | "
             "ours inside the band | farthest outside | ours − original (Welch) | original on the shuffled file "
             f"(seeds {seeds(shuffled) or '–'}) |", "|---|---|---|---|---|---|---|---|"]
    for name, (get, d) in BAND_METRICS.items():
        o, u = [get(r) for r in orig], [get(r) for r in ours]
        o, u = [v for v in o if v == v], [v for v in u if v == v]
        if not o or not u:
            continue
        lo, hi = min(o), max(o)
        out = max(((v - hi) if v > hi else (v - lo) for v in u if not lo <= v <= hi), key=abs, default=0.0)
        sh = [v for v in (get(r) for r in shuffled) if v == v]
        lines.append(f"| {name} | {fmt(o, d)} | {lo:.{d}f} – {hi:.{d}f} | {fmt(u, d)} | "
                     f"{sum(lo <= v <= hi for v in u)} of {len(u)} | {'–' if not out else f'{out:+.{d}f}'} | "
                     f"{welch(u, o)} | {fmt(sh, d) if sh else '–'} |")
    for side, rs in (("original", orig), ("ours", ours), ("original, shuffled file", shuffled)):
        if not rs:
            continue
        epochs = [vae_epochs(r["timing"]) for r in rs]
        logging = [r["timing"].get("logging_seconds") or [0.0] * len(e) for r, e in zip(rs, epochs)]
        lines.append(f"| s/epoch, {side} (mean over epochs; per seed) | "
                     + " / ".join(f"{statistics.mean(e):.0f}" for e in epochs) + " | – | – | – | "
                     + ("without the progress log: " + " / ".join(
                         f"{statistics.mean(a - b for a, b in zip(e, g)):.0f}" for e, g in zip(epochs, logging))
                        if any(any(g) for g in logging) else "–") + " | – | – |")
    return lines


def probe_text_ss() -> list[str]:
    """DU-VAE's own probe (their text_ss.py, probe_original_ss.py) on one model of each side, beside the raw-μ probe
    both sides' runs were scored with (test accuracy, %)."""
    sizes = [str(n) for n in LABEL_SIZES]
    lines = ["| model | probe | " + " | ".join(f"{n} labels" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for f in sorted((RESULTS / "probe_ss").glob("*.json")):
        r = json.loads(f.read_text())
        main = RESULTS / f"{r['implementation']}__{r['method']}__seed{r['seed']}.json"
        raw = json.loads(main.read_text())["metrics"]["probe_raw_mu"] if main.exists() else {}
        name = f"{r['implementation']}, seed {r['seed']}"
        ss = r["probe_text_ss"]
        lines.append(f"| {name} | their text_ss.py | " + " | ".join(
            f"{100 * ss[n]['test_acc']:.1f}" if n in ss else "–" for n in sizes) + " |")
        lines.append(f"| {name} | raw-μ LogisticRegression (the parity table's) | " + " | ".join(
            f"{100 * raw[n]:.1f}" if n in raw else "–" for n in sizes) + " |")
    return lines


def duvae_bn_stats() -> list[str]:
    """duvae_bn_stats.py: each final DU-VAE model's test KL (lines 0-999; the mean term 0.5·|μ|² beside it), IW-NLL
    and -ELBO with the BN running statistics it ended with and with statistics re-estimated over the whole training
    file."""
    path = RESULTS / "duvae_bn_stats.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    keys = ("kl", "iw_nll", "elbo_nll")
    lines = ["| implementation | seed | KL, final running statistics (mean term) | KL, re-estimated (mean term) | "
             "the rest of the KL (both) | IW-NLL, final → re-estimated | −ELBO, final → re-estimated |",
             "|---|---|---|---|---|---|---|"]
    both = lambda a, b, k: f"{a[k]:.2f} → {b[k]:.2f}" if k in a and k in b else "–"  # noqa: E731
    for r in sorted(runs, key=lambda r: (r["implementation"] != "original", r["seed"])):
        a, b = r["final_running_stats"], r["reestimated_running_stats"]
        lines.append(f"| {r['implementation']} | {r['seed']} | {a['kl']:.2f} ({a['mean_term']:.2f}) | "
                     f"{b['kl']:.2f} ({b['mean_term']:.2f}) | {a['rest']:.2f} | {both(a, b, 'iw_nll')} | "
                     f"{both(a, b, 'elbo_nll')} |")
    for side in ("original", "ours"):
        rs = [r for r in runs if r["implementation"] == side]
        if rs:
            m = {k: {w: statistics.mean(r[w].get(k, float("nan")) for r in rs)
                     for w in ("final_running_stats", "reestimated_running_stats")} for k in keys}
            cell = lambda k: "–" if m[k]["final_running_stats"] != m[k]["final_running_stats"] else \
                f"{m[k]['final_running_stats']:.2f} → {m[k]['reestimated_running_stats']:.2f}"  # noqa: E731
            lines.append(f"| {side}: mean | {len(rs)} seeds | {m['kl']['final_running_stats']:.2f} | "
                         f"{m['kl']['reestimated_running_stats']:.2f} | – | {cell('iw_nll')} | {cell('elbo_nll')} |")
    return lines


def step_parity_remedies() -> list[str]:
    """The step-level replays of tests/test_step_parity_remedies.py against the authors' recorded figures: per
    run, the steps, the largest relative difference of any figure, and which."""
    sys.path.insert(0, str(HERE.parents[1] / "tests"))
    import test_step_parity_remedies as R
    fx = json.loads(R.FIXTURE.read_text())
    lines = ["| method | run | figures compared per step | steps | batch lengths | regularised steps (their KL's "
             "divisor) | largest rel. difference (which) |", "|---|---|---|---|---|---|---|"]
    for name, run in fx["twr"]["runs"].items():
        diffs = R.twr_differences(run, R.replay_twr(fx["twr"], name))
        worst = max((v, k) for d in diffs for k, v in d.items())
        first = run["steps"][0]
        lines.append(f"| TWR-VAE | {name} | loss, rec, KL penalty, {len(first['grad'])} gradient norms, "
                     f"{len(first['param_norm'])} parameter norms and distances; final parameters | {len(diffs)} | "
                     + " ".join(str(len(s["tokens"][0])) for s in run["steps"]) + " | "
                     + " ".join(str(s["kl_steps"]) for s in run["steps"]) + f" | {worst[0]:.1e} ({worst[1]}) |")
    du = fx["duvae"]
    steps = du["runs"]["duvae"]["steps"]
    diffs, tols = R.du_differences(du), R.du_tolerances(du)
    worst = max((v, k, i) for i, d in enumerate(diffs) for k, v in d.items())
    on = 1 + [s["floor_on"] for s in steps].index(True)
    lines.append(f"| DU-VAE | duvae (γ {du['config']['gamma']}, p_drop {du['config']['p_drop']}, two epochs; "
                 f"floor and variance dropout from step {on}; a batch of 4 skipped) | loss, rec, KL, KL weight, "
                 f"{len(steps[0]['grad_pre'])} gradient norms before and after the joint clip, parameter norms and "
                 f"distances; final parameters | {len(steps)} | "
                 + " ".join(str(len(s["tokens"][0])) for s in steps) + " | – | "
                 f"{worst[0]:.1e} ({worst[1]}, step {worst[2] + 1}; float32's own rounding allowance there "
                 f"{tols[worst[2]]:.1e}) |")
    d = R.coupled_differences(fx["coupled"])
    worst = max(d, key=d.get)
    c = fx["coupled"]["config"]
    lines.append(f"| Coupled-VAE | coupling term (B = {c['batch']}, signal width {c['width']}, nz {c['nz']}) | "
                 f"per-sentence term, batch mean, gradient on both signals | – | – | – | {d[worst]:.1e} ({worst}) |")
    return lines


DISTANCE_AT = (20, 60, 100, 140, 200, 300)


def long_parity(subset: str = "first") -> list[str]:
    """long_parity.py's lockstep epochs: where ours parts from the original, and from itself after a 1-ulp nudge."""
    lines = ["| run | steps | ours' clip order | pair | loss first differs at step | rel. loss diff > 1e-4 at | "
             "> 1e-2 at | > 1e-1 at | param. distance (rel. L2) at steps " + " / ".join(map(str, DISTANCE_AT))
             + " / end |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in sorted(subset_results(subset).glob("long_parity__*.json")):
        r = json.loads(f.read_text())
        for pair in ("original_vs_ours", "ours_vs_ours+1ulp"):
            s = r["summary"][pair]
            dist = {d["step"]: d[pair]["rel_l2"] for d in r["distance"]}
            at = [dist.get(k) for k in DISTANCE_AT] + [r["distance"][-1][pair]["rel_l2"]]
            cell = lambda v: "–" if v is None else str(v)  # noqa: E731
            lines.append(f"| {f.stem} | {r['steps']} | {'original' if r.get('original_clip_order') else 'ours'} | "
                         f"{pair.replace('_vs_', ' vs ')} | {cell(s['first_step_loss_differs'])} | "
                         f"{cell(s['first_step_rel_loss_diff_above_0.0001'])} | "
                         f"{cell(s['first_step_rel_loss_diff_above_0.01'])} | "
                         f"{cell(s['first_step_rel_loss_diff_above_0.1'])} | "
                         + " / ".join("–" if v is None else f"{v:.1e}" for v in at) + " |")
    return lines


TABLES = {"python reports/parity/table.py": main_table, "python reports/parity/table.py delta-estimator": delta_estimator,
          "python reports/parity/table.py subset-first": lambda: main_table(subset_results("first"), with_valid=True),
          "python reports/parity/table.py subset-first-bands": subset_bands,
          "python reports/parity/table.py long-parity": long_parity,
          "python reports/parity/table.py duvae-bands": method_bands,
          "python reports/parity/table.py duvae-probe-ss": probe_text_ss,
          "python reports/parity/table.py duvae-bn-stats": duvae_bn_stats,
          "python reports/parity/table.py step-parity-remedies": step_parity_remedies}


def update(page: Path) -> None:
    """Replace the table below each `<!-- table: COMMAND -->` marker (up to the first blank line) by COMMAND's output."""
    rewrite_marked(page, TABLES)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"]:
        update(Path(sys.argv[2]))
    else:
        print("\n".join(TABLES[" ".join(["python reports/parity/table.py", *sys.argv[1:]])]()))
