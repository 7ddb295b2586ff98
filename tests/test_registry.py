"""The method registry: who may register, and loading that survives a broken method file or plug-in."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from collapse_bench import registry
from collapse_bench.cli import main
from collapse_bench.method import Method

STATE = ("_METHODS", "_ALIASES", "_UNAVAILABLE", "_UNAVAILABLE_NAMES")
PREFIX = "cb_regtest_"     # every module these tests write; removed from sys.modules after each test


@pytest.fixture(autouse=True)
def restored_registry() -> Iterator[None]:
    """The registry loaded as every command sees it, and put back as it was after the test."""
    registry.names()
    saved = {name: dict(getattr(registry, name)) for name in STATE}
    loaded = registry._loaded
    yield
    for name, content in saved.items():
        getattr(registry, name).clear()
        getattr(registry, name).update(content)
    registry._loaded = loaded
    for mod in [m for m in sys.modules if m.startswith(PREFIX)]:
        del sys.modules[mod]


@dataclass(frozen=True)
class FakeEntryPoint:
    """What plugin_sources reads of an importlib.metadata.EntryPoint."""

    name: str
    value: str
    load: Callable[[], object]


def plugins(monkeypatch: pytest.MonkeyPatch, folder: Path, files: dict[str, str]) -> list[str]:
    """Write ``files`` (entry-point name -> module source) as plug-in modules and declare them as the entry-point
    group's only members; the registry loads afresh on its next use. Returns their origins."""
    import importlib
    monkeypatch.syspath_prepend(str(folder))
    eps = []
    for ep_name, source in files.items():
        module = PREFIX + ep_name.replace("-", "_")
        (folder / f"{module}.py").write_text(source, encoding="utf-8")
        eps.append(FakeEntryPoint(ep_name, module, lambda module=module: importlib.import_module(module)))
    monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_loaded", False)
    return [f"entry point {ep.name} = {ep.value}" for ep in eps]


HEADER = "from collapse_bench.method import Method\nfrom collapse_bench.registry import register\n\n"
BROKEN = HEADER + "@register('cb-half')\nclass Half(Method):\n    '''Registered, then its module fails.'''\n\n" \
                  "raise RuntimeError('boom at import')\n"
SHADOW = HEADER + "@register('bnvae')\nclass BNVAE(Method):\n    '''Same name, same qualname as the real one.'''\n"
SYNTAX = "def broken(:\n"


def test_a_class_with_the_same_qualname_cannot_shadow_a_method() -> None:
    real = registry.get("bnvae")

    class BNVAE(Method):
        """A look-alike."""

    BNVAE.__qualname__ = real.__qualname__
    with pytest.raises(ValueError) as e:
        registry.register("bnvae")(BNVAE)
    assert isinstance(e.value, registry.RegistrationError)
    message = str(e.value)
    assert "collapse_bench.methods.bnvae.BNVAE" in message and str(Path("methods", "bnvae.py")) in message
    assert f"{__name__}.BNVAE" in message and __file__ in message
    assert registry.get("bnvae") is real and real.name == "bnvae"


def test_any_second_registration_of_a_name_or_alias_is_refused() -> None:
    class Other(Method):
        """Wants an alias that BN-VAE has."""

    with pytest.raises(ValueError, match="'bn-vae' is already registered by .*BNVAE"):
        registry.register("cb-other", aliases=("bn-vae",))(Other)
    with pytest.raises(ValueError, match="'vae' is already registered by .*Vanilla"):
        registry.register("vae")(Other)
    assert "cb-other" not in registry.names()


def test_the_same_class_again_is_not_a_second_registration() -> None:
    real = registry.get("vanilla")
    assert registry.register("vanilla", aliases=("vae",))(real) is real
    assert registry.get("vae") is real


def test_only_method_subclasses_can_register() -> None:
    class NotAMethod:
        """No Method base."""

    with pytest.raises(TypeError, match=r"NotAMethod.*derive it from Method"):
        registry.register("cb-not-a-method")(NotAMethod)
    with pytest.raises(TypeError, match="subclass of collapse_bench.method.Method"):
        registry.register("cb-function")(lambda: None)
    assert "cb-not-a-method" not in registry.names()


def test_broken_plugins_leave_every_other_method_working_and_are_reported_once(tmp_path, monkeypatch,
                                                                               capsys) -> None:
    builtin = registry.names()
    broken, shadow, syntax = plugins(monkeypatch, tmp_path, {"cb-broken": BROKEN, "cb-shadow": SHADOW,
                                                             "cb-syntax": SYNTAX})
    assert registry.names() == builtin                         # cb-half, registered before the raise, is undone
    assert registry.get("bnvae").__module__ == "collapse_bench.methods.bnvae"
    found = registry.unavailable()
    assert found[broken] == "RuntimeError: boom at import"
    assert found[shadow].startswith("RegistrationError: method name 'bnvae' is already registered by "
                                    "collapse_bench.methods.bnvae.BNVAE")
    assert found[syntax].startswith("SyntaxError: ")
    err = capsys.readouterr().err.splitlines()
    assert [sum(origin in line for line in err) for origin in (broken, shadow, syntax)] == [1, 1, 1]
    monkeypatch.setattr(registry, "_loaded", False)            # a second loading pass: retried, not reported again
    assert registry.names() == builtin and registry.unavailable() == found
    assert capsys.readouterr().err == ""
    with pytest.raises(registry.MethodUnavailableError) as e:
        registry.get("cb-half")
    assert str(e.value) == f"method 'cb-half' is unavailable: {broken} failed to import: RuntimeError: boom at import"
    with pytest.raises(registry.UnknownMethodError, match=f"'cb-syntax' is unavailable: {syntax} failed"):
        registry.get("cb-syntax")


def test_run_and_list_work_beside_a_broken_plugin(tmp_path, monkeypatch, capsys) -> None:
    (broken,) = plugins(monkeypatch, tmp_path, {"cb-broken": BROKEN})
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ae ") and "\nvanilla " in out
    assert f"unavailable: {broken}: RuntimeError: boom at import\n" in out
    assert main(["run", "--methods", "vanilla", "--size", "smoke", "--set", "train.epochs=1", "--executor", "serial",
                 "--no-report", "--out", str(tmp_path / "run")]) == 0
    (result,) = [json.loads(f.read_text()) for f in (tmp_path / "run" / "results").glob("*.json")]
    assert result["method"] == "vanilla" and result["status"] == "ok"


def test_a_broken_module_of_the_methods_package_is_isolated(tmp_path, monkeypatch) -> None:
    """The built-in path: every public module of a package loads on its own; private helpers are not loaded."""
    import importlib
    package = tmp_path / f"{PREFIX}methods"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text(HEADER + "@register('cb-good')\nclass Good(Method):\n    '''Fine.'''\n")
    (package / "cb_gone.py").write_text("import cb_regtest_no_such_module\n")
    (package / "_helper.py").write_text("raise RuntimeError('a helper is imported by its users only')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    warnings: list[str] = []
    sources = registry.module_sources(importlib.import_module(package.name))
    assert [s.origin for s in sources] == [f"{package.name}/cb_gone.py", f"{package.name}/good.py"]
    registry.load_sources(sources, warn=warnings.append)
    assert registry.get("cb-good").description() == "Fine."
    origin = f"{package.name}/cb_gone.py"
    assert registry.unavailable()[origin] == "ModuleNotFoundError: No module named 'cb_regtest_no_such_module'"
    assert len(warnings) == 1 and origin in warnings[0]
    with pytest.raises(registry.MethodUnavailableError, match=f"'cb-gone' is unavailable: {origin} failed to import"):
        registry.get("cb-gone")


def test_loaded_is_set_only_when_the_loading_pass_completes(tmp_path, monkeypatch) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEntryPoint("cb-stop", "cb_stop", interrupted)])
    monkeypatch.setattr(registry, "_loaded", False)
    with pytest.raises(KeyboardInterrupt):
        registry.names()
    assert registry._loaded is False
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    assert "vanilla" in registry.names() and registry._loaded is True
