"""memo: bounded memos of client-chosen keys."""

from __future__ import annotations

from authproxy.memo import MEMO_KEY_LENGTH, remember


def test_short_keys_are_kept() -> None:
    """A key of up to MEMO_KEY_LENGTH characters is remembered."""
    memo: dict[str, int] = {}
    remember(memo, "k" * MEMO_KEY_LENGTH, 1, 4)
    assert memo == {"k" * MEMO_KEY_LENGTH: 1}


def test_long_keys_are_not_kept() -> None:
    """A longer key leaves the memo as it was."""
    memo = {"a": 1}
    remember(memo, "k" * (MEMO_KEY_LENGTH + 1), 2, 4)
    assert memo == {"a": 1}


def test_a_full_memo_is_emptied_first() -> None:
    """The memo never holds more than its size; the newest answer survives."""
    memo: dict[str, int] = {}
    for n in range(9):
        remember(memo, f"k{n}", n, 4)
        assert len(memo) <= 4
    assert memo["k8"] == 8
