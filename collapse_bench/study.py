"""The study's tiers as cells (`python -m collapse_bench study`): each tier's methods × boards (dataset, decoder) ×
seeds at its size (config.STUDY_TIERS), into OUT/<tier>/. A method that refuses a board's decoder is left out of
that board with its reason; a method that runs fewer seeds in a tier says why (both are shown by the command)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import registry
from .baseline import VANILLA
from .config import STUDY_TIERS, ConfigError, StudyTier
from .method import ParamError
from .sweep import expand

DEFAULT_DECODER = "lstm"


@dataclass
class TierCells:
    tier: StudyTier
    out: Path
    methods: list[str] = field(default_factory=list)                     # the registry's names, aliases resolved
    specs: list = field(default_factory=list)
    left_out: list[tuple[str, str, str]] = field(default_factory=list)   # (method, board, why)


def board_name(dataset: str, decoder: str) -> str:
    return f"{dataset} × {decoder}"


def _cheapest_first(method: str) -> tuple:
    cls = registry.get(method)
    return method != VANILLA, cls(cls.Params()).cost(), method


def tier_cells(tier: StudyTier, root: Path, seeds: list[int] | None = None, methods: list[str] | None = None,
               **common) -> TierCells:
    """Every cell of a tier, seed-major (all of seed 0's cells first; within a board vanilla first, then the
    cheapest methods first by `Method.cost()`), so that a tier stopped part-way holds whole boards of its first
    seeds and, on the board it stopped in, as many methods as its time allowed. `methods` runs only those of the
    tier's methods (a long tier's cheap cells apart from its dear ones, e.g. on two machines)."""
    names = _tier_methods(tier, methods)
    out = TierCells(tier, root / tier.name, names)
    chosen = list(seeds or tier.seeds)
    for seed in chosen:
        for dataset, decoder in tier.boards:
            settings = {} if decoder == DEFAULT_DECODER else {"model": {"decoder": decoder}}
            for method in sorted(out.methods, key=_cheapest_first):
                if method in tier.fewer_seeds and seed not in tier.fewer_seeds[method][0]:
                    continue
                try:
                    out.specs += expand([method], [dataset], [tier.size], [seed], settings, **common)
                except ParamError as e:          # the method is not defined for this board (its reason)
                    if seed == chosen[0]:
                        out.left_out.append((method, board_name(dataset, decoder), str(e)))
    return out


def _tier_methods(tier: StudyTier, methods: list[str] | None) -> list[str]:
    if methods is None:
        return list(tier.methods)
    names = [registry.get(m).name for m in methods]          # an unknown name: UnknownMethodError, with the list
    outside = [m for m in names if m not in tier.methods]
    if outside:
        raise ConfigError(f"study --methods {outside[0]!r}: not a method of the {tier.name} tier, whose methods are "
                          f"{', '.join(tier.methods)}")
    return names


def study_tiers(names: list[str], root: Path, seeds: list[int] | None = None, methods: list[str] | None = None,
                **common) -> list[TierCells]:
    unknown = [n for n in names if n not in STUDY_TIERS]
    if unknown:
        raise ConfigError(f"study --tier {unknown[0]!r}: the tiers are {', '.join(STUDY_TIERS)} (or all)")
    return [tier_cells(STUDY_TIERS[n], root, seeds, methods, **common) for n in names]
