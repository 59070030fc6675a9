"""authproxy as the system under test: keys from its CLI, config from env vars."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.procs import HOST, Proc

BIN = Path(sys.executable).with_name("authproxy")


@dataclass(frozen=True, slots=True)
class Key:
    """A key created for the run; ``token`` is only ever sent to 127.0.0.1."""

    id: str
    name: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        """Return the ``Authorization: Bearer`` header."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def basic(self) -> dict[str, str]:
        """Return the ``Authorization: Basic`` header (name:token)."""
        raw = base64.b64encode(f"{self.name}:{self.token}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}


def create_key(
    keys_file: Path, name: str, password: str | None = None, *flags: str
) -> Key:
    """Create a key with ``authproxy keys create NAME --json``.

    With ``password``, a Basic-only password key (``--password-stdin``); its
    ``token`` is then the password. ``flags`` go to ``keys create`` (limits).
    """
    command = [str(BIN), "keys", "create", name, "--json", "--keys", str(keys_file)]
    command += flags
    if password is not None:
        command.append("--password-stdin")
    out = subprocess.run(
        command,
        input=None if password is None else password + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=clean_env(),
    )
    data = json.loads(out.stdout)
    token = data["token"] if password is None else password
    return Key(id=data["id"], name=data["name"], token=token)


def version() -> str:
    """Return the installed authproxy version."""
    out = subprocess.run(
        [sys.executable, "-c", "import authproxy; print(authproxy.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def clean_env() -> dict[str, str]:
    # Settings come only from what the bench sets, never from the caller's shell.
    return {k: v for k, v in os.environ.items() if not k.startswith("AUTHPROXY_")}


def proc(
    run_dir: Path,
    name: str,
    *,
    port: int,
    upstream_port: int,
    keys_file: Path,
    audit: bool,
    cpus: tuple[int, ...],
    log_level: str = "info",
    extra_env: dict[str, str] | None = None,
) -> Proc:
    """Return (unstarted) an authproxy serving ``port`` in front of ``upstream_port``.

    The audit switch is always set explicitly, on or off. ``upstream.max_connections``
    is raised from 256 to 4096 so the 2,000-stream scenario is not queued by
    the pool (nginx gets worker_connections 16384 likewise).
    """
    env = (
        clean_env()
        | {
            "AUTHPROXY_LISTEN_HOST": HOST,
            "AUTHPROXY_LISTEN_PORT": str(port),
            "AUTHPROXY_UPSTREAM_URL": f"http://{HOST}:{upstream_port}",
            "AUTHPROXY_UPSTREAM_MAX_CONNECTIONS": "4096",
            "AUTHPROXY_KEYS_FILE": str(keys_file),
            "AUTHPROXY_LOG_FORMAT": "json",
            "AUTHPROXY_LOG_LEVEL": log_level,
            "AUTHPROXY_AUDIT_ENABLED": "true" if audit else "false",
            "AUTHPROXY_AUDIT_FILE": str(run_dir / f"{name}-audit.jsonl"),
            "AUTHPROXY_AUDIT_ADMIN_FILE": str(run_dir / f"{name}-admin.jsonl"),
            # Several instances run at once: no admin listener, own limit state.
            "AUTHPROXY_ADMIN_LISTEN": "",
            "AUTHPROXY_LIMITS_STATE_FILE": str(run_dir / f"{name}-limits.json"),
            # The flood sends X-Forwarded-For per client; the bench is the trusted hop.
            "AUTHPROXY_SERVER_TRUSTED_PROXIES": f"[{HOST}]",
        }
        | (extra_env or {})
    )
    cmd = [str(BIN), "serve"]
    return Proc(name, cmd, run_dir / f"{name}.log", env=env, cpus=cpus)


def wait_healthy(proxy: Proc, port: int, timeout: float = 30.0) -> None:
    """Wait until ``GET /healthz`` answers 200."""
    deadline = time.monotonic() + timeout
    url = f"http://{HOST}:{port}/healthz"
    while True:
        proxy.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proxy.name} did not become healthy")
        time.sleep(0.1)


def audit_lines(run_dir: Path, name: str) -> int:
    """Count the lines the proxy wrote to its audit file (0 if none)."""
    path = run_dir / f"{name}-audit.jsonl"
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for _ in fh)
