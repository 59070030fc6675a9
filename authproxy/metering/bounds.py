"""Length bounds for client-controlled strings written to records, labels and logs.

A request chooses its model name (in the body, or in what the upstream echoes
back), its path and its method. Without a bound one 20 MB model name would
cost 20 MB in the audit log and, as a label, in every ``/metrics`` scrape.
Records keep a bounded prefix with a visible marker, so a request adds at most
a few KB anywhere; metric labels map over-long values to ``other``.

The bounds are in characters. JSON may write a control or non-ASCII
character as an escape of up to 12 bytes, so even then a record stays within a
few KB.
"""

from __future__ import annotations

from typing import Final, overload

# Far above any real model name ("hf.co/<user>/<repo>:<quant>" is ~60),
# so only a hostile or broken client is ever cut.
MAX_MODEL: Final = 256
# Ollama's paths are short (/api/blobs/sha256:<64 hex> is 82 characters,
# /v1/models/<model> at most MAX_MODEL more); a probe's first 512 say enough.
MAX_PATH: Final = 512
# The longest registered HTTP method (UPDATEREDIRECTREF) has 17 characters.
MAX_METHOD: Final = 32
# An IPv6 address with a zone is under 64; a trusted proxy may forward junk.
MAX_CLIENT: Final = 128
# Reasons are the proxy's own words (at most ~30); the bound is a backstop.
MAX_REASON: Final = 64
# A label longer than this is not a model name worth a series of its own.
MAX_LABEL: Final = 128


@overload
def clip(value: str, limit: int) -> str: ...
@overload
def clip(value: None, limit: int) -> None: ...
def clip(value: str | None, limit: int) -> str | None:
    """Return ``value`` cut to ``limit`` characters, marked with its full length.

    Example: ``clip("a" * 300, 256)`` is 256 ``a`` then ``...[300 chars]``.
    """
    if value is None or len(value) <= limit:
        return value
    return f"{value[:limit]}...[{len(value)} chars]"
