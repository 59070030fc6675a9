"""auth.credentials: a table of good and bad credential headers, and a fuzz."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.auth.credentials import Credential, CredentialError, parse_credentials


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class TestParseCredentials:
    @pytest.mark.parametrize(
        ("pairs", "expected"),
        [
            ([("Authorization", "Bearer abc")], Credential("bearer", None, "abc")),
            ([("Authorization", "bearer   abc ")], Credential("bearer", None, "abc")),
            (
                [("Authorization", f"Basic {b64('u:p:q')}")],
                Credential("basic", "u", "p:q"),
            ),
            (
                [("Authorization", f"BASIC {b64('ü:pässwörd')}")],
                Credential("basic", "ü", "pässwörd"),
            ),
            ([("x-api-key", "abc")], Credential("x-api-key", None, "abc")),
            ([("X-Api-Key", " abc ")], Credential("x-api-key", None, "abc")),
            (
                [("Authorization", "Bearer a"), ("x-api-key", "b")],
                Credential("bearer", None, "a"),
            ),
        ],
        ids=[
            "bearer",
            "bearer-spaces",
            "basic-colon-in-password",
            "basic-utf8",
            "api-key",
            "api-key-case",
            "authorization-wins",
        ],
    )
    def test_good(self, pairs, expected) -> None:
        """Well-formed credentials parse into scheme, username and secret."""
        assert parse_credentials(headers(*pairs)) == expected

    @pytest.mark.parametrize(
        ("pairs", "reason"),
        [
            ([], "missing"),
            ([("Authorization", "Bearer")], "malformed"),
            ([("Authorization", "Bearer a b")], "malformed"),
            ([("Authorization", "Token abc")], "unsupported_scheme"),
            ([("Authorization", "Basic !!!")], "malformed"),
            ([("Authorization", f"Basic {b64('nocolon')}")], "malformed"),
            ([("Authorization", f"Basic {b64(':p')}")], "malformed"),
            ([("Authorization", f"Basic {b64('u:')}")], "malformed"),
            ([("Authorization", "Basic " + b64("u:p\x00"))], "malformed"),
            (
                [("Authorization", "Basic " + base64.b64encode(b"u:\xff").decode())],
                "malformed",
            ),
            ([("Authorization", "Bearer " + "a" * 4097)], "malformed"),
            ([("Authorization", "Bearer é")], "malformed"),
            (
                [("Authorization", "Bearer a"), ("Authorization", "Bearer a")],
                "multiple_credentials",
            ),
            ([("x-api-key", "a"), ("x-api-key", "b")], "multiple_credentials"),
            ([("x-api-key", "")], "malformed"),
        ],
        ids=[
            "none",
            "bearer-empty",
            "bearer-space",
            "other-scheme",
            "bad-base64",
            "no-colon",
            "no-user",
            "no-password",
            "nul",
            "not-utf8",
            "too-long",
            "non-ascii",
            "two-authorization",
            "two-api-keys",
            "empty-api-key",
        ],
    )
    def test_bad(self, pairs, reason) -> None:
        """Bad credentials raise CredentialError with a loggable reason."""
        with pytest.raises(CredentialError) as info:
            parse_credentials(headers(*pairs))
        assert info.value.reason == reason

    def test_repr_hides_the_secret(self) -> None:
        """A Credential's repr never shows the secret."""
        cred = Credential("basic", "alice", "hunter2hunter2")
        assert "hunter2" not in repr(cred)
        assert "alice" in repr(cred)


HEADER_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Authorization", "x-api-key", "X-Other"]), HEADER_TEXT
        ),
        max_size=3,
    )
)
def test_credential_parsing_never_crashes(headers: list[tuple[str, str]]) -> None:
    """Any header values parse into a credential or a CredentialError, nothing else."""
    reasons = {"missing", "malformed", "multiple_credentials", "unsupported_scheme"}
    try:
        result: Credential | str = parse_credentials(
            CIMultiDictProxy(CIMultiDict(headers))
        )
    except CredentialError as err:
        result = err.reason
    if isinstance(result, str):
        assert result in reasons
    else:
        assert result.secret
        assert result.scheme in {"bearer", "basic", "x-api-key"}
