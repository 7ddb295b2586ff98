"""Method registry: decorator registration, aliases, did-you-mean errors, entry-point plug-ins."""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .method import Method

ENTRY_POINT_GROUP = "collapse_bench.methods"
VANILLA = "vanilla"      # the baseline every sweep and the report compare with

_METHODS: dict[str, type["Method"]] = {}
_ALIASES: dict[str, str] = {}
_loaded = False


class UnknownMethodError(KeyError):
    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def register(name: str, aliases: tuple[str, ...] = ()) -> Callable[[type["Method"]], type["Method"]]:
    def deco(cls: type["Method"]) -> type["Method"]:
        for key in (name, *aliases):
            owner = _METHODS.get(key) or _METHODS.get(_ALIASES.get(key, ""))
            if owner is not None and owner is not cls and owner.__qualname__ != cls.__qualname__:
                raise ValueError(f"method name {key!r} is already registered by {owner.__module__}.{owner.__qualname__}")
        cls.name = name
        cls.aliases = tuple(aliases)
        _METHODS[name] = cls
        for a in aliases:
            _ALIASES[a] = name
        return cls
    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import methods
    for mod in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"{methods.__name__}.{mod.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()  # importing the module runs its @register


def names() -> list[str]:
    _load_all()
    return sorted(_METHODS)


def get(name: str) -> type["Method"]:
    _load_all()
    key = _ALIASES.get(name, name)
    if key in _METHODS:
        return _METHODS[key]
    known = sorted(_METHODS)
    close = difflib.get_close_matches(name, known + sorted(_ALIASES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownMethodError(f"unknown method {name!r}.{hint} Known methods: {', '.join(known)}.")
