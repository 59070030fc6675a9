"""Instructions per request of one server process alone (callgrind): authproxy, floors.

Unlike ``bench/instrcount.py``, the server under test runs in its own process, as
``bench/run`` runs it, and only that process is counted: the driving client and
the fixed-reply upstream run here, outside valgrind. For each N the counters are
zeroed (``callgrind_control -z``) after a warm-up, N small non-streamed
``/api/chat`` requests are sent over C keep-alive connections, and the counters
are dumped (``callgrind_control -d``); (count(N2) - count(N1)) / (N2 - N1) is one
request. authproxy runs ``authproxy serve`` (uvloop, gc settled, audit and access
log on unless ``--audit off``) with cheap argon2 parameters (the key is warm).

``python -m bench.instrserve {authproxy,proxy,alone,lean-alone,lean-proxy}
[--audit off] [-c 32]
[--n 200,1200] [--keep DIR]``; prints one JSON line. See
bench/results/issue14-levers.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, TCPConnector

from bench import bodies
from bench.authproxy import BIN, clean_env
from bench.procs import HOST, free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
_TOTALS = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)
_CHEAP_ARGON2 = {
    "AUTHPROXY_KEYS_ARGON2_TIME_COST": "1",
    "AUTHPROXY_KEYS_ARGON2_MEMORY_COST": "8",
    "AUTHPROXY_KEYS_ARGON2_PARALLELISM": "1",
}


async def _origin(port: int) -> asyncio.Server:
    """A keep-alive upstream answering every request with the recorded reply."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Date: Wed, 02 Dec 2026 00:35:38 GMT\r\n"
        b"Content-Length: %d\r\n\r\n" % len(bodies.CHAT_REPLY)
    )
    reply = head + bodies.CHAT_REPLY

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length: *(\d+)", headers)
                if match:
                    await reader.readexactly(int(match.group(1)))
                writer.write(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(serve, HOST, port)


def _sut(mode: str, work: Path, port: int, upstream: int, audit: bool) -> list[str]:
    if mode == "authproxy":
        return [str(BIN), "serve"]
    return [
        sys.executable,
        "-m",
        "bench.leanfloor" if mode.startswith("lean-") else "bench.floor",
        mode,
        "--port",
        str(port),
        "--upstream-port",
        str(upstream),
    ]


def _env(work: Path, port: int, upstream: int, audit: bool) -> dict[str, str]:
    return (
        clean_env()
        | _CHEAP_ARGON2
        | {
            "AUTHPROXY_LISTEN_HOST": HOST,
            "AUTHPROXY_LISTEN_PORT": str(port),
            "AUTHPROXY_UPSTREAM_URL": f"http://{HOST}:{upstream}",
            "AUTHPROXY_KEYS_FILE": str(work / "keys.yaml"),
            "AUTHPROXY_LOG_FORMAT": "json",
            "AUTHPROXY_LOG_LEVEL": "info",
            "AUTHPROXY_AUDIT_ENABLED": "true" if audit else "false",
            "AUTHPROXY_AUDIT_FILE": str(work / "audit.jsonl"),
            "AUTHPROXY_AUDIT_ADMIN_FILE": str(work / "admin.jsonl"),
            "AUTHPROXY_ADMIN_LISTEN": "",
            "AUTHPROXY_LIMITS_STATE_FILE": str(work / "limits.json"),
        }
    )


def _token(work: Path) -> str:
    out = subprocess.run(
        [str(BIN), "keys", "create", "b", "--json", "--keys", str(work / "keys.yaml")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=clean_env() | _CHEAP_ARGON2,
    )
    return str(json.loads(out.stdout)["token"])


async def _drive(url: str, token: str, n: int, conns: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with ClientSession(connector=TCPConnector(limit=conns)) as session:
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(
                    url, data=bodies.CHAT_REQUEST, headers=headers
                ) as reply:
                    await reply.read()
                    if reply.status != 200:
                        raise SystemExit(f"status {reply.status}")

        await asyncio.gather(*(worker() for _ in range(conns)))


def _control(flag: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", flag, str(pid)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def _count(out: Path, before: set[Path]) -> int:
    """Return the total of the newest dump not seen before (waiting for it)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = set(out.parent.glob(out.name + "*")) - before
        for path in new:
            match = _TOTALS.search(path.read_bytes())
            if match:
                before.add(path)
                return int(match.group(1))
        time.sleep(0.5)
    raise TimeoutError("no callgrind dump")


async def main(args: argparse.Namespace) -> dict[str, object]:
    """Run the SUT under callgrind and return instructions per request."""
    work = Path(args.keep or tempfile.mkdtemp(prefix="instrserve-"))
    os.makedirs(work, exist_ok=True)
    audit = args.audit != "off"
    upstream, port = free_port(), free_port()
    origin = await _origin(upstream)
    token = _token(work) if args.mode == "authproxy" else ""
    out = work / "callgrind.out"
    sut = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for below
        [
            "valgrind",
            "--tool=callgrind",
            "--compress-strings=no",
            "--compress-pos=no",
            f"--callgrind-out-file={out}",
            *_sut(args.mode, work, port, upstream, audit),
        ],
        env=_env(work, port, upstream, audit) | {"PYTHONHASHSEED": "0"},
        cwd=ROOT,
        stdout=(work / "sut.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        await asyncio.to_thread(wait_port, port, 300)
        url = f"http://{HOST}:{port}/api/chat"
        await _drive(url, token, 300, args.c)  # warm: key cached, pools open
        seen: set[Path] = set()
        counts = {}
        for n in args.n:
            await asyncio.to_thread(_control, "-z", sut.pid)
            await _drive(url, token, n, args.c)
            await asyncio.to_thread(_control, "-d", sut.pid)
            counts[n] = await asyncio.to_thread(_count, out, seen)
    finally:
        sut.terminate()
        await asyncio.to_thread(sut.wait, 60)
        origin.close()
    n1, n2 = args.n[0], args.n[-1]
    return {
        "mode": args.mode,
        "audit": audit,
        "conns": args.c,
        "counts": counts,
        "per_request": round((counts[n2] - counts[n1]) / (n2 - n1)),
        "work": str(work),
    }


def cli() -> None:
    """Parse the arguments, run, print the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.instrserve")
    parser.add_argument(
        "mode", choices=("authproxy", "proxy", "alone", "lean-alone", "lean-proxy")
    )
    parser.add_argument("--audit", choices=("on", "off"), default="on")
    parser.add_argument("-c", type=int, default=32)
    parser.add_argument(
        "--n", type=lambda s: [int(x) for x in s.split(",")], default=[200, 1200]
    )
    parser.add_argument("--keep")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))


if __name__ == "__main__":
    cli()
