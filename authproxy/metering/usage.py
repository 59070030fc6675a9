"""Incremental token-usage parser fed the response bytes as they pass; pure, no I/O.

The format is chosen by the response Content-Type prefix (shared/ollama-wire.md
§0): NDJSON (native streams), SSE (OpenAI, Anthropic, Responses) or JSON
(everything non-streamed). Chunks need not align with lines or events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import orjson

MAX_BUFFER: Final = 32 * 1024 * 1024
DURATIONS: Final = (
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)
_TEXT_KEYS: Final = frozenset(
    {"prompt", "system", "content", "text", "input", "instructions", "suffix"}
)
_NOT_TEXT: Final = frozenset({"images", "image_url", "source", "model"})
# One SSE/NDJSON event per generated token is typical; never meter by it
# when the response carries real counts.
_CHUNK_EVENTS: Final = frozenset(
    b"content_block_delta response.output_text.delta response.reasoning_summary_"
    b"text.delta response.function_call_arguments.delta".split()
)


@dataclass(slots=True)
class Usage:
    """What the response said about tokens, plus what the parser saw."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    exact: bool = False
    model: str | None = None
    chunks: int = 0
    terminated: bool = False
    failed: bool = False
    streamed: bool = False
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_duration: int | None = None
    eval_duration: int | None = None


class UsageParser:
    """Feed response chunks in order with ``feed``; read the result with ``finish``."""

    def __init__(self, content_type: str | None) -> None:
        ctype = (content_type or "").lower()
        self.usage = Usage()
        self._buf = bytearray()  # the unfinished line or event
        self._parts: list[bytes] = []  # a JSON body's chunks, joined at the end
        self._size = 0
        self._overflow = False
        if ctype.startswith("application/x-ndjson"):
            self._kind = "ndjson"
            self._sep = b"\n"
        elif ctype.startswith("text/event-stream"):
            self._kind = "sse"
            self._sep = b"\n\n"
        elif ctype.startswith("application/json"):
            self._kind = "json"
            self._sep = b""
        else:
            self._kind = "none"
            self._sep = b""
        self.usage.streamed = self._kind in {"ndjson", "sse"}

    def feed(self, data: bytes) -> None:
        """Consume the next response chunk; no chunk is copied more than once."""
        if self._kind == "none" or self._overflow or not data:
            return
        sep, buf = self._sep, self._buf
        size = (len(buf) if sep else self._size) + len(data)
        if size > MAX_BUFFER:
            # A pathological line or body: stop parsing rather than grow.
            self._overflow = True
            buf.clear()
            self._parts.clear()
            return
        if not sep:  # a JSON body: its chunks are joined once, at the end
            self._size = size
            self._parts.append(data)
        elif sep not in data and not (buf and self._kind == "sse"):
            buf += data
        else:  # split as it is when no unfinished line comes before it
            parts = (b"".join((buf, data)) if buf else data).split(sep)
            buf[:] = parts.pop()
            for part in parts:
                self._item(part)

    def finish(self) -> Usage:
        """Process what is left in the buffer and return the usage."""
        if self._overflow:
            return self.usage
        if self._parts:
            body = b"".join(self._parts)
            self._parts.clear()
            self._json_body(body)
        elif self._buf:
            rest = bytes(self._buf)
            self._buf.clear()
            self._item(rest)
        return self.usage

    def _item(self, item: bytes) -> None:
        if self._kind == "ndjson":
            self._ndjson_line(item)
        else:
            self._sse_event(item)

    def _ndjson_line(self, line: bytes) -> None:
        # Ollama ends a chunk with it: one search less per streamed line.
        done_false = line.endswith(b'"done":false}') or b'"done":false' in line
        if done_false and b'"error"' not in line:
            self.usage.chunks += 1
            if self.usage.model is None:
                self._model_from(loads_object(line))
            return
        if b'"done"' not in line and b'"error"' not in line:
            return  # progress lines of pull/push/create
        obj = loads_object(line)
        if obj is None:
            return
        if "error" in obj:
            self.usage.failed = True
            return
        if obj.get("done") is True:
            self._native_final(obj)
        elif obj.get("done") is False:
            self.usage.chunks += 1
            self._model_from(obj)

    def _native_final(self, obj: dict[str, Any]) -> None:
        u = self.usage
        u.prompt_tokens = _int(obj.get("prompt_eval_count"))
        u.completion_tokens = _int(obj.get("eval_count"))
        u.exact = True
        u.terminated = True
        for name in DURATIONS:
            value = obj.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(u, name, value)
        self._model_from(obj)

    def _sse_event(self, event: bytes) -> None:
        name = b""
        data_lines = []
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                data_lines.append(line[5:].strip())
            elif line.startswith(b"event:"):
                name = line[6:].strip()
        if not data_lines:
            return
        data = b"\n".join(data_lines)
        if data == b"[DONE]":
            self.usage.terminated = True
            return
        if name in _CHUNK_EVENTS:
            self.usage.chunks += 1
            return
        if not name and b'"usage"' not in data:
            if b'"delta":{}' not in data and b'"text":""' not in data:
                self.usage.chunks += 1  # an OpenAI content chunk
            if self.usage.model is None:
                self._model_from(loads_object(data))
            return
        obj = loads_object(data)
        if obj is not None:
            self._sse_object(name.decode("ascii", "replace") or obj.get("type"), obj)

    def _sse_object(self, kind: Any, obj: dict[str, Any]) -> None:
        u = self.usage
        if kind == "message_start":
            self._model_from(obj.get("message"))
        elif kind == "message_delta":
            self._tokens(obj.get("usage"), "input_tokens", "output_tokens")
        elif kind == "message_stop":
            u.terminated = True
        elif kind in {"error", "response.failed"}:
            u.failed = True
        elif kind == "response.completed":
            response = obj.get("response")
            if isinstance(response, dict):
                self._tokens(response.get("usage"), "input_tokens", "output_tokens")
                self._model_from(response)
            u.terminated = True
        elif kind == "response.created":
            self._model_from(obj.get("response"))
        elif "choices" in obj:  # an OpenAI chunk that carries usage
            usage = obj.get("usage")
            self._model_from(obj)
            if any(_has_content(c) for c in obj["choices"] or ()):
                u.chunks += 1
            # /v1/completions puts zero usage on every chunk; the real one
            # comes in the final chunk with no choices.
            if isinstance(usage, dict) and (not obj["choices"] or any(usage.values())):
                self._tokens(usage, "prompt_tokens", "completion_tokens")

    def _json_body(self, body: bytes) -> None:
        obj = loads_object(body)
        if obj is None:
            return
        if "error" in obj:
            self.usage.failed = True
            return
        self._model_from(obj)
        usage = obj.get("usage")
        if isinstance(usage, dict):
            if "input_tokens" in usage:
                self._tokens(usage, "input_tokens", "output_tokens")
            else:
                self._tokens(usage, "prompt_tokens", "completion_tokens")
        elif obj.get("done") is True:
            self._native_final(obj)
        elif "embeddings" in obj:  # /api/embed
            self.usage.prompt_tokens = _int(obj.get("prompt_eval_count"))
            self.usage.completion_tokens = 0
            self.usage.exact = True
            self.usage.total_duration = _opt_int(obj.get("total_duration"))
            self.usage.load_duration = _opt_int(obj.get("load_duration"))

    def _tokens(self, usage: Any, prompt_key: str, completion_key: str) -> None:
        if not isinstance(usage, dict):
            return
        self.usage.prompt_tokens = _int(usage.get(prompt_key))
        self.usage.completion_tokens = _int(usage.get(completion_key))
        self.usage.exact = True

    def _model_from(self, obj: Any) -> None:
        if isinstance(obj, dict):
            model = obj.get("model")
            if isinstance(model, str) and model and self.usage.model is None:
                self.usage.model = model


def _has_content(choice: Any) -> bool:
    """Tell whether an OpenAI choice carries generated text (not a finish chunk)."""
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return any(delta.get(k) for k in ("content", "reasoning", "tool_calls"))
    return bool(choice.get("text"))


def loads_object(data: bytes) -> dict[str, Any] | None:
    """Parse JSON; return it if it is an object, else ``None``."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _int(value: Any) -> int:
    """Read a count; a missing field is 0 (Go's omitempty drops zeros)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def estimate_prompt_tokens(data: Any) -> int:
    """Estimate prompt tokens from a parsed JSON request body: text chars / 4.

    Only text fields count (prompt, system, messages' content, input, ...);
    images and other base64 data do not.
    """
    return math.ceil(_text_length(data, False) / 4)


# Where each dialect puts its output cap (shared/ollama-wire.md §1-§4).
_OUTPUT_CAPS: Final = (
    "max_tokens",  # OpenAI chat and completions, Anthropic messages
    "max_completion_tokens",  # newer OpenAI chat clients
    "max_output_tokens",  # OpenAI Responses
)


def requested_output_tokens(data: Any) -> int | None:
    """Return the most tokens a parsed request body asks Ollama to generate.

    Native bodies carry ``options.num_predict`` (negative means no cap, as in
    Ollama); the compatibility dialects a top-level ``max_tokens`` or similar.
    ``None`` means the request sets no cap.
    """
    if not isinstance(data, dict):
        return None
    options = data.get("options")
    caps = [options.get("num_predict")] if isinstance(options, dict) else []
    caps += [data.get(name) for name in _OUTPUT_CAPS]
    found = [c for c in caps if isinstance(c, int) and not isinstance(c, bool)]
    positive = [c for c in found if c > 0]
    return min(positive) if positive else None


def _text_length(value: Any, in_text: bool) -> int:
    # Loops, not generators, strings counted in place: runs on every model body.
    if isinstance(value, str):
        return len(value) if in_text else 0
    total = 0
    if isinstance(value, list):
        for item in value:
            total += _text_length(item, in_text)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in _NOT_TEXT:
                continue
            if isinstance(item, str):
                total += len(item) if in_text or key in _TEXT_KEYS else 0
            else:
                total += _text_length(item, in_text or key in _TEXT_KEYS)
    return total
