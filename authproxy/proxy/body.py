"""Request bodies: bounded reads with an idle deadline, and model routes' bodies.

A model route's body is read whole, decoded the way Ollama decodes it on that
route, and read for the models it names (``jsonbody``, ``formbody``,
``modelname``), so the policy decides on the models Ollama will run. Anything
Ollama could read another way is refused here, never forwarded unchecked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Final

import zstandard
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from authproxy.errors import Denied
from authproxy.metering.exchange import Exchange
from authproxy.policy.names import ModelNameError, ModelRef, parse_model
from authproxy.policy.routes import FORM_MODEL_ROUTES, MODEL_FIELDS, ZSTD_ROUTES
from authproxy.policy.rules import ModelUse
from authproxy.proxy.formbody import form_field
from authproxy.proxy.jsonbody import BodyFormatError, folded_get, parse_object
from authproxy.proxy.request import BodyReader, ProxyRequest

# Parsing a body this big (base64 images) would stall the loop noticeably.
PARSE_OFF_LOOP: Final = 1024 * 1024
# Bodies up to this size keep their parsed JSON until an estimate is read.
LAZY_ESTIMATE: Final = 4 * 1024
# Ollama caps a zstd body at 20 MiB once decompressed (maxDecompressedBodySize).
MAX_DECOMPRESSED: Final = 20 * 1024 * 1024
_INCLUDE_USAGE_PATHS: Final = frozenset({"/v1/chat/completions", "/v1/completions"})
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


async def defer_expect(request: web.Request) -> None:
    """Answer ``Expect: 100-continue`` later, once the request is authenticated.

    aiohttp's default sends ``100 Continue`` as soon as the route matches,
    before any middleware: an unauthenticated client would be invited to upload
    its body. ``send_continue`` sends it when the handler starts reading.
    """


async def send_continue(request: ProxyRequest) -> None:
    """Send ``100 Continue`` if the client waits for it (RFC 9110 §10.1.1).

    Raises:
        Denied: 417 for an expectation other than ``100-continue``.
    """
    expect = request.headers.get(hdrs.EXPECT)
    if expect is None or request.version != HttpVersion11:
        return
    if expect.strip().lower() != "100-continue":
        raise Denied(417, "expectation_failed", "unsupported Expect header")
    await request.writer.write(_CONTINUE)
    request.writer.output_size = 0  # the response proper has not started


async def _next_chunk(content: BodyReader, idle: float) -> bytes:
    try:
        async with asyncio.timeout(idle or None):
            return await content.readany()
    except TimeoutError:
        raise Denied(408, "body_timeout", "request body timed out") from None


async def read_body(
    request: ProxyRequest, ex: Exchange, limit: int, idle: float
) -> bytes:
    """Read the whole body, at most ``limit`` bytes, with ``idle`` between chunks.

    Raises:
        Denied: 413 past the limit, 408 when the client stalls (or 417).
    """
    if hdrs.EXPECT in request.headers:
        await send_continue(request)
    content = request.content
    if content.is_eof():
        # The whole body came with the head (the usual small request): nothing
        # to wait for, so no idle deadline to arm and cancel.
        body = content.read_nowait()
        ex.bytes_in = len(body)
        if len(body) > limit:
            raise Denied(413, "body_too_large", "request body too large")
        return body
    chunks: list[bytes] = []
    size = 0
    while chunk := await _next_chunk(content, idle):
        size += len(chunk)
        ex.bytes_in = size
        if size > limit:
            raise Denied(413, "body_too_large", "request body too large")
        chunks.append(chunk)
    return b"".join(chunks)


class BodyLimit:
    """Counts request body bytes as they stream and stops past the limit.

    The relay runs inside the upstream client, which wraps what it raises; the
    handler reads ``refusal`` to answer 413 or 408 instead of 502.
    """

    def __init__(self, limit: int, idle: float) -> None:
        self.limit = limit
        self.idle = idle
        self.seen = 0
        self.refusal: Denied | None = None

    async def relay(self, content: BodyReader, ex: Exchange) -> AsyncIterator[bytes]:
        """Yield the body as it arrives; stop past the limit or when it stalls."""
        try:
            while chunk := await _next_chunk(content, self.idle):
                self._count(len(chunk), ex)
                yield chunk
        except Denied as err:
            self.refusal = err
            raise

    def _count(self, size: int, ex: Exchange) -> None:
        self.seen += size
        ex.bytes_in = self.seen
        if self.seen > self.limit:
            raise Denied(413, "body_too_large", "request body too large")


async def read_model_body(
    request: ProxyRequest,
    ex: Exchange,
    *,
    limit: int,
    idle: float,
    include_usage: bool,
) -> tuple[bytes, ModelUse]:
    """Read a model route's body whole; note its models and token estimates.

    A zstd body (accepted where Ollama decodes it) is decompressed and sent on
    decompressed, so Ollama reads exactly the bytes that were checked. With
    ``include_usage`` (opt-in ``audit.openai_include_usage``), streamed OpenAI
    requests get ``stream_options.include_usage: true`` so the reply carries
    exact counts; that adds one usage chunk to the response.

    Raises:
        Denied: 400 for a body or model name Ollama could read otherwise, 413
            too large, 415 an encoding Ollama does not decode here, 408 stalled.

    Returns:
        The bytes to forward and the models the body names.
    """
    body = await read_body(request, ex, limit, idle)
    zstd = _content_coding(request)
    if zstd or len(body) > PARSE_OFF_LOOP:
        loop = asyncio.get_running_loop()
        decoded, data, models = await loop.run_in_executor(
            None, _inspect, request, body, zstd
        )
    else:
        decoded, data, models = _inspect(request, body, zstd)
    if data is not None:
        ex.estimate_from(data, lazily=len(decoded) <= LAZY_ESTIMATE)
        if include_usage and request.path in _INCLUDE_USAGE_PATHS:
            decoded = _with_include_usage(decoded, data)
    if models.models:
        ex.model = models.models[0].name
    return decoded, models


def _content_coding(request: ProxyRequest) -> bool:
    """Tell whether the body is zstd; refuse codings Ollama would not decode.

    Ollama decompresses exactly ``zstd`` on the /v1 cloud-passthrough routes and
    ignores the header everywhere else, so any other coding would be read as
    raw bytes by Ollama and cannot be checked the same way.

    Raises:
        Denied: 415 for any other coding, or several.
    """
    codings = request.headers.getall(hdrs.CONTENT_ENCODING, [])
    if not codings or (len(codings) == 1 and codings[0].strip().lower() == "identity"):
        return False
    if codings == ["zstd"] and request.path in ZSTD_ROUTES:
        return True
    raise Denied(415, "body_encoding", "Content-Encoding not supported on this route")


def _inspect(
    request: ProxyRequest, body: bytes, zstd: bool
) -> tuple[bytes, dict[str, Any] | None, ModelUse]:
    """Decode and read the body (also run in a worker thread for big bodies)."""
    if zstd:
        body = _decompress(body)
    if request.path in FORM_MODEL_ROUTES:
        return body, None, _form_models(request, body)
    fields = MODEL_FIELDS.get(request.path)
    if fields is None:
        return body, None, ModelUse()
    try:
        data = parse_object(body)
    except BodyFormatError as err:
        raise Denied(400, "body_invalid", str(err)) from None
    models = tuple(
        ref for field in fields if (ref := _model(field, folded_get(data, field)))
    )
    remote = folded_get(data, "remote_host") if request.path == "/api/create" else None
    if remote is not None and not isinstance(remote, str):
        raise Denied(400, "body_invalid", "remote_host: expected a string")
    return body, data, ModelUse(models, bool(remote and remote.strip()))


def _decompress(body: bytes) -> bytes:
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(
            body, read_across_frames=True
        )
        with reader:
            decoded = reader.read(MAX_DECOMPRESSED + 1)
            trailing = reader.read(1) if len(decoded) <= MAX_DECOMPRESSED else b""
    except zstandard.ZstdError:
        raise Denied(400, "body_invalid", "request body: invalid zstd data") from None
    if len(decoded) > MAX_DECOMPRESSED or trailing:
        raise Denied(413, "body_too_large", "request body too large")
    return decoded


def _form_models(request: ProxyRequest, body: bytes) -> ModelUse:
    # Go's FormValue reads the query string before the form: refuse both.
    if request.query_string:
        raise Denied(
            400, "body_invalid", "query parameters are not accepted on this route"
        )
    try:
        value = form_field(body, request.headers.get(hdrs.CONTENT_TYPE, ""), "model")
    except BodyFormatError as err:
        raise Denied(400, "body_invalid", str(err)) from None
    ref = _model("model", value)
    return ModelUse((ref,) if ref else ())


def _model(field: str, value: Any) -> ModelRef | None:
    """Resolve one model-bearing field; ``None`` when absent or empty.

    Raises:
        Denied: 400 when it is not a string or not a name Ollama accepts.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # Go leaves the field empty; Ollama then names no model
    if not isinstance(value, str):
        raise Denied(400, "model_invalid", f"{field}: expected a string")
    try:
        return parse_model(value)
    except ModelNameError as err:
        raise Denied(400, "model_invalid", f"{field}: {err}") from None


def _with_include_usage(body: bytes, data: dict[str, Any]) -> bytes:
    if folded_get(data, "stream") is not True:
        return body
    options = folded_get(data, "stream_options")
    if isinstance(options, dict) and folded_get(options, "include_usage"):
        return body
    kept = {k: v for k, v in data.items() if k.casefold() != "stream_options"}
    options = dict(options) if isinstance(options, dict) else {}
    options = {k: v for k, v in options.items() if k.casefold() != "include_usage"}
    options["include_usage"] = True
    # The object was checked unambiguous, so this encoding reads the same.
    return json.dumps({**kept, "stream_options": options}).encode()
