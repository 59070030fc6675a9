"""The audit line format written out independently, to check the sealer against.

``docs/audit-and-usage.md``: one compact JSON object per line, the record's
fields in order, then ``seq``, ``prev_hash`` (the previous line's ``hash``) and
``hash``, the SHA-256 of the line's bytes with the ``hash`` field removed. Built
here with the standard library's ``json`` rather than orjson, the way a reader
of the docs would, so it shares no code with ``metering.chain``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from authproxy.metering.chain import ChainState
from authproxy.policy.routes import RouteClass

# Records that exercise the encoder: a real request's record (its route a
# StrEnum, as ``build_record`` makes it), non-ASCII and control characters,
# long strings, nesting, no fields at all, and fields the chain replaces.
RECORDS: Final[list[dict[str, Any]]] = [
    {
        "ts": "2026-12-03T08:29:00.469449Z",
        "request_id": "b15ed44776e8e81b5aef75caf1d5a098",
        "replica": "vm",
        "key_id": "a2b7i5owl5ym",
        "key_name": "bench",
        "scheme": "bearer",
        "client": "127.0.0.1",
        "method": "POST",
        "path": "/api/chat",
        "route": RouteClass.INFERENCE,
        "model": "llama3.2",
        "status": 200,
        "stream": False,
        "outcome": "completed",
        "reason": None,
        "prompt_tokens": 31,
        "completion_tokens": 27,
        "total_tokens": 58,
        "usage_exact": True,
        "total_duration": 187459021,
        "load_duration": 38112604,
        "prompt_eval_duration": 52318000,
        "eval_duration": 39004000,
        "ttfb_ms": 204.783,
        "duration_ms": 204.925,
        "bytes_in": 97,
        "bytes_out": 406,
    },
    {"model": "qwen2.5:7b-instruct", "path": "/api/generate?ü=ß", "key_name": "Zoë"},
    {
        "note": '日本語 \u2028\u2029 😀 "quoted" back\\slash',
        "ctl": "\x00\x1f\x7f\t\n\r",
    },
    {"long": "x" * 200_000, "wide": "é" * 5_000},
    {"nested": {"a": [1, 2.5, None, True, "z"]}, "empty": {}, "list": []},
    {},
    {"seq": 7, "b": "x"},
    {"prev_hash": "p", "n": -1},
    {"route": RouteClass.MODELS_READ, "status": 404, "reason": "outside_root_path"},
]


def reference_lines(
    records: list[dict[str, Any]], state: ChainState
) -> tuple[list[bytes], ChainState]:
    """Return the lines of ``records`` chained after ``state``, by the docs alone."""
    lines: list[bytes] = []
    seq, prev = state.seq, state.hash
    for record in records:
        seq += 1
        fields = {**record, "seq": seq, "prev_hash": prev}
        body = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
        prev = hashlib.sha256(body).hexdigest()
        lines.append(body[:-1] + f',"hash":"{prev}"}}\n'.encode())
    return lines, ChainState(seq, prev)
