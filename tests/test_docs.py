"""README.md documents every config key, flag and endpoint, and the CI command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from authproxy.cli.main import build_parser
from authproxy.config.load import config_keys

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", config_keys())
def test_every_config_key_is_documented(key: str) -> None:
    """Each dotted config key appears in README's configuration table."""
    assert f"| `{key}` |" in README


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _flags(sub)
        found |= {o for o in action.option_strings if o.startswith("--")}
    return found - {"--help", "--version"}


@pytest.mark.parametrize("flag", sorted(_flags(build_parser())))
def test_every_flag_is_documented(flag: str) -> None:
    """Each command-line flag is mentioned in README."""
    assert re.search(rf"`[^`]*{re.escape(flag)}\b", README), flag


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs exactly the test command README shows near its top."""
    commands = re.findall(
        r"```sh\n((?:bash \.ci/[a-z-]+ && )?python3 -m venv[^\n]+)\n```", README
    )
    assert len(commands) == 2
    run_proxy, run_tests = commands
    assert run_proxy.endswith("authproxy serve")
    assert run_tests.endswith("pytest")
    assert run_tests in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert README.index(run_tests) < 2500
