"""Build the side-by-side tables of reports/parity.md from reports/parity/results/*.json.

    python reports/parity/table.py                     # prints Markdown: the main table
    python reports/parity/table.py delta-estimator     # δ-VAE's IW-NLL split by delta_estimator.py
    python reports/parity/table.py --update reports/parity.md   # rewrites each table under its marker comment
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from common import METHODS, RESULTS

COLUMNS = [("iw_nll", "IW-NLL", 2), ("kl", "KL", 2), ("mi", "MI", 2), ("au", "AU", 0), ("elbo_nll", "−ELBO", 2)]
PROBES = ("100", "1000", "10000")


def load() -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for f in sorted(RESULTS.glob("*.json")):
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


def main_table() -> list[str]:
    runs = load()
    rows = ["| method | implementation | seeds | " + " | ".join(c for _, c, _ in COLUMNS)
            + " | " + " | ".join(f"probe@{p} raw μ" for p in PROBES) + " | probe@100 std. | s/epoch |",
            "|" + "---|" * (4 + len(COLUMNS) + len(PROBES) + 1)]
    for method in METHODS:
        impls = sorted({impl for (m, impl) in runs if m == method}, key=lambda i: (i != "original", i))
        for impl in impls:
            rs = sorted(runs[(method, impl)], key=lambda r: r["seed"])
            m = [r["metrics"] for r in rs]
            cells = [fmt([x[k] for x in m], d) for k, _, d in COLUMNS]
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


TABLES = {"python reports/parity/table.py": main_table, "python reports/parity/table.py delta-estimator": delta_estimator}


def update(page: Path) -> None:
    """Replace the table below each `<!-- table: COMMAND -->` marker (up to the first blank line) by COMMAND's output."""
    lines, out, skipping = page.read_text().split("\n"), [], False
    for line in lines:
        if skipping:
            skipping = line != ""
            if skipping:
                continue
        out.append(line)
        if line.startswith("<!-- table: ") and line.endswith(" -->"):
            command = line[len("<!-- table: "):-len(" -->")]
            if command not in TABLES:
                raise SystemExit(f"{page}: unknown table command {command!r}; known: {sorted(TABLES)}")
            out.extend(TABLES[command]())
            skipping = True
    page.write_text("\n".join(out))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"]:
        update(Path(sys.argv[2]))
    else:
        print("\n".join(delta_estimator() if sys.argv[1:] == ["delta-estimator"] else main_table()))
