"""cli.tokens: admin-token mints a JWT for the admin API only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from authproxy.cli.main import main
from tests.support.admin import Stack
from tests.support.fake_ollama.server import FakeOllama


async def test_admin_jwt(
    stack: Stack, config_file: Path, capsys, fake: FakeOllama
) -> None:
    """`authproxy admin-token` mints a JWT for the admin API, useless on the proxy."""

    code = await asyncio.to_thread(
        main,
        [
            "admin-token",
            "--ttl",
            "5m",
            "--actor",
            "carol",
            "--json",
            "--config",
            str(config_file),
        ],
    )
    minted = json.loads(capsys.readouterr().out)
    stack.secrets.add(minted["token"])
    assert (code, minted["actor"]) == (0, "carol")
    status, _ = await stack.api("GET", "/admin/keys", token=minted["token"])
    assert status == 200
    assert await stack.call(minted["token"]) == 403
    stack.clock.advance(minutes=6)
    status, _ = await stack.api("GET", "/admin/keys", token=minted["token"])
    assert status == 401
