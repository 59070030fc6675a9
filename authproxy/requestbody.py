"""Request bodies: bounded streaming, and reading the JSON of model routes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
from aiohttp import web

from authproxy.exchange import Exchange
from authproxy.usage import (
    estimate_prompt_tokens,
    loads_object,
    requested_output_tokens,
)

# Parsing a body this big (base64 images) would stall the loop noticeably.
PARSE_OFF_LOOP: Final = 1024 * 1024
_INCLUDE_USAGE_PATHS: Final = frozenset({"/v1/chat/completions", "/v1/completions"})


class BodyLimit:
    """Counts request body bytes as they stream and stops past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0
        self.exceeded = False

    async def relay(
        self, content: aiohttp.StreamReader, ex: Exchange
    ) -> AsyncIterator[bytes]:
        """Yield the body as it arrives; raise 413 once past the limit."""
        async for chunk in content.iter_any():
            self.seen += len(chunk)
            ex.bytes_in = self.seen
            if self.seen > self.limit:
                self.exceeded = True
                raise web.HTTPRequestEntityTooLarge(
                    max_size=self.limit, actual_size=self.seen
                )
            yield chunk


async def read_model_body(
    request: web.Request, ex: Exchange, include_usage: bool
) -> bytes:
    """Read a model route's body whole; note its model and prompt estimate.

    With ``include_usage`` (opt-in ``audit.openai_include_usage``), streamed
    OpenAI requests get ``stream_options.include_usage: true`` so the reply
    carries exact counts; that adds one usage chunk to the response.

    Raises:
        web.HTTPRequestEntityTooLarge: the body exceeds ``client_max_size``.
    """
    body = await request.read()
    ex.bytes_in = len(body)
    if request.headers.get("Content-Encoding", "identity") != "identity":
        return body  # zstd-compressed /v1 bodies are relayed untouched
    if len(body) > PARSE_OFF_LOOP:
        data = await asyncio.get_running_loop().run_in_executor(
            None, loads_object, body
        )
    else:
        data = loads_object(body)
    if data is None:
        return body
    model = data.get("model")
    if isinstance(model, str):
        ex.model = model
    ex.prompt_estimate = estimate_prompt_tokens(data)
    ex.max_output = requested_output_tokens(data)
    if include_usage and request.path in _INCLUDE_USAGE_PATHS:
        return _with_include_usage(body, data)
    return body


def _with_include_usage(body: bytes, data: dict[str, Any]) -> bytes:
    if data.get("stream") is not True:
        return body
    options = data.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return body
    options = dict(options) if isinstance(options, dict) else {}
    options["include_usage"] = True
    return json.dumps({**data, "stream_options": options}).encode()
