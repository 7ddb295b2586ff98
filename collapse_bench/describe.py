"""What `list` and `list METHOD` print about a method, read from the method's own file: its docstring's first
line (`Name (Paper year): what it does`), each Params field's type, default, declared range and meaning
(`method.param`), the search space its `Params.search_space` asks a trial for, its cost relative to vanilla and
the published rows its defaults reproduce (presets.py). No torch is run; the output is deterministic."""
from __future__ import annotations

import dataclasses
import re
import textwrap
import types
import typing
from typing import Any

from . import presets, registry
from .method import Method

TAGS = ("Tags of the paper rows (Zhu et al. 2020's BN-VAE paper, shared/reference/published.md): "
        "`lm:` its language-modelling table (Yahoo, Yelp: NLL, KL, MI, AU); `classification:` its "
        "semi-supervised classification table (short Yelp, accuracy by labelled examples); `time:` its "
        "training-time table (GPU hours, ratio to the VAE); `*` a row the BN-VAE authors ran themselves "
        "(unmarked rows are quoted from He et al. 2019 or Li et al. 2019). Rows of the papers after 2020 name their "
        "paper; their figures are not transcribed, so the report shows none beside them.")
_YEAR = re.compile(r"\(([^()]*\b(?:19|20)\d\d\b[^()]*)\)")
_WIDTH = 100


def tag_legend() -> list[str]:
    return textwrap.wrap(TAGS, _WIDTH)


DECODER_SUMMARIES = {
    "lstm": "He et al.'s LSTM, z joined to every input and c0 = Wz (the default; the protocol's, SGD lr 1 like the "
            "encoder)",
    "cnn": "Yang et al. 2017's dilated causal CNN, residual blocks, z joined to every input "
           "(model.cnn_dilations, default 1,2,4,8,16: receptive field 63); trains with Adam at train.dec_lr (1e-3, "
           "Yang et al.'s), the encoder with the protocol's SGD (train.dec_optimizer=auto; ARCHITECTURE.md)",
    "transformer": "causal pre-norm Transformer from scratch, z as a prefix the attention reads "
                   "(model.tf_z=memory, default) or added to every input (add); trains with Adam at train.dec_lr, "
                   "the encoder with the protocol's SGD (train.dec_optimizer=auto)",
}


def decoder_lines() -> list[str]:
    """What `list` says of the decoder axis."""
    from .config import DECODERS
    return ["Decoders (--set model.decoder=NAME; every method runs with each, sized to equal parameter counts; "
            "each decoder's cells get boards of their own):"] + [f"  {d:12s} {DECODER_SUMMARIES[d]}" for d in DECODERS]


def paper(cls: type[Method]) -> str:
    """The first parenthesis of the docstring's first line that names a year, e.g. 'Zhu et al. 2020'."""
    found = _YEAR.search(cls.description())
    return found.group(1) if found else "none named in its docstring's first line"


def summary(cls: type[Method]) -> str:
    """What the method does: the first line after its `Name (Paper year): ` prefix."""
    line = cls.description()
    head, sep, rest = line.partition("): ")
    if sep and "(" in head:
        return rest
    return line.partition(": ")[2] or line


def default_rows(name: str) -> list[str]:
    """`rows (run it with --presets P)` of every preset whose params are the method's defaults."""
    defaults = registry.get(name).Params().to_dict()
    return [f"{'; '.join(p.rows)} (run it with --presets {p.name})" for p in presets.PRESETS.values()
            if p.method == name and p.method_params() == defaults]


def other_presets(name: str) -> list[str]:
    defaults = registry.get(name).Params().to_dict()
    return [f"{p.name} ({', '.join(f'{k}={v!r}' for k, v in p.params.items())}): {'; '.join(p.rows)}"
            for p in presets.PRESETS.values() if p.method == name and p.method_params() != defaults]


# --- parameters -----------------------------------------------------------------------------------------
def _options(hint: Any) -> tuple[Any, ...]:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)


def type_name(hint: Any) -> str:
    names = []
    for t in _options(hint):
        if t is type(None):
            continue
        names.append("str" if typing.get_origin(t) is typing.Literal else getattr(t, "__name__", str(t)))
    return " or ".join(names) + (" or none" if type(None) in _options(hint) else "")


def _range(meta: dict[str, Any]) -> str:
    lo = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["le"]) if "le" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"{lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {lo[1]:g}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {hi[1]:g}"
    return ""


def allowed(hint: Any, meta: dict[str, Any]) -> str:
    """The values a field accepts: its Literal choices, true/false, or its declared range (+ none if optional)."""
    options = _options(hint)
    choices = [v for t in options if typing.get_origin(t) is typing.Literal for v in typing.get_args(t)]
    if choices:
        text = " | ".join(map(repr, choices))
    elif bool in options:
        text = "true | false"
    else:
        text = _range(meta) or "any"
    return f"{text}, or none" if type(None) in options else text


@dataclasses.dataclass(frozen=True)
class ParamDoc:
    name: str
    type: str
    default: Any
    allowed: str
    meaning: str


def param_docs(cls: type[Method]) -> list[ParamDoc]:
    hints = typing.get_type_hints(cls.Params)
    return [ParamDoc(f.name, type_name(hints[f.name]), f.default, allowed(hints[f.name], dict(f.metadata)),
                     str(f.metadata.get("help", "")))
            for f in dataclasses.fields(cls.Params)]


# --- search space and cost -------------------------------------------------------------------------------
class RecordingTrial:
    """Stands in for an Optuna trial: records what `Params.search_space` asks for, answering each with its low
    end (or first choice)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        self.asked.append((name, f"float in [{low:g}, {high:g}]" + (", log scale" if log else "")
                           + (f", step {step:g}" if step else "")))
        return low

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        self.asked.append((name, f"int in [{low}, {high}]" + (", log scale" if log else "")
                           + (f", step {step}" if step != 1 else "")))
        return low

    def suggest_categorical(self, name: str, choices: typing.Sequence[Any]) -> Any:
        self.asked.append((name, f"one of {', '.join(map(repr, choices))}"))
        return choices[0]


def search_space(cls: type[Method]) -> list[tuple[str, str]]:
    """(parameter, range) for each value `Params.search_space` draws, in its order."""
    trial = RecordingTrial()
    cls.Params.search_space(trial)
    return trial.asked


def cost(cls: type[Method]) -> str:
    """Training cost over vanilla's: `Method.cost()` with the defaults (and with pretrain='ae' where it differs)."""
    total = cls().cost()
    text = f"about {total:g}× vanilla's training time with its defaults (relative_cost {cls.relative_cost:g}"
    if total != cls.relative_cost:
        text += f", + {total - cls.relative_cost:g} for the AE run of pretrain='ae'"
    elif "pretrain" in {f.name for f in dataclasses.fields(cls.Params)}:
        text += f"; {cls(cls.Params(pretrain='ae')).cost():g}× with pretrain='ae', which trains an AE first"
    return text + ")"


# --- the page ---------------------------------------------------------------------------------------------
def _block(label: str, lines: list[str]) -> list[str]:
    """`label` in a 16-column margin before the first line, the margin before the others."""
    return [f"  {label:14s}{line}" if i == 0 else f"{'':16s}{line}" for i, line in enumerate(lines or [""])]


def _params_block(cls: type[Method]) -> list[str]:
    docs = param_docs(cls)
    if not docs:
        return _block("parameters:", ["none"])
    width = max(len(d.name) for d in docs) + 2
    out = _block("parameters:", [f"--set {cls.name}.NAME=VALUE"])
    for d in docs:
        out.append(f"    {d.name:{width}s}{d.type}, default {d.default!r}, allowed: {d.allowed}")
        out += [f"    {'':{width}s}{line}" for line in textwrap.wrap(d.meaning, _WIDTH - 4 - width)]
    return out


def _space_block(cls: type[Method]) -> list[str]:
    try:
        asked = search_space(cls)
    except Exception as e:  # noqa: BLE001 - a search space that wants a real Optuna trial is still listed
        return _block("search space:", [f"could not be read ({type(e).__name__}: {e})"])
    if not asked:
        return _block("search space:", ["none: nothing to tune (`tune` refuses this method)"])
    width = max(len(n) for n, _ in asked) + 2
    return _block("search space:", [f"tune --method {cls.name}"]) + [f"    {n:{width}s}{r}" for n, r in asked]


def describe(name: str) -> str:
    """`list METHOD`: paper, what it does, parameters, search space, cost, the paper rows of its presets."""
    cls = registry.get(name)
    alias = f" (aliases: {', '.join(cls.aliases)})" if cls.aliases else ""
    rows, others = default_rows(cls.name), other_presets(cls.name)
    lines = [f"{cls.name}{alias}", *_block("paper:", [paper(cls)]),
             *_block("what it does:", [*textwrap.wrap(summary(cls), _WIDTH - 16, max_lines=2, placeholder=" …",
                                                     break_on_hyphens=False),
                                       f"(details: the docstring of {cls.__module__}.{cls.__qualname__})"]),
             *_params_block(cls), *_space_block(cls), *_block("cost:", textwrap.wrap(cost(cls), _WIDTH - 16)),
             *_block("paper row:", [f"its defaults reproduce {r}" for r in rows] or
                     ["none: no published row uses its defaults" + ("; see its presets below" if others else "")])]
    if others:
        lines += _block("presets:", others)
    if rows or others:
        lines += [""] + tag_legend()
    return "\n".join(lines)
