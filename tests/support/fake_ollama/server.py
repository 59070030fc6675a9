"""The fake Ollama aiohttp app: routes, behaviour switches and a record of requests."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDict

from tests.support.fake_ollama import wire

FAKE_KEY: Final = web.AppKey["FakeOllama"]("fake_ollama")
VERSION: Final = "0.33.0"
MODELS: Final = ("llama3.2:latest", "qwen3:8b", "nomic-embed-text:latest")


@dataclass
class Behaviour:
    """Switches a test flips to make the fake misbehave."""

    tokens: list[str] = field(default_factory=lambda: ["Hi", " there", "!"])
    prompt_eval_count: int = 26
    eval_count: int = 4
    header_delay: float = 0.0
    chunk_delay: float = 0.0
    abort_after: int | None = None
    error_after: int | None = None
    context: list[int] | None = None
    status: int | None = None
    # The model name replies carry instead of the requested one.
    reply_model: str | None = None
    # Headers added to every reply (Ollama's own CORS headers, say).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    """One request as the fake saw it."""

    method: str
    path_qs: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class FakeOllama:
    """State shared between a test and the fake: behaviour in, records out."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    received: list[Received] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    completed: int = 0
    sent: list[bytes] = field(default_factory=list)

    @property
    def last(self) -> Received:
        return self.received[-1]


def _allowed_host(host: str) -> bool:
    """Ollama's allowedHostsMiddleware for a loopback listener (§8)."""
    name = host.rsplit(":", 1)[0].strip("[]").lower() if host else ""
    if name in {"", "localhost"} or name.endswith(
        (".localhost", ".local", ".internal")
    ):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified


@web.middleware
async def _record(request: web.Request, handler: Any) -> web.StreamResponse:
    fake = request.app[FAKE_KEY]
    body = await request.read()
    fake.received.append(
        Received(request.method, request.raw_path, CIMultiDict(request.headers), body)
    )
    if not _allowed_host(request.headers.get("Host", "")):
        return web.Response(status=403)
    response: web.StreamResponse = await handler(request)
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        fake.sent.append(response.body)
    return response


async def _no_server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.popall("Server", None)
    response.headers.update(request.app[FAKE_KEY].behaviour.headers)


def _json(
    body: bytes, content_type: str = wire.GIN_JSON, status: int = 200
) -> web.Response:
    return web.Response(
        body=body, status=status, headers={"Content-Type": content_type}
    )


def _go_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Bind keys as Go's decoder does: case-insensitively, the last match wins."""
    fields: dict[str, Any] = {}
    for key, value in pairs:
        folded = key.replace("\u212a", "k").replace("\u017f", "s").lower()
        fields[folded] = value
    return fields


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    """Read a JSON body as Ollama's ShouldBindJSON does (shared/ollama-wire.md §8b).

    Only the first JSON value is read, invalid UTF-8 becomes U+FFFD, and keys
    fold to their lower-case field names.
    """
    raw = await request.read()
    text = raw.decode("utf-8", "replace").lstrip(" \t\r\n")
    if not text:
        return _json(wire.error_body("missing request body"), status=400)
    try:
        data, _ = json.JSONDecoder(object_pairs_hook=_go_fields).raw_decode(text)
    except ValueError:
        return _json(
            wire.error_body("invalid character 'x' looking for beginning of value"),
            status=400,
        )
    if not isinstance(data, dict):
        return _json(wire.error_body("invalid request"), status=400)
    return data


async def _stream(
    request: web.Request,
    content_type: str,
    chunks: Sequence[bytes],
    *,
    error_tail: bytes | None = None,
    extra_headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Stream ``chunks`` one write each, honouring the behaviour switches."""
    fake = request.app[FAKE_KEY]
    b = fake.behaviour
    response = web.StreamResponse(
        headers={"Content-Type": content_type, **(extra_headers or {})}
    )
    try:
        # Ollama sends its headers only with the first chunk (§0).
        if b.header_delay:
            await asyncio.sleep(b.header_delay)
        await response.prepare(request)
        for index, chunk in enumerate(chunks):
            if b.abort_after is not None and index == b.abort_after:
                assert request.transport is not None
                request.transport.close()
                return response
            if b.error_after is not None and index == b.error_after:
                if error_tail:
                    await response.write(error_tail)
                    fake.sent.append(error_tail)
                break
            await response.write(chunk)
            fake.sent.append(chunk)
            if b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
        await response.write_eof()
        fake.completed += 1
    except (asyncio.CancelledError, ConnectionError):
        fake.disconnects.append(time.monotonic())
        raise
    return response


def _model(data: dict[str, Any]) -> str:
    value = data.get("model")
    return value if isinstance(value, str) else ""


def _not_found(model: str, quote: str = "'") -> web.Response:
    if quote == '"':
        message = f'model "{model}" not found, try pulling it first'
    else:
        message = f"model '{model}' not found"
    return _json(wire.error_body(message), status=404)


async def root(request: web.Request) -> web.Response:
    return web.Response(
        body=b"Ollama is running", headers={"Content-Type": "text/plain; charset=utf-8"}
    )


async def version(request: web.Request) -> web.Response:
    return _json(wire.go_json({"version": VERSION}))


async def tags(request: web.Request) -> web.Response:
    models = [
        {
            "name": m,
            "model": m,
            "modified_at": "2026-08-01T10:00:00.123456789Z",
            "size": 2019393189,
        }
        for m in MODELS
    ]
    return _json(wire.go_json({"models": models}))


async def ps(request: web.Request) -> web.Response:
    models = [{"name": MODELS[0], "model": MODELS[0], "size": 3825819519}]
    return _json(wire.go_json({"models": models}))


async def show(request: web.Request) -> web.Response:
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    return _json(
        wire.go_json({"modelfile": "FROM llama3.2", "details": {"format": "gguf"}})
    )


async def generate(request: web.Request) -> web.StreamResponse:
    return await _native(request, chat=False)


async def chat(request: web.Request) -> web.StreamResponse:
    return await _native(request, chat=True)


async def _native(request: web.Request, *, chat: bool) -> web.StreamResponse:
    fake = request.app[FAKE_KEY]
    b = fake.behaviour
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    model = _model(data)
    if chat and not model:
        return _json(wire.error_body("model is required"), status=400)
    if not model or "missing" in model:
        return _not_found(model)
    if b.status:
        return _json(wire.error_body("forced failure"), status=b.status)
    model = b.reply_model or model
    empty = not data.get("messages") if chat else not data.get("prompt")
    if empty:
        unload = data.get("keep_alive") in (0, "0")
        return _json(wire.load_reply(model, chat=chat, unload=unload))
    final_kwargs: dict[str, Any] = {
        "prompt_eval_count": b.prompt_eval_count,
        "eval_count": b.eval_count,
    }
    if data.get("stream") is False:
        text = "".join(b.tokens)
        if chat:
            body = wire.chat_final(model, content=text, **final_kwargs)
        else:
            body = wire.generate_final(
                model, response=text, context=b.context, **final_kwargs
            )
        return _json(body)
    make = wire.chat_chunk if chat else wire.generate_chunk
    chunks = [make(model, t) for t in b.tokens]
    if chat:
        final = wire.chat_final(model, **final_kwargs)
    else:
        final = wire.generate_final(model, context=b.context, **final_kwargs)
    chunks.append(final + b"\n")
    tail = wire.error_body("an error was encountered while running the model") + b"\n"
    return await _stream(request, wire.NDJSON, chunks, error_tail=tail)


async def embed(request: web.Request) -> web.Response:
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    model = _model(data)
    if "missing" in model or not model:
        return _not_found(model, '"')
    inputs = data.get("input")
    count = len(inputs) if isinstance(inputs, list) else (1 if inputs else 0)
    return _json(
        wire.embed_body(model, count, request.app[FAKE_KEY].behaviour.prompt_eval_count)
    )


async def embeddings(request: web.Request) -> web.Response:
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    if not data.get("prompt"):
        return _json(wire.go_json({"embedding": []}))
    return _json(wire.legacy_embedding_body())


async def pull(request: web.Request) -> web.StreamResponse:
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    lines = wire.pull_lines("74701a8c35f6c8d9" * 4, 2019377376)
    if data.get("stream") is False:
        return _json(wire.go_json({"status": "success"}), content_type=wire.PLAIN_JSON)
    return await _stream(request, wire.NDJSON, lines)


async def empty_ok(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=200, body=b"")


async def blob_head(request: web.Request) -> web.Response:
    return web.Response(status=404 if "0000" in request.match_info["digest"] else 200)


async def blob_post(request: web.Request) -> web.Response:
    return web.Response(status=201, body=b"")


async def v1_chat(request: web.Request) -> web.StreamResponse:
    fake = request.app[FAKE_KEY]
    b = fake.behaviour
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    model = _model(data)
    if "missing" in model:
        return _json(
            wire.openai_error(f"model '{model}' not found", "not_found_error"),
            wire.PLAIN_JSON,
            404,
        )
    model = b.reply_model or model
    p, c = b.prompt_eval_count, b.eval_count
    if not data.get("stream"):
        return _json(
            wire.openai_chat_body(model, "".join(b.tokens), p, c), wire.PLAIN_JSON
        )
    include = bool((data.get("stream_options") or {}).get("include_usage"))
    events = wire.openai_chat_events(
        model, b.tokens, include_usage=include, prompt_tokens=p, completion_tokens=c
    )
    return await _stream(
        request, wire.SSE, events, error_tail=wire.openai_chat_error_chunk()
    )


async def v1_completions(request: web.Request) -> web.StreamResponse:
    b = request.app[FAKE_KEY].behaviour
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    model = _model(data)
    p, c = b.prompt_eval_count, b.eval_count
    if not data.get("stream"):
        return _json(
            wire.openai_completion_body(model, "".join(b.tokens), p, c), wire.PLAIN_JSON
        )
    include = bool((data.get("stream_options") or {}).get("include_usage"))
    events = wire.openai_completion_events(
        model, b.tokens, include_usage=include, prompt_tokens=p, completion_tokens=c
    )
    return await _stream(request, wire.SSE, events)


async def v1_embeddings(request: web.Request) -> web.Response:
    b = request.app[FAKE_KEY].behaviour
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    inputs = data.get("input")
    count = len(inputs) if isinstance(inputs, list) else 1
    return _json(
        wire.openai_embeddings_body(_model(data), count, b.prompt_eval_count),
        wire.PLAIN_JSON,
    )


async def v1_models(request: web.Request) -> web.Response:
    return _json(wire.openai_models_body(list(MODELS)), wire.PLAIN_JSON)


async def v1_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    if name not in MODELS:
        return _json(
            wire.openai_error(f"model '{name}' not found", "not_found_error"),
            wire.PLAIN_JSON,
            404,
        )
    obj = {"id": name, "object": "model", "created": 1787300000, "owned_by": "library"}
    return _json(wire.go_json(obj) + b"\n", wire.PLAIN_JSON)


async def v1_responses(request: web.Request) -> web.StreamResponse:
    b = request.app[FAKE_KEY].behaviour
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    model = _model(data)
    p, c = b.prompt_eval_count, b.eval_count
    if not data.get("stream"):
        return _json(
            wire.responses_body(model, "".join(b.tokens), p, c), wire.PLAIN_JSON
        )
    events = wire.responses_events(model, b.tokens, p, c)
    headers = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
    return await _stream(request, wire.SSE, events, extra_headers=headers)


async def v1_messages(request: web.Request) -> web.StreamResponse:
    b = request.app[FAKE_KEY].behaviour
    data = await _body(request)
    if isinstance(data, web.Response):
        return data
    model = _model(data)
    if not model or not data.get("messages") or not data.get("max_tokens"):
        return _json(
            wire.anthropic_error(
                "invalid_request_error", "max_tokens, model and messages are required"
            ),
            wire.PLAIN_JSON,
            400,
        )
    p, c = b.prompt_eval_count, b.eval_count
    if not data.get("stream"):
        return _json(
            wire.anthropic_body(model, "".join(b.tokens), p, c), wire.PLAIN_JSON
        )
    estimate = max(1, len(json.dumps(data.get("messages"))) // 4)
    events = wire.anthropic_events(
        model, b.tokens, estimate=estimate, input_tokens=p, output_tokens=c
    )
    headers = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
    return await _stream(
        request, wire.SSE, events, error_tail=b"", extra_headers=headers
    )


async def not_found(request: web.Request) -> web.Response:
    return web.Response(
        body=b"404 page not found", headers={"Content-Type": "text/plain"}, status=404
    )


def create_fake(
    fake: FakeOllama | None = None, *, base_path: str = ""
) -> web.Application:
    """Build the fake Ollama app around ``fake`` state.

    With ``base_path`` (``/olla/ollama``) it answers only below that prefix,
    as Ollama behind a gateway route does; every request is still recorded,
    with its full path, so a test sees one that left the prefix.
    """
    state = fake or FakeOllama()
    # Ollama has no request size limit of its own (§8).
    app = web.Application(
        middlewares=[] if base_path else [_record], client_max_size=1024**3
    )
    app[FAKE_KEY] = state
    r = app.router
    r.add_get("/", root)
    r.add_get("/api/version", version)
    r.add_get("/api/tags", tags)
    r.add_get("/api/ps", ps)
    r.add_post("/api/show", show)
    r.add_post("/api/generate", generate)
    r.add_post("/api/chat", chat)
    r.add_post("/api/embed", embed)
    r.add_post("/api/embeddings", embeddings)
    r.add_post("/api/pull", pull)
    r.add_post("/api/copy", empty_ok)
    r.add_delete("/api/delete", empty_ok)
    r.add_route("HEAD", "/api/blobs/{digest}", blob_head)
    r.add_post("/api/blobs/{digest}", blob_post)
    r.add_post("/v1/chat/completions", v1_chat)
    r.add_post("/v1/completions", v1_completions)
    r.add_post("/v1/embeddings", v1_embeddings)
    r.add_get("/v1/models", v1_models)
    r.add_get("/v1/models/{model:.+}", v1_model)
    r.add_post("/v1/responses", v1_responses)
    r.add_post("/v1/messages", v1_messages)
    r.add_route("*", "/{tail:.*}", not_found)
    app.on_response_prepare.append(_no_server_header)
    if not base_path:
        return app
    gateway = web.Application(middlewares=[_record], client_max_size=1024**3)
    gateway[FAKE_KEY] = state
    gateway.add_subapp(base_path, app)
    gateway.router.add_route("*", "/{tail:.*}", not_found)
    gateway.on_response_prepare.append(_no_server_header)
    return gateway
