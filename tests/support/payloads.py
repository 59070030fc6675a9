"""Request bodies and strings that several test files send."""

from __future__ import annotations

import re
from typing import Any, Final


def chat(
    content: str = "hi", *, model: str = "llama3.2", **fields: Any
) -> dict[str, Any]:
    """Return a one-message chat body (native /api/chat, /v1 and /v1/messages)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        **fields,
    }


# The fake answers every chat with "Hi there!" and counts 26 prompt, 4 output tokens.
CHAT: Final = chat()  # "hi": a prompt estimate of 1 token
SAY_HI: Final = chat("Say hi")  # a prompt estimate of 2 tokens
GENERATE: Final = {"model": "llama3.2", "prompt": "x"}
EMBED: Final = {"model": "nomic-embed-text", "input": "x"}


def blob_path(byte: str = "ab") -> str:
    """Return an /api/blobs path whose digest repeats ``byte`` (two hex digits)."""
    return "/api/blobs/sha256:" + byte * 32


# A note or model name that would rewrite a terminal, and how the CLI must show it.
NASTY: Final = "\x1b[31mred\x1b[0m\roverwritten\x07\x9b2J\u202eevil"
NASTY_SHOWN: Final = r"\x1b[31mred\x1b[0m\roverwritten\x07\x9b2J\u202eevil"
CONTROL: Final = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")  # all but newline
