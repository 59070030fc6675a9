"""The docs cover every config key, flag and endpoint, the CI command, and their links.

README.md holds the quick start and a table of contents; the topics live in docs/*.md.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from authproxy.admin.app import create_admin_app
from authproxy.cli.main import build_parser
from authproxy.config.load import config_keys, load_config
from authproxy.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = sorted((ROOT / "docs").glob("*.md"))
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
ALL_DOCS = "\n".join([README, *(p.read_text(encoding="utf-8") for p in PAGES)])
# Every markdown file a reader can follow a link from: README, docs/, and the
# README of each directory (compose/, deploy/kubernetes/, keys/, bench/).
LINKED_FILES = sorted(
    {ROOT / "README.md", *PAGES}
    | {
        p
        for p in [*ROOT.glob("*/README.md"), *ROOT.glob("*/*/README.md")]
        if not p.relative_to(ROOT).parts[0].startswith(".")
    }
)

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _prose(text: str) -> str:
    """Return markdown without fenced blocks and code spans (they hold no links)."""
    return _CODE_SPAN.sub("code", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """Return GitHub's anchor for a heading's text, without the duplicate suffix."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _headings(path: Path) -> list[tuple[int, str]]:
    """Return (level, anchor) for each heading of a markdown file, GitHub style."""
    found: list[tuple[int, str]] = []
    seen: set[str] = set()
    for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"(#{1,6})\s+(.*?)(?:\s+#+)?\s*$", line)
        if heading is None:
            continue
        slug = _slug(heading.group(2))
        anchor, n = slug, 0
        while anchor in seen:
            n += 1
            anchor = f"{slug}-{n}"
        seen.add(anchor)
        found.append((len(heading.group(1)), anchor))
    return found


def _anchors(path: Path) -> set[str]:
    """Return the set of heading anchors of a markdown file."""
    return {anchor for _, anchor in _headings(path)}


def _relative_links(path: Path) -> list[str]:
    """Return the link targets in a markdown file that point inside the repository."""
    targets = _LINK.findall(_prose(path.read_text(encoding="utf-8")))
    return [t for t in targets if not _SCHEME.match(t)]


@pytest.mark.parametrize("key", config_keys())
def test_every_config_key_is_documented(key: str) -> None:
    """Each dotted config key appears in the table of docs/configuration.md."""
    assert f"| `{key}` |" in CONFIGURATION


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
    """Each command-line flag is mentioned in README.md or a page of docs/."""
    assert re.search(rf"`[^`]*{re.escape(flag)}\b", ALL_DOCS), flag


def test_every_endpoint_is_documented() -> None:
    """Each route of the proxy and of the admin API is named in the docs."""
    proxy = create_app(load_config())
    routes = [*proxy.router.routes(), *create_admin_app(proxy).router.routes()]
    endpoints = {
        f"{route.method} {route.resource.canonical}"
        for route in routes
        # HEAD mirrors GET; "*" is the catch-all that forwards to Ollama.
        if route.method not in {"HEAD", "*"} and route.resource is not None
    }
    assert len(endpoints) >= 12
    assert sorted(e for e in endpoints if f"`{e}`" not in ALL_DOCS) == []


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


@pytest.mark.parametrize(
    "path", LINKED_FILES, ids=[str(p.relative_to(ROOT)) for p in LINKED_FILES]
)
def test_relative_links_resolve(path: Path) -> None:
    """Each relative link names an existing file and, with #anchor, a heading in it."""
    broken = []
    for target in _relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        anchored = anchor != "" and dest.suffix == ".md"
        if not dest.exists() or (anchored and anchor not in _anchors(dest)):
            broken.append(target)
    assert broken == []


def test_readme_links_every_page_and_its_sections() -> None:
    """README's table of contents links each docs page and each of its ## sections."""
    links = set(_relative_links(ROOT / "README.md"))
    wanted = []
    for page in PAGES:
        wanted.append(f"docs/{page.name}")
        wanted += [f"docs/{page.name}#{a}" for n, a in _headings(page) if n == 2]
    assert len(wanted) > 2 * len(PAGES) > 0
    assert [w for w in wanted if w not in links] == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("`authproxy serve` flags", "authproxy-serve-flags"),
        ("Limits and their defaults", "limits-and-their-defaults"),
        ("Docs: what's where?", "docs-whats-where"),
        ("[The store](keys.md) and *JWTs*", "the-store-and-jwts"),
    ],
)
def test_anchor_rule_matches_github(heading: str, anchor: str) -> None:
    """Anchors are lower-case, spaces become '-', punctuation and backticks go."""
    assert _slug(heading) == anchor


def test_duplicate_headings_get_numbered_anchors(tmp_path: Path) -> None:
    """A repeated heading gets -1, -2 as on GitHub; code blocks hold no headings."""
    page = tmp_path / "page.md"
    page.write_text("# A\n## Notes\n```sh\n# not a heading\n```\n## Notes\n")
    assert _headings(page) == [(1, "a"), (2, "notes"), (2, "notes-1")]
