"""Board plots as inline SVG (matplotlib Figure without pyplot, seaborn lineplot/scatterplot/barplot only)."""
from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .families import family_key, family_of, family_slug
from .stats import Summary, summarize
from .table import Board

CURVES = (("valid_kl", "KL (nats)"), ("valid_mi", "MI (nats)"), ("valid_au", "active units"))
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)   # RDF boilerplate, dead weight inline


def t_band(values: pd.Series) -> tuple[float, float]:
    """Seaborn errorbar: the table's 95% t-interval over seeds (deterministic, and far faster than a bootstrap)."""
    s = summarize(values.tolist())
    return (math.nan, math.nan) if s is None else (s.mean, s.mean) if s.n < 2 else (s.lo, s.hi)


def plain(s: str) -> str:
    """Text matplotlib draws verbatim: no mathtext from '$', and a leading '_' would hide a legend entry."""
    s = s.replace("$", r"\$")
    return " " + s if s.startswith("_") else s


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")    # one per family: a panel of every family tells them apart


def palette(methods: dict[str, str]) -> dict[str, tuple[float, float, float]]:
    """A colour per label ({label: method}): up to 20 labels, every label its own (tab10, tab20), so no panel
    repeats a colour; past 20, distinct within its family (each family's panel of curves): the labels of a family
    take tab10's colours in turn (husl past 10), and families are told apart by `markers`."""
    if len(methods) <= 20:
        colours = sns.color_palette("tab10" if len(methods) <= 10 else "tab20", len(methods))
        return {plain(label): c for label, c in zip(sorted(methods), colours, strict=True)}
    by: dict[str, list[str]] = {}
    for label in sorted(methods):
        by.setdefault(family_of(methods[label]), []).append(label)
    out = {}
    for labels in by.values():
        colours = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
        out |= {plain(label): c for label, c in zip(labels, colours, strict=True)}
    return out


def markers(methods: dict[str, str]) -> dict[str, str]:
    """A marker per label ({label: method}): its family's."""
    return {plain(label): MARKERS[family_key(family_of(m)) % len(MARKERS)] for label, m in methods.items()}


@contextmanager
def _style() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)   # pandas/seaborn version chatter
        warnings.filterwarnings("ignore", category=FutureWarning)
        with mpl.rc_context({"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10}), \
                sns.axes_style("whitegrid"):
            yield


def to_svg(fig: Figure, salt: str) -> str:
    engine = fig.get_layout_engine()
    if engine is not None:    # margins for the browser's font, which can be wider than matplotlib's metrics
        engine.set(w_pad=0.12, h_pad=0.08)
    buf = io.StringIO()
    with mpl.rc_context({"svg.hashsalt": salt}):   # ids unique per figure: several SVGs share one document
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return _METADATA.sub("", svg[svg.index("<svg"):])


def _legend_outside(fig: Figure, axes: list[Axes]) -> None:
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
        if ax.get_legend():
            ax.get_legend().remove()
    if not handles:
        return
    # Constrained layout makes room outside the axes. A list that fits beside the axes goes on the right, one
    # column; a long one (17 methods) goes below in as many columns as the width holds, and the figure grows.
    labels = [wrap(lab) for lab in labels]
    row_pt = mpl.rcParams["font.size"] * 1.9                       # one line of an entry with the default spacing
    lines = sum(lab.count("\n") + 1 for lab in labels)
    entry_pt = max(len(line) for lab in labels for line in lab.split("\n")) * mpl.rcParams["font.size"] * 0.62 + 34
    if lines * row_pt <= fig.get_figheight() * 72 - 16 and entry_pt <= fig.get_figwidth() * 72 * 0.45:
        fig.legend(handles, labels, loc="outside right center", frameon=False)
        return
    ncols = max(1, int(fig.get_figwidth() * 72 // entry_pt))
    tallest = max(lab.count("\n") + 1 for lab in labels)
    nrows = math.ceil(len(handles) / ncols) * tallest
    fig.set_figheight(fig.get_figheight() + (nrows * row_pt + 12) / 72)
    fig.legend(handles, labels, loc="outside lower center", frameon=False, ncols=ncols)


def curves(points: pd.DataFrame, pal: dict) -> Figure | None:
    keys = [(k, t) for k, t in CURVES if k in points and points[k].notna().any()]
    if points.empty or not keys:
        return None
    fig = Figure(figsize=(3.6 * len(keys), 3.0), layout="constrained")
    axes = list(fig.subplots(1, len(keys), squeeze=False)[0])
    for ax, (k, title) in zip(axes, keys, strict=True):
        data = points[points[k].notna()]
        sns.lineplot(data, x="epoch", y=k, hue="label", palette=pal, errorbar=t_band, ax=ax,
                     marker="o", markersize=3)
        ax.set(title=title, xlabel="epoch", ylabel="")
    _legend_outside(fig, axes)
    return fig


def pareto_front(points: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Labels not dominated in (lower NLL, higher MI), by increasing NLL."""
    front, best_mi = [], -math.inf
    for p in sorted(points, key=lambda p: (p[1], -p[2])):
        if p[2] > best_mi:
            front.append(p)
            best_mi = p[2]
    return front


def pareto(board: Board, pal: dict) -> Figure | None:
    mk = markers({r.label: r.method for r in board.rows})
    pts = []
    for r in board.rows:
        nll, mi = r.cells["nll"].summary, r.cells["mi"].summary
        if nll and mi:
            pts.append((r.label, nll, mi))
    if not pts:
        return None
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.subplots()
    data = pd.DataFrame({"label": [plain(p[0]) for p in pts], "nll": [p[1].mean for p in pts],
                         "mi": [p[2].mean for p in pts]})
    for (_, n, m), lab in zip(pts, data["label"], strict=True):
        ax.errorbar(n.mean, m.mean, xerr=_half(n), yerr=_half(m), color=pal.get(lab, "grey"), alpha=0.6,
                    capsize=2, lw=1, zorder=1)
    sns.scatterplot(data, x="nll", y="mi", hue="label", style="label", markers=mk, palette=pal, s=45, ax=ax, zorder=3)
    front = pareto_front([(p[0], p[1].mean, p[2].mean) for p in pts])
    ax.plot([p[1] for p in front], [p[2] for p in front], drawstyle="steps-post", color="black", lw=1.2,
            ls="--", zorder=2, label="Pareto front")
    ax.scatter([p[1] for p in front], [p[2] for p in front], s=140, facecolors="none", edgecolors="black", zorder=4)
    ax.set(xlabel="NLL (nats) ↓", ylabel="MI (nats) ↑", title="NLL against MI (bars: 95% t-interval)")
    _legend_outside(fig, [ax])
    return fig


def _half(s: Summary) -> float:
    return 0.0 if s.n < 2 else (s.hi - s.lo) / 2


def probe(runs: pd.DataFrame, pal: dict, scale: float) -> Figure | None:
    cols = [c for c in runs.columns if c.startswith("probe@")]
    ok = runs[runs["status"] == "ok"]
    long = ok.melt(id_vars=["label", "seed"], value_vars=cols, var_name="labels", value_name="acc").dropna()
    long["labels"] = pd.to_numeric(long["labels"].str[6:], errors="coerce")
    long = long.dropna()
    if long.empty:
        return None
    long["acc"] *= scale
    long["label"] = long["label"].map(plain)
    mk = markers(dict(zip(ok["label"], ok["method"])))          # past 20 methods colours repeat across families
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(long, x="labels", y="acc", hue="label", style="label", markers=mk, dashes=False, palette=pal,
                 errorbar=t_band, ax=ax)
    if long["labels"].min() > 0 and long["labels"].nunique() > 1:
        ax.set_xscale("log")
    ax.set(xlabel="number of labelled examples", ylabel="accuracy %" if scale == 100 else "accuracy",
           title="Probe accuracy against labels")
    _legend_outside(fig, [ax])
    return fig


def time_ratio(runs: pd.DataFrame, pal: dict) -> Figure | None:
    ok = runs[(runs["status"] == "ok") & runs["time_ratio"].notna()][["label", "time_ratio"]]
    if ok.empty:
        return None
    ok = ok.assign(label=ok["label"].map(lambda lab: wrap(plain(lab))))
    order = ok.groupby("label")["time_ratio"].mean().sort_values().index.tolist()
    lines = sum(lab.count("\n") + 1 for lab in order)
    fig = Figure(figsize=(5.6, 0.7 + 0.16 * lines + 0.16 * len(order)), layout="constrained")
    ax = fig.subplots()
    sns.barplot(ok, x="time_ratio", y="label", hue="label", order=order, palette={wrap(k): v for k, v in pal.items()},
                errorbar=t_band, legend=False, ax=ax)
    ax.axvline(1.0, color="black", lw=1, ls="--")
    ax.set(xlabel="training time / vanilla (same seed) ↓", ylabel="", title="Wall-clock ratio to vanilla")
    return fig


def kl_heatmaps(dims: pd.DataFrame, order: list[str]) -> Figure | None:
    """One heatmap per method (its first seed): KL of every latent dimension (rows, sorted by their final KL) at
    every curve point (columns), on one shared colour scale. Units are not comparable across seeds, so seeds are
    not averaged."""
    labels = [lab for lab in order if (dims["label"] == lab).any()]
    if not labels:
        return None
    ncols = min(4, len(labels))
    nrows = math.ceil(len(labels) / ncols)
    fig = Figure(figsize=(2.9 * ncols + 1.0, 2.3 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    vmax = max(float(dims["kl"].quantile(0.99)), 1e-3)
    norm = mpl.colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax)
    image = None
    for ax, lab in zip(axes.flat, labels):
        mine = dims[dims["label"] == lab]
        seed = sorted(mine["seed"].unique(), key=lambda s: (len(s), s))[0]
        grid = mine[mine["seed"] == seed].pivot_table(index="dim", columns="epoch", values="kl", aggfunc="mean")
        grid = grid.sort_values(grid.columns[-1], ascending=False)
        epochs = grid.columns.to_numpy(dtype=float)
        image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="magma", norm=norm, interpolation="nearest",
                          extent=(0, epochs.max(), len(grid), 0))
        ax.set_title(plain(wrap(lab, 34)), fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(f"unit (seed {seed})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(False)
    for ax in list(axes.flat)[len(labels):]:
        ax.set_axis_off()
    fig.colorbar(image, ax=axes, shrink=0.6, label="KL per unit (nats)")
    return fig


def wrap(label: str, width: int = 36) -> str:
    """A long label (method(param=..., ...)) on several lines, broken after commas, so that a legend, a tick label
    or a small panel's title fits the figure instead of squeezing the axes to nothing."""
    lines, line = [], ""
    for part in label.split(", "):
        piece = part if not line else f"{line}, {part}"
        if line and len(piece) > width:
            lines.append(line + ",")
            line = part
        else:
            line = piece
    return "\n".join([*lines, line])


def _family_curves(board: Board, mine: pd.DataFrame, pal: dict) -> list[tuple[str, str, Callable[[], Figure | None]]]:
    """One small figure of curves per family on the board (few lines a panel), in the families' order."""
    fams: dict[str, list[str]] = {}
    for r in board.rows:
        fams.setdefault(family_of(r.method), []).append(plain(r.label))
    return [(f"KL, MI and AU over training: {fam} (validation; band: 95% t-interval over seeds)", family_slug(fam),
             lambda labels=labels: curves(mine[mine["label"].isin(labels)], pal))
            for fam, labels in sorted(fams.items(), key=lambda kv: family_key(kv[0]))]


def _family_probes(board: Board, pal: dict, scale: float) -> list[tuple[str, str, Callable[[], Figure | None]]]:
    """Probe accuracy as one small figure per family past 10 methods (few lines a panel), else one figure."""
    if len(board.rows) <= 10:
        return [("Probe accuracy against number of labels", "", lambda: probe(board.runs, pal, scale))]
    fams: dict[str, list[str]] = {}
    for r in board.rows:
        fams.setdefault(family_of(r.method), []).append(r.label)
    runs = board.runs
    return [(f"Probe accuracy against number of labels: {fam}", family_slug(fam),
             lambda labels=labels: probe(runs[runs["label"].isin(labels)], pal, scale))
            for fam, labels in sorted(fams.items(), key=lambda kv: family_key(kv[0]))]


def of_board(df: pd.DataFrame, board: Board) -> pd.DataFrame:
    """The rows of a curve frame (load.curves_frame, kl_dims_frame) that belong to ``board``."""
    return df[(df["dataset"] == board.dataset) & (df["size"] == board.size) & (df["decoder"] == board.decoder)]


def board_plots(board: Board, curve_frame: pd.DataFrame, pal: dict,
                dims_frame: pd.DataFrame | None = None) -> list[tuple[str, str, str, str]]:
    """(title, svg, error, family slug or '') for each plot the board's data supports; ``pal`` keeps colours across
    boards. Curves come one figure per family (the page's family filter hides the others).

    A plot that cannot be drawn (e.g. values matplotlib cannot scale) yields its error instead of losing the page.
    """
    mine = of_board(curve_frame, board)
    mine = mine.assign(label=mine["label"].map(plain))
    scale = next((m.scale for m in board.metrics if m.key.startswith("probe@")), 1.0)
    makers: list[tuple[str, str, Callable[[], Figure | None]]] = [*_family_curves(board, mine, pal),
        ("NLL against MI, Pareto front", "", lambda: pareto(board, pal)),
        *_family_probes(board, pal, scale),
        ("Training time ratio to vanilla", "", lambda: time_ratio(board.runs, pal)),
    ]
    if dims_frame is not None:
        dims = of_board(dims_frame, board)
        makers.append(("Where collapse happens: KL of every latent unit over training (validation subset; rows sorted "
                       "by final KL; first seed; vMF and models without a Gaussian latent record none)", "",
                       lambda: kl_heatmaps(dims, [r.label for r in board.rows])))
    out = []
    with _style():
        for i, (title, family, make) in enumerate(makers):
            try:
                fig = make()
                if fig is not None:
                    out.append((title, to_svg(fig, f"{board.anchor}-{i}"), "", family))
            except (ValueError, TypeError, OverflowError, ArithmeticError) as e:
                out.append((title, "", f"{type(e).__name__}: {e}", family))
    return out
