"""Method registry: decorator registration, aliases, did-you-mean errors, and the loading of the methods.

The built-in methods (every public module of collapse_bench.methods, i.e. the top-level methods/ folder) and the
entry-point plug-ins (group ``collapse_bench.methods``) each load in isolation: one that fails to import, or
whose registration is refused, is reported once on stderr, listed by ``unavailable()`` (and `collapse-bench
list`), and takes away only its own methods.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from .baseline import VANILLA
from .method import Method

__all__ = ["ENTRY_POINT_GROUP", "VANILLA", "MethodUnavailableError", "RegistrationError", "Source",
           "UnknownMethodError", "get", "load_sources", "module_sources", "names", "plugin_sources", "register",
           "unavailable"]

ENTRY_POINT_GROUP = "collapse_bench.methods"

_METHODS: dict[str, type[Method]] = {}
_ALIASES: dict[str, str] = {}
_UNAVAILABLE: dict[str, str] = {}          # origin (file or entry point) -> why it did not load
_UNAVAILABLE_NAMES: dict[str, str] = {}    # method name an unavailable origin would give -> that origin
_loaded = False
_loading = False


class UnknownMethodError(KeyError):
    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class MethodUnavailableError(UnknownMethodError):
    """The method's file (or plug-in) failed to load."""


class RegistrationError(ValueError):
    """A second registration of a name or alias."""


@dataclass(frozen=True)
class Source:
    """One loadable unit of methods: a module of methods/ or an entry-point plug-in."""

    origin: str                  # what a person fixes: "methods/x.py" or "entry point x = pkg.mod"
    load: Callable[[], object]   # imports it (its @register decorators run)
    names: tuple[str, ...] = ()  # method names it probably gives, for get()'s message when it fails


def _where(cls: type) -> str:
    file = getattr(sys.modules.get(cls.__module__), "__file__", None) or "no file"
    return f"{cls.__module__}.{cls.__qualname__} ({file})"


def _owner(key: str) -> type[Method] | None:
    return _METHODS.get(key) or _METHODS.get(_ALIASES.get(key, ""))


def _check_new(name: str, aliases: tuple[str, ...], cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        what = f"{cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else repr(cls)
        raise TypeError(f"@register({name!r}) takes a subclass of collapse_bench.method.Method, got {what}: "
                        f"derive it from Method")
    for key in (name, *aliases):
        owner = _owner(key)
        if owner is not None and owner is not cls:
            raise RegistrationError(f"method name {key!r} is already registered by {_where(owner)}; refused for "
                                    f"{_where(cls)}: rename one of the two (names and aliases are unique)")
    if cls in _METHODS.values() and _METHODS.get(name) is not cls:
        raise RegistrationError(f"{_where(cls)} is already registered as {cls.name!r}; refused as {name!r}: "
                                f"register it once, with aliases for its other names")


def register(name: str, aliases: tuple[str, ...] = ()) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a Method subclass under ``name`` and ``aliases``.

    Registering the very same class again (its module imported twice) changes nothing; any other class under a
    registered name or alias is refused with both origins named."""
    def deco(cls: type[Method]) -> type[Method]:
        _check_new(name, tuple(aliases), cls)
        cls.name = name
        cls.aliases = tuple(aliases)
        _METHODS[name] = cls
        for a in aliases:
            _ALIASES[a] = name
        return cls
    return deco


def module_sources(package: ModuleType) -> list[Source]:
    """Every public module of ``package`` (private ``_``-prefixed helpers are imported by the modules using them)."""
    out = []
    for mod in pkgutil.iter_modules(package.__path__):
        if mod.name.startswith("_"):
            continue
        folder = Path(getattr(mod.module_finder, "path", package.__path__[0])).name
        origin = f"{folder}/{mod.name}/" if mod.ispkg else f"{folder}/{mod.name}.py"
        full = f"{package.__name__}.{mod.name}"
        out.append(Source(origin, lambda full=full: importlib.import_module(full),
                          (mod.name, mod.name.replace("_", "-"))))
    return out


def plugin_sources() -> list[Source]:
    """The third-party packages' methods, declared in the entry-point group ``collapse_bench.methods``."""
    return [Source(f"entry point {ep.name} = {ep.value}", ep.load, (ep.name,))
            for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _drop_registered_by_failed_imports(before: set[str]) -> list[str]:
    """Undo the registrations of modules whose import failed (Python removes them from sys.modules), so that a
    retry of the import is not refused as a second registration; modules they imported that loaded stay."""
    lost = [n for n in set(_METHODS) - before if _METHODS[n].__module__ not in sys.modules]
    for n in lost:
        del _METHODS[n]
    for a in [a for a, n in _ALIASES.items() if n in lost]:
        del _ALIASES[a]
    return lost


def _warn(line: str) -> None:
    print(f"collapse-bench: warning: {line}", file=sys.stderr)


def _record_failure(source: Source, error: Exception, lost: list[str], warn: Callable[[str], None]) -> None:
    why = " ".join(f"{type(error).__name__}: {error}".split())   # one line
    if _UNAVAILABLE.get(source.origin) != why:                   # reported once
        warn(f"{source.origin} failed to import, its methods are unavailable (the others work): {why}")
    _UNAVAILABLE[source.origin] = why
    for n in (*lost, *source.names):
        _UNAVAILABLE_NAMES[n] = source.origin


def load_sources(sources: Iterable[Source], warn: Callable[[str], None] = _warn) -> None:
    """Load each source in isolation: one that raises (ImportError, SyntaxError, a refused registration, any
    exception at import) is recorded in ``unavailable()`` and reported once through ``warn``; the rest load."""
    for source in sources:
        before = set(_METHODS)
        try:
            source.load()
        except Exception as e:  # noqa: BLE001 - any failure of one plug-in must leave the others working
            _record_failure(source, e, _drop_registered_by_failed_imports(before), warn)
        else:
            _UNAVAILABLE.pop(source.origin, None)
            for n in [n for n, o in _UNAVAILABLE_NAMES.items() if o == source.origin]:
                del _UNAVAILABLE_NAMES[n]


def _load_all() -> None:
    global _loaded, _loading
    if _loaded or _loading:   # _loading: a module that asks the registry while it is imported sees it as it is
        return
    _loading = True
    try:
        from . import methods
        load_sources([*module_sources(methods), *plugin_sources()])
        _loaded = True
    finally:
        _loading = False


def names() -> list[str]:
    _load_all()
    return sorted(_METHODS)


def unavailable() -> dict[str, str]:
    """Origin (methods/x.py, or an entry point) -> why it failed to load, for every method source that did."""
    _load_all()
    return dict(_UNAVAILABLE)


def get(name: str) -> type[Method]:
    _load_all()
    key = _ALIASES.get(name, name)
    if key in _METHODS:
        return _METHODS[key]
    origin = _UNAVAILABLE_NAMES.get(name)
    if origin is not None:
        raise MethodUnavailableError(f"method {name!r} is unavailable: {origin} failed to import: "
                                     f"{_UNAVAILABLE[origin]}")
    known = sorted(_METHODS)
    close = difflib.get_close_matches(name, known + sorted(_ALIASES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    broken = f" Failed to load: {', '.join(_UNAVAILABLE)}." if _UNAVAILABLE else ""
    raise UnknownMethodError(f"unknown method {name!r}.{hint} Known methods: {', '.join(known)}.{broken}")
