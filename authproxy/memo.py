"""Bounded memos of client-chosen keys: header names, Connection values, paths.

A memo on the request path remembers an answer per exact string a client
sends (most requests repeat a few). The client chooses those strings, so a
memo keeps short keys only and is emptied when full: it can neither grow past
its size nor hold a header's worth of bytes per entry.
"""

from __future__ import annotations

from typing import Final, TypeVar

V = TypeVar("V")

MEMO_KEY_LENGTH: Final = 64  # characters of a remembered key at most


def remember(memo: dict[str, V], key: str, value: V, size: int) -> None:
    """Keep ``value`` under ``key`` in ``memo`` of at most ``size`` entries.

    A key longer than ``MEMO_KEY_LENGTH`` is not kept (its answer is worked
    out each time); a full memo is emptied first.
    """
    if len(key) <= MEMO_KEY_LENGTH:
        if len(memo) >= size:
            memo.clear()
        memo[key] = value
