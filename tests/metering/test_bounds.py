"""metering.bounds: client-controlled strings are clipped before they are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authproxy.metering.bounds import MAX_CLIENT, MAX_PATH, clip
from tests.support.audit import wait_audit
from tests.support.polling import poll_until


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("llama3.2", 8, "llama3.2"),
        ("llama3.2:1b", 8, "llama3.2...[11 chars]"),
        ("", 0, ""),
        (None, 8, None),
    ],
    ids=["fits", "cut", "empty", "none"],
)
def test_clip(value, limit, expected) -> None:
    """Over-long strings keep a prefix and a marker naming their full length."""
    assert clip(value, limit) == expected


async def test_hostile_request_strings_stay_small(
    start_proxy, key, log_capture, audit_path: Path
) -> None:
    """A near-8 KB path, User-Agent and X-Forwarded-For make only short lines."""
    client = await start_proxy({"server.trusted_proxies": ["127.0.0.1"]})
    path = "/api/" + "p" * 8000
    headers = {
        "Authorization": f"Bearer {key.token}",
        "User-Agent": "u" * 8000,
        "X-Forwarded-For": "f" * 8000,
    }
    resp = await client.get(path, headers=headers)
    assert resp.status == 404  # forwarded: the fake knows no such path
    await resp.read()
    cut_path = path[:MAX_PATH] + f"...[{len(path)} chars]"
    [record] = await wait_audit(audit_path, 1)
    assert record["path"] == cut_path
    assert record["client"] == "f" * MAX_CLIENT + "...[8000 chars]"
    await poll_until(lambda: log_capture.events("http_request"))
    [line] = log_capture.events("http_request")
    assert line["path"] == cut_path
    for text in (audit_path.read_text(), json.dumps(line)):
        assert len(text) < 2048
        assert "u" * 100 not in text
