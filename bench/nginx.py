"""nginx as the fixed-body origin and as the usual front door, both on loopback.

The origin answers ``POST /api/chat`` with the recorded non-streamed chat
reply (``return 200``) and ``GET /`` with ``Ollama is running``. The front
door is the configuration people put in front of Ollama: a bearer-token
``map`` (or an htpasswd file for Basic), then ``proxy_pass`` over an
upstream keep-alive pool with buffering off.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import bodies
from bench.procs import HOST, Proc

# Shared by both configurations: one worker (authproxy is one process), a
# big connection table for the 2,000-stream scenario (the file limit is
# inherited), temp paths in the run directory, and a map bucket big enough
# for a token. keepalive_requests is raised so that neither side reconnects
# every 1,000 requests; authproxy has no such limit.
_MAIN = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
events {{ worker_connections 16384; }}
http {{
  client_body_temp_path {dir}/{name}-tmp/body;
  proxy_temp_path {dir}/{name}-tmp/proxy;
  fastcgi_temp_path {dir}/{name}-tmp/fastcgi;
  uwsgi_temp_path {dir}/{name}-tmp/uwsgi;
  scgi_temp_path {dir}/{name}-tmp/scgi;
  keepalive_requests 1000000;
  map_hash_bucket_size 128;
{http}
}}
"""

_ORIGIN_HTTP = """\
  access_log off;
  server {{
    listen {host}:{port} backlog=4096;
    location = / {{
      default_type "text/plain; charset=utf-8";
      return 200 "Ollama is running";
    }}
    location = /api/chat {{
      default_type "{content_type}";
      return 200 '{body}';
    }}
  }}
"""

_FRONT_HTTP = """\
  access_log {dir}/front-access.log;
  map $http_authorization $auth_ok {{
    "Bearer {token}" 1;
    default 0;
  }}
  upstream ollama {{
    server {host}:{origin_port};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  upstream streamer {{
    server {host}:{streamer_port};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host localhost:11434;
  proxy_set_header Authorization "";
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  proxy_buffering off;
  proxy_read_timeout 600s;
  server {{
    listen {host}:{bearer_port} backlog=4096;
    location / {{
      if ($auth_ok = 0) {{ return 401; }}
      proxy_pass http://ollama;
    }}
  }}
  server {{
    listen {host}:{basic_port} backlog=4096;
    location / {{
      auth_basic "ollama";
      auth_basic_user_file {dir}/htpasswd;
      proxy_pass http://ollama;
    }}
  }}
  server {{
    listen {host}:{stream_port} backlog=4096;
    location / {{
      if ($auth_ok = 0) {{ return 401; }}
      proxy_pass http://streamer;
    }}
  }}
"""


@dataclass(frozen=True, slots=True)
class FrontPorts:
    """Where the nginx front door listens."""

    bearer: int
    basic: int
    stream: int


def available() -> bool:
    """Tell whether an nginx binary is installed."""
    return shutil.which("nginx") is not None


def version() -> str:
    """Return ``nginx -v`` output, e.g. ``nginx/1.22.1``."""
    out = subprocess.run(
        ["nginx", "-v"], capture_output=True, text=True, check=False, timeout=10
    )
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ")


def _write(run_dir: Path, name: str, http: str) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / f"{name}-tmp" / sub).mkdir(parents=True, exist_ok=True)
    conf = run_dir / f"{name}.conf"
    conf.write_text(_MAIN.format(dir=run_dir, name=name, http=http))
    return conf


def _proc(run_dir: Path, name: str, conf: Path, cpus: tuple[int, ...]) -> Proc:
    cmd = [
        "nginx",
        "-p",
        str(run_dir),
        "-c",
        str(conf),
        "-e",
        f"{run_dir}/{name}-error.log",
    ]
    return Proc(name, cmd, run_dir / f"{name}.out", cpus=cpus)


def origin(run_dir: Path, port: int, cpus: tuple[int, ...]) -> Proc:
    """Return (unstarted) the fixed-body origin on ``port``."""
    body = bodies.CHAT_REPLY.decode()
    if "'" in body or "\\" in body or "$" in body:
        raise ValueError("the recorded body cannot be inlined into nginx.conf")
    http = _ORIGIN_HTTP.format(
        host=HOST, port=port, content_type=bodies.CHAT_CONTENT_TYPE, body=body
    )
    return _proc(run_dir, "origin", _write(run_dir, "origin", http), cpus)


def front(
    run_dir: Path,
    ports: FrontPorts,
    *,
    token: str,
    basic_user: str,
    origin_port: int,
    streamer_port: int,
    cpus: tuple[int, ...],
) -> Proc:
    """Return (unstarted) the front door: bearer map, Basic, and a streaming server."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-apr1", "-stdin"],
        input=token,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.strip()
    (run_dir / "htpasswd").write_text(f"{basic_user}:{hashed}\n")
    http = _FRONT_HTTP.format(
        dir=run_dir,
        host=HOST,
        token=token,
        origin_port=origin_port,
        streamer_port=streamer_port,
        bearer_port=ports.bearer,
        basic_port=ports.basic,
        stream_port=ports.stream,
    )
    return _proc(run_dir, "front", _write(run_dir, "front", http), cpus)
