"""What a lean server could cost: floors on asyncio protocols and httptools.

Two stand-ins for ``bench/instrserve.py`` (not rows of ``bench/run``), to size
the one lever issue 14 has left, aiohttp's server side on the proxy port:

- ``lean-alone``: an ``asyncio.Protocol`` with httptools' request parser (llhttp,
  the parser aiohttp and uvicorn use) answering every request with the recorded
  chat reply, keep-alive. Beside ``alone`` (aiohttp's server), what aiohttp's
  server side costs over the least a Python server can do.
- ``lean-proxy``: the same server relaying each request through authproxy's own
  lean upstream client (``authproxy.proxy.lean``), no auth, no logs. Beside
  ``proxy`` (aiohttp server and ``ClientSession``), what authproxy's data path
  could cost with a lean server under it.

Both handle exactly what the bench sends (sized bodies, no pipelining); they
are yardsticks, not servers.

``python -m bench.leanfloor {lean-alone,lean-proxy} --port P [--upstream-port U]``
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools
from multidict import CIMultiDict
from yarl import URL

from authproxy.proxy.lean import LeanClient
from bench import bodies
from bench.floor import HOP, floor_args
from bench.loop import run_loop
from bench.procs import HOST

_FIXED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: %d\r\n\r\n%b" % (len(bodies.CHAT_REPLY), bodies.CHAT_REPLY)
)


class _Server(asyncio.Protocol):
    """One connection: parsed by httptools, answered fixed or relayed."""

    def __init__(self, client: LeanClient | None) -> None:
        self._client = client
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        url, headers, body = self._url, self._headers, b"".join(self._body)
        self._url, self._headers, self._body = b"", [], []
        transport = self._transport
        if transport is None:
            return
        if self._client is None:
            transport.write(_FIXED)
            return
        method = self._parser.get_method().decode()
        asyncio.get_running_loop().create_task(
            _relay(self._client, transport, method, url, headers=headers, body=body)
        )


async def _relay(
    client: LeanClient,
    transport: asyncio.Transport,
    method: str,
    url: bytes,
    *,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    sent: CIMultiDict[str] = CIMultiDict()
    for name, value in headers:
        text = name.decode("latin-1")
        if text.lower() not in HOP:
            sent.add(text, value.decode("latin-1"))
    target = URL(url.decode("latin-1"), encoded=True)
    async with client.request(method, target, sent, body) as reply:
        data = await reply.read()
    lines = [f"HTTP/1.1 {reply.status} {reply.reason}\r\n"]
    lines += [
        f"{name}: {value}\r\n"
        for name, value in reply.headers.items()
        if name.lower() not in HOP
    ]
    lines.append(f"Content-Length: {len(data)}\r\n\r\n")
    transport.write("".join(lines).encode("latin-1") + data)


async def _serve(mode: str, port: int, upstream_port: int) -> None:
    client = None
    if mode == "lean-proxy":
        client = LeanClient(
            URL(f"http://{HOST}:{upstream_port}"),
            connect_timeout=10,
            response_timeout=60,
            max_connections=4096,
        )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Server(client), HOST, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Run one lean floor until killed."""
    modes = ("lean-alone", "lean-proxy")
    args = floor_args("python -m bench.leanfloor", modes, argv)
    run_loop(_serve(args.mode, args.port, args.upstream_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
