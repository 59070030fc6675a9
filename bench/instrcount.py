"""In-process cost of one small request, for instruction counting (callgrind A/B).

Usage: ``python bench/instrcount.py N`` under ``valgrind --tool=callgrind``, for two
values of N; the difference of the counts over the difference of N is the cost of
one request (see bench/results/issue11-12-ab.md). Run from the checkout to measure.
``AUDIT=off`` runs it with the audit log off; ``PYTHONHASHSEED=0`` steadies the
counts (see bench/results/issue14-ownwork-ab.md).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, TCPConnector, web
from aiohttp.test_utils import TestServer

sys.path.insert(0, os.getcwd())

from authproxy.config.load import load_config
from authproxy.keys.lifecycle import KeySpec, create_key
from authproxy.keys.store import make_hasher
from authproxy.server.httpserver import GuardedAppRunner, server_kwargs
from authproxy.server.logs import configure
from authproxy.times import utc_now
from authproxy.web.app import create_app

REPLY = (
    b'{"model":"llama3.2","created_at":"2026-08-21T10:16:40.139257008Z",'
    b'"message":{"role":"assistant","content":"Hi there!"},"done":true,'
    b'"done_reason":"stop","total_duration":1,"load_duration":1,'
    b'"prompt_eval_count":26,"prompt_eval_duration":1,"eval_count":4,'
    b'"eval_duration":1}'
)
BODY = (
    b'{"model":"llama3.2","messages":[{"role":"user","content":"hello there"}],'
    b'"stream":false}'
)


async def upstream(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=REPLY, content_type="application/json")


async def main(n: int) -> None:
    work = Path(tempfile.mkdtemp())
    origin = web.Application()
    origin.router.add_post("/api/chat", upstream)
    origin_server = TestServer(origin)
    await origin_server.start_server()
    config = load_config(
        None,
        {
            "upstream.url": str(origin_server.make_url("")).rstrip("/"),
            "keys.file": str(work / "keys.yaml"),
            "audit.file": str(work / "audit.jsonl"),
            "audit.admin_file": str(work / "admin.jsonl"),
            "keys.argon2.time_cost": 1,
            "keys.argon2.memory_cost": 8,
            "keys.argon2.parallelism": 1,
            "admin.listen": "",
            "audit.enabled": os.environ.get("AUDIT", "on") != "off",
        },
        os.environ,  # AUTHPROXY_UPSTREAM_CLIENT=aiohttp|lean picks the client
    )
    configure(fmt="json", level="info", stream=(work / "log.txt").open("w"))
    created = create_key(
        work / "keys.yaml",
        make_hasher(config.keys.argon2),
        KeySpec(name="b"),
        now=utc_now(),
    )
    runner = GuardedAppRunner(
        create_app(config), header_timeout=10, **server_kwargs(config)
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/chat"
    headers = {"Authorization": f"Bearer {created.token}"}
    async with ClientSession(connector=TCPConnector(limit=8)) as session:

        async def one() -> None:
            async with session.post(url, data=BODY, headers=headers) as reply:
                await reply.read()
                assert reply.status == 200

        for _ in range(200):  # warm: the key is cached, connections are open
            await one()
        slots = asyncio.Semaphore(8)

        async def bounded() -> None:
            async with slots:
                await one()

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(n)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"{n} requests: {wall / n * 1e6:.0f} us wall, {cpu / n * 1e6:.0f} us CPU each"
    )
    await runner.cleanup()
    await origin_server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
