"""The docs cover every config key, flag and endpoint, the CI command, and their links.

README.md holds the quick start and a table of contents; the topics live in docs/*.md.
The quick start's commands (serve with --upstream/--listen, the $TOKEN calls, the
$ADMIN_TOKEN call) run as written against the fake Ollama, and the defaults it names
are the built-in ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestServer

from authproxy.admin.app import create_admin_app
from authproxy.cli.main import build_parser, main
from authproxy.config.load import config_keys, load_config
from authproxy.web.app import create_app
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import CHEAP_ARGON2
from tests.support.logs import Secrets
from tests.support.serving import ServeProcess, first_token

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


# --------------------------------------------------- README's quick start, run
#
# The commands README's quick start adds beyond installing: serve with --upstream
# and --listen, the calls with $TOKEN, the admin call with $ADMIN_TOKEN. They run
# as written from a directory whose .venv is this one; only the addresses change,
# to the fake Ollama and to free ports.

QUICK_START = README[README.index("## Quick start") : README.index("## Clients")]
SERVE_ELSEWHERE = (
    ".venv/bin/authproxy serve --upstream http://gpu-box:11434 --listen 0.0.0.0:8080"
)


def _block_with(text: str) -> str:
    """Return the one shell block of the quick start that contains ``text``."""
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", QUICK_START, re.DOTALL)
    (block,) = [b for b in blocks if text in b]
    return block


def test_quick_start_names_the_real_defaults() -> None:
    """The addresses the quick start promises are the built-in defaults."""
    config = load_config()
    prose = " ".join(QUICK_START.split())
    listen = f"{config.listen.host}:{config.listen.port}"
    assert f"It listens on `{listen}` and forwards to `{config.upstream.url}`" in prose
    assert f"listens on `{config.admin.listen}`, this machine only" in prose
    assert f"http://{listen}/api/tags" in _block_with("export TOKEN=")
    assert f"http://{config.admin.listen}/admin/keys" in _block_with("ADMIN_TOKEN")


def test_quick_start_serve_flags_do_what_it_says(capsys, monkeypatch) -> None:
    """README's serve flags, given to check-config as it says, set those settings."""
    for name in [n for n in os.environ if n.startswith("AUTHPROXY_")]:
        monkeypatch.delenv(name)
    assert _block_with("--upstream").strip() == SERVE_ELSEWHERE
    flags = shlex.split(SERVE_ELSEWHERE)[2:]
    assert main(["check-config", *flags]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["upstream"]["url"] == "http://gpu-box:11434"
    assert data["listen"] == {"host": "0.0.0.0", "port": 8080}


def test_admin_snippets_define_admin_token_before_use() -> None:
    """Every shell block that uses $ADMIN_TOKEN sets it first, in README and docs/."""
    blocks = re.findall(r"```sh\n(.*?)```", ALL_DOCS, re.DOTALL)
    using = [b for b in blocks if "$ADMIN_TOKEN" in b]
    assert len(using) >= 2
    for block in using:
        defined = block.find("ADMIN_TOKEN=$(")
        assert -1 < defined < block.index("$ADMIN_TOKEN"), block


async def test_quick_start_commands_run(
    tmp_path: Path, upstream: TestServer, fake: FakeOllama, secrets_seen: Secrets
) -> None:
    """README's serve line, its $TOKEN calls and its $ADMIN_TOKEN call work as shown."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHPROXY_")}
    env |= {
        "AUTHPROXY_" + key.upper().replace(".", "_"): str(value)
        for key, value in CHEAP_ARGON2.items()
    }
    env |= {
        "PYTHONUNBUFFERED": "1",
        "AUTHPROXY_LOG_FORMAT": "json",
        "AUTHPROXY_ADMIN_LISTEN": "127.0.0.1:0",  # README's 11436 may be taken here
    }
    fake_url = str(upstream.make_url("")).rstrip("/")
    command = SERVE_ELSEWHERE.replace("http://gpu-box:11434", fake_url)
    command = command.replace("0.0.0.0:8080", "127.0.0.1:0")
    proc = await asyncio.create_subprocess_exec(
        *shlex.split(command),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    server = ServeProcess(proc, timeout=15)
    try:
        await server.until_started()
        token = first_token(server)
        secrets_seen.add(token)
        admin = server.started["admin"][0]
        script = _block_with("export TOKEN=") + _block_with("export ADMIN_TOKEN=")
        script = script.replace("ap_...", token)
        script = script.replace("127.0.0.1:11435", f"127.0.0.1:{server.port}")
        script = script.replace("127.0.0.1:11436", admin)
        shell = await asyncio.create_subprocess_exec(
            *("bash", "-euo", "pipefail", "-c", script),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await shell.communicate()
        assert shell.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert [(r.method, r.path_qs) for r in fake.received] == [
        ("GET", "/api/tags"),
        ("POST", "/api/chat"),
    ]
    assert all("Authorization" not in r.headers for r in fake.received)
    # Three replies, each without a final newline: tags, the chat stream, the keys.
    text = out.decode()
    assert text.startswith('{"models":')
    assert b"".join(fake.sent).decode() in text
    keys = json.loads(text[text.rindex('{"keys":') :])
    assert [k["name"] for k in keys["keys"]] == ["default"]
