"""Byte-exact encoders for Ollama's response formats (shared/ollama-wire.md §0-§5)."""

from __future__ import annotations

import json
import random
import secrets
import time
from typing import Any

NDJSON = "application/x-ndjson"
GIN_JSON = "application/json; charset=utf-8"
PLAIN_JSON = "application/json"
SSE = "text/event-stream"

# Metric values used when a test does not choose its own.
TOTAL_DURATION = 187459021
LOAD_DURATION = 38112604
PROMPT_EVAL_DURATION = 52318000
EVAL_DURATION = 39004000


def go_json(value: Any) -> bytes:
    """Encode like Go's encoding/json: compact, HTML-escaped, raw UTF-8."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode("utf-8")


def created_at() -> str:
    """RFC3339Nano in UTC with trailing fraction zeros trimmed, like Go."""
    ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def metrics(prompt_eval_count: int, eval_count: int) -> dict[str, int]:
    """The metric fields of a final chunk, in Go field order, omitempty applied."""
    values = {
        "total_duration": TOTAL_DURATION,
        "load_duration": LOAD_DURATION,
        "prompt_eval_count": prompt_eval_count,
        "prompt_eval_duration": PROMPT_EVAL_DURATION,
        "eval_count": eval_count,
        "eval_duration": EVAL_DURATION,
    }
    return {k: v for k, v in values.items() if v}


# --- native /api/generate and /api/chat ------------------------------------


def generate_chunk(model: str, text: str) -> bytes:
    obj = {"model": model, "created_at": created_at(), "response": text, "done": False}
    return go_json(obj) + b"\n"


def generate_final(
    model: str,
    *,
    response: str = "",
    prompt_eval_count: int,
    eval_count: int,
    context: list[int] | None = None,
    done_reason: str = "stop",
) -> bytes:
    """The final (or only) generate object, without the trailing newline."""
    obj: dict[str, Any] = {
        "model": model,
        "created_at": created_at(),
        "response": response,
        "done": True,
        "done_reason": done_reason,
    }
    if context:
        obj["context"] = context
    obj.update(metrics(prompt_eval_count, eval_count))
    return go_json(obj)


def chat_chunk(model: str, text: str, *, thinking: str | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking:
        message["thinking"] = thinking
    obj = {
        "model": model,
        "created_at": created_at(),
        "message": message,
        "done": False,
    }
    return go_json(obj) + b"\n"


def chat_final(
    model: str,
    *,
    content: str = "",
    prompt_eval_count: int,
    eval_count: int,
    done_reason: str = "stop",
) -> bytes:
    """The final (or only) chat object, without the trailing newline."""
    obj: dict[str, Any] = {
        "model": model,
        "created_at": created_at(),
        "message": {"role": "assistant", "content": content},
        "done": True,
        "done_reason": done_reason,
    }
    obj.update(metrics(prompt_eval_count, eval_count))
    return go_json(obj)


def load_reply(model: str, *, chat: bool, unload: bool = False) -> bytes:
    """The single object an empty prompt/messages request gets (§1b)."""
    obj: dict[str, Any] = {"model": model, "created_at": created_at()}
    if chat:
        obj["message"] = {"role": "assistant", "content": ""}
    else:
        obj["response"] = ""
    obj["done"] = True
    obj["done_reason"] = "unload" if unload else "load"
    return go_json(obj)


def error_body(message: str) -> bytes:
    return go_json({"error": message})


# --- embeddings ---------------------------------------------------------------


def embed_body(model: str, count: int, prompt_eval_count: int) -> bytes:
    vectors = [[0.1, -0.2, 0.3] for _ in range(count)]
    obj: dict[str, Any] = {"model": model, "embeddings": vectors}
    if count:
        obj.update(
            {
                "total_duration": TOTAL_DURATION,
                "load_duration": LOAD_DURATION,
                "prompt_eval_count": prompt_eval_count,
            }
        )
    return go_json(obj)


def legacy_embedding_body() -> bytes:
    return go_json({"embedding": [0.5, -0.25, 0.125]})


def openai_embeddings_body(model: str, count: int, prompt_tokens: int) -> bytes:
    data = [
        {"object": "embedding", "embedding": [0.1, -0.2, 0.3], "index": i}
        for i in range(count)
    ]
    obj = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return go_json(obj) + b"\n"


# --- OpenAI chat/completions SSE ------------------------------------------------


def sse_data(obj: Any) -> bytes:
    return b"data: " + go_json(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def openai_chat_events(
    model: str,
    tokens: list[str],
    *,
    include_usage: bool,
    prompt_tokens: int,
    completion_tokens: int,
) -> list[bytes]:
    cid = f"chatcmpl-{random.randint(0, 998)}"  # noqa: S311 - mirrors Ollama
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = []
    for i, token in enumerate(tokens):
        delta = (
            {"role": "assistant", "content": token} if i == 0 else {"content": token}
        )
        events.append(sse_data(chunk(delta, None)))
    events.append(sse_data(chunk({}, "stop")))
    if include_usage:
        usage = chunk({}, None)
        usage["choices"] = []
        usage["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        events.append(sse_data(usage))
    events.append(SSE_DONE)
    return events


def openai_chat_error_chunk() -> bytes:
    """What the compat writer emits when a native error line arrives mid-stream."""
    return sse_data(
        {
            "id": f"chatcmpl-{random.randint(0, 998)}",  # noqa: S311
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "",
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": None}],
        }
    )


def openai_chat_body(
    model: str, text: str, prompt_tokens: int, completion_tokens: int
) -> bytes:
    obj = {
        "id": f"chatcmpl-{random.randint(0, 998)}",  # noqa: S311
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_ollama",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return go_json(obj) + b"\n"


def openai_completion_events(
    model: str,
    tokens: list[str],
    *,
    include_usage: bool,
    prompt_tokens: int,
    completion_tokens: int,
) -> list[bytes]:
    cid = f"cmpl-{random.randint(0, 998)}"  # noqa: S311
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": cid,
            "object": "text_completion",
            "created": int(time.time()),
            "choices": [{"text": text, "index": 0, "finish_reason": finish}],
            "model": model,
            "system_fingerprint": "fp_ollama",
        }
        if include_usage:
            obj["usage"] = zero
        return obj

    events = [sse_data(chunk(t, None)) for t in tokens]
    events.append(sse_data(chunk("", "stop")))
    if include_usage:
        final = chunk("", None)
        final["choices"] = []
        final["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        events.append(sse_data(final))
    events.append(SSE_DONE)
    return events


def openai_completion_body(
    model: str, text: str, prompt_tokens: int, completion_tokens: int
) -> bytes:
    obj = {
        "id": f"cmpl-{random.randint(0, 998)}",  # noqa: S311
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_ollama",
        "choices": [{"text": text, "index": 0, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return go_json(obj) + b"\n"


def openai_models_body(models: list[str]) -> bytes:
    data = [
        {"id": m, "object": "model", "created": 1787300000, "owned_by": "library"}
        for m in models
    ]
    return go_json({"object": "list", "data": data or None}) + b"\n"


# --- /v1/responses ------------------------------------------------------------


def _sorted(obj: dict[str, Any]) -> dict[str, Any]:
    """Go maps encode with sorted keys."""
    return {k: _sorted(v) if isinstance(v, dict) else v for k, v in sorted(obj.items())}


def responses_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def responses_object(
    model: str, text: str, status: str, usage: dict[str, Any] | None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "resp_" + secrets.token_hex(12),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_" + secrets.token_hex(12),
                "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
        if text
        else [],
        "usage": usage,
    }
    return _sorted(obj)


def responses_events(
    model: str, tokens: list[str], input_tokens: int, output_tokens: int
) -> list[bytes]:
    seq = 0
    events: list[bytes] = []

    def emit(kind: str, payload: dict[str, Any]) -> None:
        nonlocal seq
        data = _sorted({"type": kind, "sequence_number": seq, **payload})
        seq += 1
        events.append(f"event: {kind}\n".encode() + b"data: " + go_json(data) + b"\n\n")

    emit(
        "response.created",
        {"response": responses_object(model, "", "in_progress", None)},
    )
    emit(
        "response.in_progress",
        {"response": responses_object(model, "", "in_progress", None)},
    )
    for token in tokens:
        emit(
            "response.output_text.delta",
            {"output_index": 0, "content_index": 0, "delta": token, "item_id": "msg_0"},
        )
    text = "".join(tokens)
    emit(
        "response.output_text.done",
        {"output_index": 0, "content_index": 0, "text": text, "item_id": "msg_0"},
    )
    usage = responses_usage(input_tokens, output_tokens)
    emit(
        "response.completed",
        {"response": responses_object(model, text, "completed", usage)},
    )
    return events


def responses_body(
    model: str, text: str, input_tokens: int, output_tokens: int
) -> bytes:
    usage = responses_usage(input_tokens, output_tokens)
    return go_json(responses_object(model, text, "completed", usage)) + b"\n"


# --- Anthropic /v1/messages ------------------------------------------------------


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + b"data: " + go_json(obj) + b"\n\n"


def anthropic_events(
    model: str,
    tokens: list[str],
    *,
    estimate: int,
    input_tokens: int,
    output_tokens: int,
) -> list[bytes]:
    mid = "msg_" + secrets.token_hex(12)
    events = [
        _event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "usage": {"input_tokens": estimate, "output_tokens": 0},
                },
            },
        ),
        _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    events.extend(
        _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": token},
            },
        )
        for token in tokens
    )
    events.append(
        _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    )
    events.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            },
        )
    )
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def anthropic_body(
    model: str, text: str, input_tokens: int, output_tokens: int
) -> bytes:
    obj = {
        "id": "msg_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    return go_json(obj) + b"\n"


def anthropic_error(status_type: str, message: str) -> bytes:
    obj = {
        "type": "error",
        "error": {"type": status_type, "message": message},
        "request_id": "req_" + secrets.token_hex(12),
    }
    return go_json(obj) + b"\n"


def openai_error(message: str, kind: str) -> bytes:
    obj = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return go_json(obj) + b"\n"


# --- pull progress -------------------------------------------------------------


def pull_lines(digest_hex: str, total: int) -> list[bytes]:
    lines = [go_json({"status": "pulling manifest"}) + b"\n"]
    for completed in (0, total // 2, total):
        obj: dict[str, Any] = {
            "status": f"pulling {digest_hex[:12]}",
            "digest": f"sha256:{digest_hex}",
            "total": total,
        }
        if completed:
            obj["completed"] = completed
        lines.append(go_json(obj) + b"\n")
    lines += [
        go_json({"status": s}) + b"\n"
        for s in ("verifying sha256 digest", "writing manifest", "success")
    ]
    return lines
