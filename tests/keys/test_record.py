"""keys.record: names, scopes, model lists and limits a record may hold."""

from __future__ import annotations

import pytest

from authproxy.errors import KeyStoreError
from authproxy.keys.store import (
    validate_name,
)


class TestTokens:
    @pytest.mark.parametrize(
        "name", ["", "-x", "a b", "a:b", "x" * 65, "ap_abcdefghijkl_" + "a" * 43]
    )
    def test_bad_names(self, name: str) -> None:
        """Names must be safe Basic usernames and never look like tokens."""
        with pytest.raises(KeyStoreError, match="invalid key name"):
            validate_name(name)
