"""Recorded Ollama bodies, built with the tests' byte-exact wire encoders."""

from __future__ import annotations

import json
from typing import Final

from tests.support.fake_ollama import wire

MODEL: Final = "llama3.2"
CHAT_PATH: Final = "/api/chat"
CHAT_CONTENT_TYPE: Final = wire.GIN_JSON
STREAM_CONTENT_TYPE: Final = wire.NDJSON

# What a client sends: a short, non-streamed chat request.
CHAT_REQUEST: Final = json.dumps(
    {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        "stream": False,
    },
    separators=(",", ":"),
).encode()

# What Ollama answers to it (gin c.JSON: no trailing newline).
CHAT_REPLY: Final = wire.chat_final(
    MODEL,
    content=(
        "The sky looks blue because air molecules scatter short (blue) "
        "wavelengths of sunlight far more than long (red) ones."
    ),
    prompt_eval_count=31,
    eval_count=27,
)

STREAM_REQUEST: Final = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Count."}]},
    separators=(",", ":"),
).encode()

_CHUNK_HEAD: Final = b'{"model":"' + MODEL.encode() + b'","created_at":"'
_CHUNK_MID: Final = b'","message":{"role":"assistant","content":"t='
_CHUNK_TAIL: Final = b'"},"done":false}\n'
STAMP_MARK: Final = b'"content":"t='


def stamped_chunk(created_at: str, stamp_ns: int) -> bytes:
    """Return one NDJSON chat chunk whose content carries its send time.

    The bytes equal ``wire.chat_chunk`` for the content ``t=<stamp_ns>``; the
    template only avoids ``json.dumps`` on the hot path.
    """
    return b"%s%s%s%d%s" % (
        _CHUNK_HEAD,
        created_at.encode(),
        _CHUNK_MID,
        stamp_ns,
        _CHUNK_TAIL,
    )


def final_chunk(chunks: int) -> bytes:
    """Return the closing ``done:true`` line of a stream of ``chunks`` chunks."""
    return wire.chat_final(MODEL, prompt_eval_count=12, eval_count=chunks) + b"\n"


def check_template() -> None:
    """Fail fast if the template drifts from the wire encoder's bytes."""
    expected = wire.chat_chunk(MODEL, "t=123")
    created_at = json.loads(expected)["created_at"]
    if stamped_chunk(created_at, 123) != expected:
        raise AssertionError("stamped_chunk no longer matches wire.chat_chunk")
