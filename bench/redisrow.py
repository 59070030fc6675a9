"""The redis backend's row (issue 13): added p50 per request vs the file backend.

One ``redis-server`` (no persistence, on the load CPU like the upstreams) holds
the run's key store, imported with ``authproxy keys import``. Two authproxy
processes, identical but for ``state.backend``, stand in front of the same
origin; each is loaded in turn with the same requests. Two keys:

- ``bench-limited`` has limits (a huge rpm and concurrency, never reached), so
  every request with the redis backend pays its admission and settlement in
  Redis: the cost of exact limits across replicas;
- ``bench`` has none: no Redis call per request, only the in-memory table.

The row is ``redis p50 - file p50`` for the same key and connection count,
both measured in this run, minutes apart at most.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

from bench import authproxy
from bench.lab import Lab, Target
from bench.procs import HOST, Proc, free_port, wait_port

LIMITED_FLAGS = ("--rpm", "100000000", "--concurrency", "100000")


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def available() -> bool:
    """Tell whether ``redis-server`` is installed."""
    return shutil.which("redis-server") is not None


def start_redis(lab: Lab) -> tuple[Proc, int]:
    """Start a ``redis-server`` without persistence on a free port."""
    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    cmd = [
        binary,
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(lab.run_dir),
    ]  # fmt: skip
    proc = lab.children.start(
        Proc("redis", cmd, lab.run_dir / "redis.log", cpus=lab.pin.load)
    )
    wait_port(port)
    return proc, port


def redis_env(port: int) -> dict[str, str]:
    """Return the settings that put an authproxy's state in that Redis."""
    return {
        "AUTHPROXY_STATE_BACKEND": "redis",
        "AUTHPROXY_STATE_REDIS_URL": f"redis://{HOST}:{port}/0",
    }


def import_keys(lab: Lab, port: int) -> None:
    """Copy the run's key file into Redis with ``authproxy keys import``."""
    env = authproxy.clean_env() | redis_env(port)
    subprocess.run(
        [str(authproxy.BIN), "keys", "import", str(lab.keys_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )


def redis_backend(lab: Lab) -> dict[str, Any]:
    """Measure file vs redis backend, same keys, same origin, in turn."""
    if not available():
        return {"skipped": "redis-server is not installed"}
    limited = authproxy.create_key(lab.keys_file, "bench-limited", None, *LIMITED_FLAGS)
    redis, port = start_redis(lab)
    import_keys(lab, port)
    procs = {
        "file": lab.start_authproxy("authproxy-file", lab.origin_port, audit=True),
        "redis": lab.start_authproxy(
            "authproxy-redis", lab.origin_port, audit=True, env=redis_env(port)
        ),
    }
    plan = [
        ("bench-limited", limited, 1),
        ("bench-limited", limited, 32),
        ("bench", lab.main_key, 1),
    ]
    rows, added = [], []
    try:
        for key_name, key, connections in plan:
            pair = {}
            for backend, (proc, proxy_port) in procs.items():
                target = Target(
                    f"authproxy {backend}", key_name, proxy_port, key.bearer, proc
                )
                _say(f"redis backend: {target.label}, {connections} connection(s)")
                row = lab.load(target, connections)
                rows.append(row)
                pair[backend] = row
            added.append(
                {
                    "key": key_name,
                    "limits": key is limited,
                    "connections": connections,
                    "file_p50_ms": pair["file"]["p50_ms"],
                    "redis_p50_ms": pair["redis"]["p50_ms"],
                    "added_p50_ms": round(
                        pair["redis"]["p50_ms"] - pair["file"]["p50_ms"], 3
                    ),
                    "file_cpu_us": pair["file"].get("cpu_us_per_request"),
                    "redis_cpu_us": pair["redis"].get("cpu_us_per_request"),
                }
            )
    finally:
        for proc, _ in procs.values():
            lab.children.stop(proc)
        lab.children.stop(redis)
    return {"rows": rows, "added": added, "redis": redis_version()}


def redis_version() -> str:
    """Return ``redis-server --version``'s version field."""
    try:
        out = subprocess.run(
            ["redis-server", "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return fields.get("v", out.strip())


def render(section: dict[str, Any]) -> list[str]:
    """Return the markdown section."""
    out = ["## Redis backend vs file backend (issue 13)", ""]
    if "skipped" in section:
        return [*out, f"Not measured: {section['skipped']}.", ""]
    out += [
        f"Redis {section['redis']} on 127.0.0.1 (no persistence, load CPU). "
        "`bench-limited` has limits, so each request is admitted and settled in "
        "Redis; `bench` has none (no Redis call per request).",
        "",
        "| Key | Limits | Connections | file p50 ms | redis p50 ms | added p50 ms "
        "| CPU µs/req file | redis |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in section["added"]:
        out.append(
            f"| {a['key']} | {'yes' if a['limits'] else 'no'} | {a['connections']} "
            f"| {a['file_p50_ms']:.3f} | {a['redis_p50_ms']:.3f} "
            f"| {a['added_p50_ms']:+.3f} | {a['file_cpu_us']} | {a['redis_cpu_us']} |"
        )
    return [*out, ""]
