"""server.logs: one access line per request, JSON or console, scrubbed errors."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import TextIO

import structlog

from authproxy.server import logs
from authproxy.times import format_timestamp
from tests.support.polling import poll_until
from tests.support.rawhttp import send_raw


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
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.tzinfo == UTC
    assert format_timestamp(stamp) == line["timestamp"]  # RFC 3339, as the audit's
    assert "hunter2" not in log_capture.stream.getvalue()


async def test_parser_errors_are_scrubbed(proxy, token, log_capture) -> None:
    """A malformed request's raw bytes never reach the log, only a bare event."""
    await send_raw(
        proxy.port,
        f"GET / HTTP/1.1\r\nAuthorization: Bearer {token}\x00\r\n\r\n".encode(),
    )
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
    await poll_until(lambda: "http_request" in stream.getvalue())
    text = stream.getvalue()
    assert "http_request" in text
    assert not text.lstrip().startswith("{")


def _json_handler(stream: TextIO) -> logs._Handler:
    """Configure JSON logs to ``stream`` and return the root logger's handler."""
    logs.configure(fmt="json", level="info", stream=stream)
    [handler] = [
        h for h in logging.getLogger().handlers if isinstance(h, logs._Handler)
    ]
    return handler


async def test_held_access_fields_render_when_written(tmp_path) -> None:
    """Fields held for a file become the documented line when written, in order."""
    path = tmp_path / "log.jsonl"
    with path.open("w") as stream:
        handler = _json_handler(stream)
        at = 1_796_169_600.25  # 2026-12-02T00:00:00.25Z
        handler.write_line('{"event":"http_request","n":1}\n')
        handler.write_access(
            ("rid", "kid", "POST", "/api/chat", 200, 0.0123456, 407, "::1", at)
        )
        stream.flush()
        assert path.read_text() == ""  # held: nothing rendered or written yet
        handler.flush()
        first, second = (json.loads(x) for x in path.read_text().splitlines())
        assert first == {"event": "http_request", "n": 1}
        assert second == {
            "request_id": "rid",
            "key_id": "kid",
            "method": "POST",
            "path": "/api/chat",
            "status": 200,
            "duration_ms": 12.346,
            "bytes_out": 407,
            "peer": "::1",
            "event": "http_request",
            "level": "info",
            "logger": "authproxy.access",
            "timestamp": "2026-12-02T00:00:00.250000Z",
        }
        logs.configure(fmt="json", level="info", stream=io.StringIO())


async def test_access_lines_to_a_file_are_held_then_written_in_order(tmp_path) -> None:
    """Lines for a file wait (one write for many); other records go after them."""
    path = tmp_path / "log.jsonl"
    with path.open("w") as stream:
        handler = _json_handler(stream)
        handler.write_line('{"event":"http_request","n":1}\n')
        handler.write_line('{"event":"http_request","n":2}\n')
        stream.flush()
        assert path.read_text() == ""  # held, not yet written
        structlog.stdlib.get_logger("t").warning("after_them")
        stream.flush()
        events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
        assert events == ["http_request", "http_request", "after_them"]
        handler.write_line('{"event":"http_request","n":3}\n')
        await poll_until(lambda: '"n":3' in (stream.flush(), path.read_text())[1])
        logs.configure(fmt="json", level="info", stream=io.StringIO())
