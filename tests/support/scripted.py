"""A scripted upstream on a real socket: each connection runs a test's script.

For what no real server sends on demand: a reply cut at a chosen byte, interim
replies, a connection closed under a pooled client. ``read_request`` reads one
request (its head and its body, sized or chunked) so scripts can answer in
turn; the upstream records every request and counts connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

Script = Callable[
    ["Scripted", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]
]
_LENGTH: Final = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
_CHUNKED: Final = re.compile(rb"\r\ntransfer-encoding: *chunked", re.IGNORECASE)


@dataclass
class Scripted:
    """The upstream's record: its port, requests seen, connections and their ends."""

    script: Script
    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    ended: int = 0  # connections whose client closed them (EOF or reset)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """Read one whole request; record and return its bytes as sent.

        Raises:
            asyncio.IncompleteReadError: the client closed first.
        """
        head = await reader.readuntil(b"\r\n\r\n")
        body = b""
        if length := _LENGTH.search(head):
            body = await reader.readexactly(int(length.group(1)))
        elif _CHUNKED.search(head):
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.strip(), 16)
                data = await reader.readexactly(size + 2)
                body += size_line + data
                if size == 0:
                    break
        self.requests.append(head + body)
        return head + body

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self.script(self, reader, writer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.ended += 1
        finally:
            self.open_now -= 1
            writer.close()


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[Scripted]:
    """Serve ``script`` on a loopback port for the block's duration."""
    upstream = Scripted(script)
    server = await asyncio.start_server(upstream._serve, "127.0.0.1", 0)
    upstream.port = int(server.sockets[0].getsockname()[1])
    async with server:
        yield upstream
        server.close()


async def wait_for_end(reader: asyncio.StreamReader, upstream: Scripted) -> None:
    """Wait (5 s at most) until the client closes the connection; count it as ended."""
    async with asyncio.timeout(5.0):
        while await reader.read(65536):
            pass
    upstream.ended += 1
