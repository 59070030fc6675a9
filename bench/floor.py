"""The floor rows: the least an aiohttp server, and an aiohttp proxy, can cost.

Two stand-ins run beside authproxy in the same run, pinned to the same core,
on the same event loop (uvloop, as ``server.event_loop: auto`` picks):

- ``alone``: an aiohttp server answering every POST with the recorded chat
  reply. No upstream: what aiohttp's server side costs per request.
- ``proxy``: the bare aiohttp proxy, an aiohttp server plus one keep-alive
  ``ClientSession``, relaying the request body and streaming the answer back.
  No auth, no policy, no logs, no audit: the least a proxy built on aiohttp's
  client can do, and so the yardstick for authproxy's own work.

``python -m bench.floor {alone,proxy} --port P [--upstream-port U]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import ClientSession, TCPConnector, web

from bench import bodies
from bench.loop import run_loop
from bench.procs import HOST, Proc

# Hop-by-hop headers (RFC 9110 §7.6.1) that a proxy never relays.
HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


def alone_app() -> web.Application:
    """Return the server that answers every POST with the recorded reply."""

    async def reply(_request: web.Request) -> web.Response:
        return web.Response(body=bodies.CHAT_REPLY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", reply)
    return app


def proxy_app(upstream_port: int) -> web.Application:
    """Return the bare proxy in front of ``127.0.0.1:upstream_port``."""
    base = f"http://{HOST}:{upstream_port}"
    session_key = web.AppKey("session", ClientSession)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = TCPConnector(limit=4096)
        async with ClientSession(connector=connector, auto_decompress=False) as s:
            app[session_key] = s
            yield

    async def relay(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with request.app[session_key].request(
            request.method,
            base + request.rel_url.raw_path_qs,
            headers=headers,
            data=await request.read(),
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP:
                    response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def proc(
    run_dir: Path, mode: str, port: int, upstream_port: int, cpus: tuple[int, ...]
) -> Proc:
    """Return the (unstarted) floor process ``mode`` listening on ``port``."""
    name = f"floor-{mode}"
    return Proc(
        name,
        [
            sys.executable,
            "-m",
            "bench.floor",
            mode,
            "--port",
            str(port),
            "--upstream-port",
            str(upstream_port),
        ],
        run_dir / f"{name}.log",
        cpus=cpus,
    )


async def _serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=1024).start()
    await asyncio.Event().wait()


def floor_args(
    prog: str, modes: tuple[str, ...], argv: list[str] | None
) -> argparse.Namespace:
    """Parse a floor server's command line: ``MODE --port P [--upstream-port U]``."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("mode", choices=modes)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one floor server until killed."""
    args = floor_args("python -m bench.floor", ("alone", "proxy"), argv)
    app = alone_app() if args.mode == "alone" else proxy_app(args.upstream_port)
    run_loop(_serve(app, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
