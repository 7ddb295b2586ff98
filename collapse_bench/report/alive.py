"""Does a remedy keep z alive with this decoder? One answer per (method, decoder), each seed paired with vanilla of
the same dataset, size, decoder and seed (`alive_tables`, rendered by `alive_markdown` and `alive_html`).

z is alive in a seed when both sides of the model use it. The encoder puts information in it: MI at least `MARGIN`
nats above vanilla's. The decoder reads it: NLL − recon = E_q[log p(x|z) − log p(x)], how much better the decoder
predicts a sentence from its posterior z than from none, at least `MARGIN` nats above vanilla's. (IW-NLL is scored on
a fixed subset of the test sentences, the same for every cell, and the reconstruction term on all of them: the
offset between the two sets is much the same for every model of a board, and the difference to vanilla cancels it.)
A posterior that leaves the prior (KL up by `MARGIN`) without both is "KL only": δ-VAE's floor, or information the
decoder does not read."""
from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from ..baseline import VANILLA
from .marked import md_cell
from .stats import summarize, vanilla_of

MARGIN = 0.5      # nats, as findings.LITTLE_KL
ALIVE, KL_ONLY, DEAD = "yes", "KL only", "no"
CRITERION = (f"per seed against vanilla of the same decoder and seed: **{ALIVE}** when MI ≥ vanilla's + {MARGIN:g} "
             f"nats (the encoder writes to z) and the decoder's gain from z, NLL − recon, ≥ vanilla's + {MARGIN:g} nats "
             f"(the decoder reads it); **{KL_ONLY}** when only KL ≥ vanilla's + {MARGIN:g}; **{DEAD}** otherwise")
DECODER_ORDER = ("lstm", "cnn", "transformer")


@dataclass
class AliveCell:
    verdicts: list[str]                       # one per seed paired with a vanilla seed
    kl: float
    mi: float
    au: float
    d_gain: float                             # mean over seeds of (nll − recon) − vanilla's (nll − recon)

    @property
    def answer(self) -> str:
        counts = Counter(self.verdicts)
        if len(counts) == 1:
            return f"{self.verdicts[0]} ({len(self.verdicts)}/{len(self.verdicts)})"
        return ", ".join(f"{v} {n}/{len(self.verdicts)}" for v, n in counts.most_common())

    @property
    def figures(self) -> str:
        return f"KL {self.kl:.2f} · MI {self.mi:.2f} · AU {self.au:.0f} · Δgain {self.d_gain:+.2f}"


@dataclass
class AliveTable:
    dataset: str
    size: str
    decoders: list[str]
    vanilla: dict[str, str]                                   # decoder: vanilla's figures
    rows: dict[str, dict[str, AliveCell]] = field(default_factory=dict)   # label: decoder: cell


def _verdict(row: pd.Series) -> str:
    if row["mi"] - row["v_mi"] >= MARGIN and row["gain"] - row["v_gain"] >= MARGIN:
        return ALIVE
    return KL_ONLY if row["kl"] - row["v_kl"] >= MARGIN else DEAD


def _mean(values: pd.Series) -> float:
    s = summarize(values.tolist())
    return math.nan if s is None else s.mean


def _decoder_key(decoder: str) -> tuple[int, str]:
    return (DECODER_ORDER.index(decoder) if decoder in DECODER_ORDER else len(DECODER_ORDER), decoder)


def alive_tables(df: pd.DataFrame) -> list[AliveTable]:
    """One table per (dataset, size): a row per latent remedy, a column per decoder that has an ok vanilla cell."""
    ok = df[(df["status"] == "ok") & df["kl"].notna() & df["mi"].notna() & df["recon"].notna() & df["nll"].notna()]
    if ok.empty:
        return []
    ok = ok.assign(gain=ok["nll"] - ok["recon"])
    for col in ("kl", "mi", "gain"):
        ok[f"v_{col}"] = vanilla_of(ok, col, ok[col].notna())
    tables = []
    for (dataset, size), board in ok.groupby(["dataset", "size"], sort=True):
        van = board[board["method"] == VANILLA]
        decoders = sorted(van["decoder"].unique(), key=_decoder_key)
        if not decoders:
            continue
        table = AliveTable(str(dataset), str(size), [str(d) for d in decoders], {
            str(d): (f"KL {_mean(g['kl']):.2f} · MI {_mean(g['mi']):.2f} · AU {_mean(g['au']):.0f} · "
                     f"gain {_mean(g['gain']):.2f} ({len(g)} seed{'s' * (len(g) != 1)})") for d, g in van.groupby("decoder")})
        paired = board[(board["method"] != VANILLA) & board["v_gain"].notna()]
        for (label, decoder), g in paired.groupby(["label", "decoder"], sort=True):
            table.rows.setdefault(str(label), {})[str(decoder)] = AliveCell(
                [_verdict(r) for _, r in g.sort_values("seed", key=lambda s: s.astype(str)).iterrows()],
                _mean(g["kl"]), _mean(g["mi"]), _mean(g["au"]), _mean(g["gain"] - g["v_gain"]))
        tables.append(table)
    return tables


def alive_markdown(tables: list[AliveTable], heading: str = "##") -> list[str]:
    """Markdown lines: the criterion, then a table per (dataset, size); a cell reads `answer (seeds)` and the means."""
    lines = [f"Criterion: {CRITERION}. Each cell: the answer in how many of its seeds, then the means over seeds "
             f"(Δgain: the decoder's gain from z, NLL − recon, minus vanilla's, paired by seed).", ""]
    for t in tables:
        lines += [f"{heading} {t.dataset} · size {t.size}", "", *alive_table(t), ""]
    return lines


def alive_table(t: AliveTable) -> list[str]:
    """One (dataset, size)'s table: vanilla's figures per decoder, then a row per remedy."""
    lines = ["| method | " + " | ".join(t.decoders) + " |", "|---|" + "---|" * len(t.decoders),
             f"| {VANILLA} (the reference) | " + " | ".join(t.vanilla.get(d, "–") for d in t.decoders) + " |"]
    return lines + [f"| {md_cell(label)} | " + " | ".join(f"**{c.answer}** {c.figures}" if (c := cells.get(d)) else "–"
                                                      for d in t.decoders) + " |"
                    for label, cells in sorted(t.rows.items())]


def alive_html(tables: list[AliveTable]) -> str:
    """The same tables as escaped HTML (no scripts), for the study's index page."""
    e = html.escape
    out = [f"<p>{e(CRITERION.replace('**', ''))}.</p>"]
    for t in tables:
        head = "".join(f"<th>{e(d)}</th>" for d in t.decoders)
        van = "".join(f"<td>{e(t.vanilla.get(d, '–'))}</td>" for d in t.decoders)
        body = "".join(f"<tr><td>{e(label)}</td>" + "".join(
            f'<td><b class="{"alive" if set(c.verdicts) == {ALIVE} else "notalive"}">{e(c.answer)}</b> '
            f"{e(c.figures)}</td>" if (c := cells.get(d)) else "<td>–</td>" for d in t.decoders) + "</tr>"
            for label, cells in sorted(t.rows.items()))
        out.append(f"<h3>{e(t.dataset)} · size {e(t.size)}</h3><table><thead><tr><th>method</th>{head}</tr></thead>"
                   f"<tbody><tr><td>{e(VANILLA)} (the reference)</td>{van}</tr>{body}</tbody></table>")
    return "".join(out)
