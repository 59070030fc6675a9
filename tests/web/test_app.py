"""web.app: the proxy application as create_app builds it."""

from __future__ import annotations

import stat
from http import HTTPStatus
from pathlib import Path

from tests.support.admin import Stack
from tests.support.fake_ollama.server import FakeOllama


async def test_admin_api_is_not_on_the_proxy_port(
    stack: Stack, key, fake: FakeOllama
) -> None:
    """/admin/... on the proxy port is just another path forwarded to Ollama."""
    resp = await stack.proxy.get(
        "/admin/keys", headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.NOT_FOUND
    assert await resp.read() == b"404 page not found"
    assert fake.last.path_qs == "/admin/keys"


async def test_proxy_narrows_an_existing_audit_file(
    start_proxy, audit_path: Path
) -> None:
    """A proxy started on a pre-existing 0644 audit file leaves it 0600."""
    audit_path.parent.mkdir(parents=True)
    audit_path.write_bytes(b"")
    audit_path.chmod(0o644)
    await start_proxy()
    assert stat.S_IMODE(audit_path.stat().st_mode) == 0o600
