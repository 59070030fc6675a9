"""The house rules: packages by concern, one-way imports, light low modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "authproxy"
# docs/architecture.md: a package may import its own modules and those of
# packages ranked below it; policy may use keys' record (scope names), and
# keys the Redis connection of state.
RANK = {
    "errors": 0,
    "times": 1,
    "files": 1,
    "memo": 1,
    "tasks": 1,
    "responses": 1,
    "config": 2,
    "keys": 3,
    "policy": 3,
    "state": 3,
    "auth": 4,
    "metering": 5,
    "limits": 6,
    "proxy": 6,
    "web": 7,
    "admin": 8,
    "console": 9,
    "server": 10,
    "cli": 11,
}
SIDEWAYS = {("policy", "keys"), ("keys", "state")}
HEAVY = ("argon2", "jwt", "yaml", "prometheus_client", "zstandard")
LIGHT = [
    "errors",
    "times",
    "files",
    "memo",
    "responses",
    "config.model",
    "config.schema",
    "policy.routes",
    "policy.names",
    "policy.rules",
    "keys.record",
    "auth.principal",
    "auth.credentials",
    "metering.bounds",
    "metering.chain",
    "metering.exchange",
    "metering.usage",
    "proxy.headers",
    "proxy.jsonbody",
    "proxy.formbody",
    "proxy.replypoll",
]
APP_KEY_LAYERS = {"web", "admin", "console", "server", "cli"}


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(path: Path) -> list[tuple[str, bool]]:
    """The authproxy modules a file imports, each with whether it is guarded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "authproxy"
        ):
            found.append((str(node.module), id(node) in guarded))
        elif isinstance(node, ast.Import):
            found += [
                (alias.name, id(node) in guarded)
                for alias in node.names
                if alias.name.startswith("authproxy")
            ]
    return found


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_says_what_it_is_for_and_may_import() -> None:
    """Each subpackage's __init__ has a docstring naming what it may import."""
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, init
        assert "May import" in doc, init


def test_imports_flow_one_way() -> None:
    """A module imports only its own package and packages ranked below it."""
    wrong = []
    for name, path in modules().items():
        own = package_of(name)
        if own not in RANK:
            continue  # __init__ and __main__ of the top package
        for target, _ in imports(path):
            other = package_of(target)
            if other in {"", "__version__"} or other == own:
                continue
            if RANK[other] > RANK[own] or (
                RANK[other] == RANK[own] and (own, other) not in SIDEWAYS
            ):
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_no_type_checking_detours() -> None:
    """No module hides an import of authproxy behind TYPE_CHECKING."""
    hidden = [
        f"{name} -> {target}"
        for name, path in modules().items()
        for target, guarded in imports(path)
        if guarded
    ]
    assert hidden == []


def test_no_import_cycle() -> None:
    """The module import graph has no cycle."""
    graph = {
        name: {t for t, _ in imports(path) if t != name}
        for name, path in modules().items()
    }
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        pytest.fail(f"import cycle: {err.args[1]}")


def test_only_the_top_layers_know_application_keys() -> None:
    """web.appkeys is imported by web, admin, console, server and cli only."""
    users = {
        package_of(name)
        for name, path in modules().items()
        if any(t == "authproxy.web.appkeys" for t, _ in imports(path))
    }
    assert users <= APP_KEY_LAYERS


@pytest.mark.parametrize("module", LIGHT)
def test_low_modules_import_nothing_heavy(module: str) -> None:
    """Importing a low module loads none of argon2, PyJWT, PyYAML, ..."""
    probe = (
        "import importlib, sys\n"
        f"importlib.import_module('authproxy.{module}')\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_modules_stay_small() -> None:
    """No module grows far past the house's 300 lines."""
    big = {
        name: lines
        for name, path in modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 330
    }
    assert big == {}


def test_every_module_has_a_test_file_of_its_name() -> None:
    """authproxy/<package>/<module>.py is tested in tests/<package>/test_<module>.py."""
    tests = Path(__file__).resolve().parent
    missing = [
        name
        for name, path in modules().items()
        if path.name not in {"__init__.py", "__main__.py"}
        and not (
            tests / path.parent.relative_to(PACKAGE) / f"test_{path.stem}.py"
        ).exists()
    ]
    assert missing == []
