"""structlog set-up and the access logger; aiohttp's records render the same way."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from datetime import UTC, datetime
from time import time as wall_time
from typing import IO, Any, Final

import orjson
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from authproxy.metering.bounds import MAX_METHOD, MAX_PATH, clip
from authproxy.web.appkeys import EXCHANGE_KEY, REQUEST_ID_KEY
from authproxy.web.edge import REQUEST_CONTEXT

LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

ACCESS_LOGGER: Final = "authproxy.access"
FLUSH_DELAY: Final = 0.25
HOLD_LIMIT: Final = 64 * 1024  # characters of access lines held at most
_access = structlog.stdlib.get_logger(ACCESS_LOGGER)
# Loggers live as long as the process; getLogger() takes a lock on each call.
_ACCESS_STDLIB: Final = logging.getLogger(ACCESS_LOGGER)
_LINE: Final = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE


def merge_request_context(
    logger: Any, method_name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Add the request's fields (``web.edge.bind_request``) the event lacks."""
    fields = REQUEST_CONTEXT.get()
    if fields:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
    return event_dict


_SHARED: Final[list[Any]] = [
    merge_request_context,
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.ExtraAdder(allow=("status", "error")),
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler, so re-configuring replaces only what we installed.

    It also takes JSON access lines (``write_line``, or ``write_access`` with
    the line's fields) without the structlog and logging machinery, and writes
    them within a quarter second (or 64 KiB) instead of once per line: on a
    busy proxy that machinery, and a ``write(2)`` per line
    (``PYTHONUNBUFFERED``, usual in containers, makes every line one), cost
    more than the request itself. Fields are rendered when written, a batch
    at a time, while orjson's code is warm. Any other record writes the held
    lines first, so the order of lines is kept.
    """

    json_lines = False
    _flush_pending = False

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._held: list[str | AccessFields] = []
        self._held_size = 0
        # An in-memory stream (the tests') costs no system call: write through.
        self._hold = not isinstance(stream, io.StringIO)

    def write_line(self, line: str) -> None:
        """Write one rendered line soon (with the next record at the latest)."""
        self._hold_item(line, len(line))

    def write_access(self, fields: AccessFields) -> None:
        """Write one access line soon, rendered from its fields when written."""
        self._hold_item(fields, ACCESS_LINE_SIZE)

    def _hold_item(self, item: str | AccessFields, size: int) -> None:
        if not self._hold:
            self.acquire()
            try:
                self.stream.write(_rendered([item]))
            finally:
                self.release()
        else:
            self._held.append(item)
            self._held_size += size
            if self._held_size >= HOLD_LIMIT:
                self.flush()
                return
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush_later)

    def emit(self, record: logging.LogRecord) -> None:
        """Write the held access lines, then the record."""
        if self._held:
            self._write_held()
        super().emit(record)

    def flush(self) -> None:
        """Write the held access lines and flush the stream."""
        if self._held:
            self._write_held()
        super().flush()

    def _write_held(self) -> None:
        self.acquire()
        try:
            held, self._held, self._held_size = self._held, [], 0
            self.stream.write(_rendered(held))
        finally:
            self.release()

    def _flush_later(self) -> None:
        self._flush_pending = False
        self.flush()


# request_id, key_id, method, path, status, seconds, bytes_out, peer, time.time()
AccessFields = tuple[
    str | None, str | None, str, str, int, float, int, str | None, float
]
ACCESS_LINE_SIZE: Final = 300  # characters, about, for HOLD_LIMIT


def _rendered(items: list[str | AccessFields]) -> str:
    """Join held lines, rendering access fields as one orjson dump each."""
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
            continue
        rid, key_id, method, path, status, seconds, bytes_out, peer, at = item
        # One dumps, the newline and the timestamp included: orjson writes a
        # UTC datetime as isoformat() does, "+00:00" as "Z".
        out.append(
            orjson.dumps(
                {
                    "request_id": rid,
                    "key_id": key_id,
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "bytes_out": bytes_out,
                    "peer": peer,
                    "event": "http_request",
                    "level": "info",
                    "logger": ACCESS_LOGGER,
                    "timestamp": datetime.fromtimestamp(at, UTC),
                },
                option=_LINE,
            ).decode()
        )
    return "".join(out)


class ScrubParserErrors(logging.Filter):
    """Drop the raw request bytes aiohttp puts in its parser-error records.

    aiohttp logs a malformed request with an exception whose message quotes
    the offending line, which may be an ``Authorization`` header.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite parser-error records to a bare event; never drop them."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "bad_http_request"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.status = exc.code
            record.error = type(exc).__name__
        return True


def configure(
    *,
    fmt: str = "auto",
    level: str = "info",
    stream: IO[str] | None = None,
    cache: bool = False,
) -> None:
    """Send structlog and stdlib logging through one handler.

    Args:
        fmt: ``json``, ``console``, or ``auto`` (console on a TTY).
        level: the minimum level name.
        stream: where lines go; standard output by default.
        cache: cache loggers on first use (production only; it defeats
            ``structlog.testing.capture_logs``).
    """
    out = stream if stream is not None else sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if use_console
        else structlog.processors.JSONRenderer()
    )
    handler = _Handler(out)
    handler.json_lines = not use_console
    handler.addFilter(ScrubParserErrors())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            if old._held:  # its held access lines
                old._write_held()
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )


class AccessLogger(AbstractAccessLogger):
    """One ``http_request`` event per request, with its id and key id."""

    def log(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> None:
        """Log one finished request; the query string is left out.

        The method and path are the client's: cut to the audit record's
        bounds so one request cannot write a multi-KB line.
        """
        ex = request.get(EXCHANGE_KEY)
        principal = ex.principal if ex is not None else None
        handler = _our_handler()
        if handler is not None and handler.json_lines:
            handler.write_access(
                (
                    request.get(REQUEST_ID_KEY),
                    principal.key_id if principal else None,
                    clip(request.method, MAX_METHOD),
                    clip(request.path, MAX_PATH),
                    response.status,
                    time,
                    response.body_length,
                    request.remote,
                    wall_time(),
                )
            )
            return
        fields: dict[str, Any] = {
            "request_id": request.get(REQUEST_ID_KEY),
            "key_id": principal.key_id if principal else None,
            "method": clip(request.method, MAX_METHOD),
            "path": clip(request.path, MAX_PATH),
            "status": response.status,
            "duration_ms": round(time * 1000, 3),
            "bytes_out": response.body_length,
            "peer": request.remote,
        }
        _access.info("http_request", **fields)

    @property
    def enabled(self) -> bool:
        """Tell whether access lines would be emitted at all."""
        return _ACCESS_STDLIB.isEnabledFor(logging.INFO)


def _our_handler() -> _Handler | None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _Handler):
            return handler
    return None
