"""Operational logs: one access line per request, JSON or console, no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest
import structlog

from authproxy.metering.bounds import MAX_CLIENT, MAX_PATH, clip
from authproxy.server import logs
from tests.conftest import poll_until, wait_audit


async def test_access_line_per_request(proxy, bearer, key, log_capture) -> None:
    """Each request logs request id, key id, method, path (no query) and status."""
    resp = await proxy.get("/api/tags?secret=hunter2", headers=bearer)
    await resp.read()
    line = log_capture.events("http_request")[-1]
    assert line["request_id"] == resp.headers["X-Request-ID"]
    assert line["key_id"] == key.record.id
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/tags", 200)
    assert line["duration_ms"] > 0
    assert line["peer"] == "127.0.0.1"
    assert line["logger"] == "authproxy.access"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")
    assert "hunter2" not in log_capture.stream.getvalue()


async def test_events_carry_the_request_id(proxy, log_capture) -> None:
    """Events logged while handling a request are bound to its request id."""
    resp = await proxy.get("/api/tags", headers={"X-Request-ID": "trace-me-1"})
    assert resp.status == 401
    failed = log_capture.events("auth_failed")[-1]
    assert failed["request_id"] == "trace-me-1"
    assert failed["reason"] == "missing"


async def test_parser_errors_are_scrubbed(proxy, token, log_capture) -> None:
    """A malformed request's raw bytes never reach the log, only a bare event."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        f"GET / HTTP/1.1\r\nAuthorization: Bearer {token}\x00\r\n\r\n".encode()
    )
    await writer.drain()
    await reader.read()
    writer.close()
    event = log_capture.events("bad_http_request")[-1]
    assert event["status"] == 400
    assert event["error"] == "BadHttpMessage"
    assert "exception" not in event
    assert token not in log_capture.stream.getvalue()


def test_console_format() -> None:
    """log.format console renders readable key=value lines, not JSON."""
    stream = io.StringIO()
    logs.configure(fmt="console", level="info", stream=stream)
    structlog.stdlib.get_logger("t").info("key_rotated", key_id="abc")
    text = stream.getvalue()
    assert "key_rotated" in text
    assert "key_id" in text
    assert not text.startswith("{")


def test_foreign_records_render_as_json() -> None:
    """aiohttp's stdlib records come out as the same JSON lines."""
    stream = io.StringIO()
    logs.configure(fmt="json", level="warning", stream=stream)
    logging.getLogger("aiohttp.server").warning("something %s", "odd")
    logging.getLogger("aiohttp.server").info("below the level")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert '"event": "something odd"' in lines[0]
    assert '"logger": "aiohttp.server"' in lines[0]


async def test_access_lines_can_be_turned_off(start_proxy, key, log_capture) -> None:
    """log.access false: no http_request lines (the audit log still has them)."""
    client = await start_proxy({"log.access": False})
    await (
        await client.get("/api/tags", headers={"Authorization": f"Bearer {key.token}"})
    ).read()
    assert log_capture.events("http_request") == []


async def test_access_lines_in_console_format(proxy, bearer) -> None:
    """In console format access lines go through structlog's console renderer."""
    stream = io.StringIO()
    logs.configure(fmt="console", level="info", stream=stream)
    await (await proxy.get("/api/tags", headers=bearer)).read()
    await asyncio.sleep(0.01)
    text = stream.getvalue()
    assert "http_request" in text
    assert not text.lstrip().startswith("{")


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
