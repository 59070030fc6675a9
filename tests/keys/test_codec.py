"""keys.codec: a key record as the store writes it, read back, and shown publicly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from authproxy.errors import KeyStoreError
from authproxy.keys.codec import (
    public_data,
    read_time,
    record_from_data,
    record_to_data,
)
from authproxy.keys.record import KeyLimits, KeyRecord, PreviousSecret
from authproxy.keys.sshkey import fingerprint_of
from tests.support.ollama import OllamaIdentity

NOW = datetime(2026, 11, 1, tzinfo=UTC)
HASH = (
    "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0"
    "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)
OLD, NEW = OllamaIdentity().blob, OllamaIdentity().blob


def token_record(**fields: Any) -> KeyRecord:
    values: dict[str, Any] = {
        "id": "abcdefghijkl",
        "name": "alice",
        "created_at": NOW,
        "hash": HASH,
        "fingerprint": "0123abcd",
        "limits": KeyLimits(requests_per_minute=5),
        "previous": (
            PreviousSecret(hash=HASH, fingerprint="89abcdef", until=NOW + timedelta(1)),
        ),
    }
    return KeyRecord(**{**values, **fields})


def ollama_record() -> KeyRecord:
    return KeyRecord(
        id="mnopqrstuvwx",
        name="laptop",
        kind="ollama",
        created_at=NOW,
        public_key=NEW,
        fingerprint=fingerprint_of(NEW),
        previous=(
            PreviousSecret(public_key=OLD, fingerprint=fingerprint_of(OLD), until=NOW),
        ),
    )


@pytest.mark.parametrize(
    "record",
    [token_record(), token_record(kind="password", fingerprint=None), ollama_record()],
    ids=["token", "password", "ollama"],
)
def test_records_round_trip(record: KeyRecord) -> None:
    """What record_to_data writes, record_from_data reads back equal."""
    assert record_from_data(record_to_data(record)) == record


def test_proofs_of_the_other_kind_are_not_written() -> None:
    """A token record has no public_key line, an ollama record no hash line."""
    assert "public_key" not in record_to_data(token_record())
    assert "hash" not in record_to_data(ollama_record())
    assert record_to_data(token_record())["previous"][0] == {
        "hash": HASH,
        "fingerprint": "89abcdef",
        "until": "2026-11-02T00:00:00Z",
    }


def test_public_data_hides_hashes_and_token_fingerprints() -> None:
    """Listings never show a hash or a token's fingerprint; previous keep only until."""
    data = public_data(token_record())
    assert "hash" not in data
    assert "fingerprint" not in data
    assert data["previous"] == [{"until": "2026-11-02T00:00:00Z"}]
    assert HASH not in str(data)


def test_public_data_keeps_an_ollama_keys_public_key() -> None:
    """An ollama key's public key and SHA256 fingerprint are public and shown."""
    data = public_data(ollama_record())
    assert (data["public_key"], data["fingerprint"]) == (NEW, fingerprint_of(NEW))
    assert data["previous"] == [
        {
            "until": "2026-11-01T00:00:00Z",
            "public_key": OLD,
            "fingerprint": fingerprint_of(OLD),
        }
    ]


def _data(record: KeyRecord, **changes: Any) -> dict[str, Any]:
    data = record_to_data(record)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_data(ollama_record(), hash=HASH), "an ollama key has no 'hash'"),
        (_data(ollama_record(), public_key=...), "missing or invalid 'public_key'"),
        (
            _data(ollama_record(), fingerprint="SHA256:x"),
            "'fingerprint' does not match",
        ),
        (_data(ollama_record(), public_key="AAAA"), "not an ssh-ed25519 public key"),
        (
            _data(token_record(), public_key=NEW),
            "only an ollama key has a 'public_key'",
        ),
        (_data(token_record(), fingerprint="SHA256:x"), "must be 8 hex digits"),
        (_data(token_record(), note=5), "'note' must be text"),
        (_data(token_record(), previous=[{"until": "x"}]), "'previous.hash' is not"),
        (_data(token_record(), previous=[{"x": 1}]), "'previous' entries need"),
        (
            _data(
                ollama_record(), previous=[{"public_key": OLD, "until": "2026-01-01"}]
            ),
            "previous.'fingerprint' does not match",
        ),
        (_data(token_record(), expires_at="soon"), "invalid 'expires_at'"),
        (_data(token_record(), name="bad name"), "invalid key name"),
    ],
    ids=[
        "ollama-with-hash",
        "ollama-without-key",
        "ollama-fingerprint",
        "ollama-bad-key",
        "token-with-key",
        "token-fingerprint",
        "note",
        "previous-hash",
        "previous-field",
        "previous-fingerprint",
        "time",
        "name",
    ],
)
def test_invalid_records_name_the_field(data: dict[str, Any], message: str) -> None:
    """A record that is not what the writer makes is refused, naming the field."""
    with pytest.raises(KeyStoreError, match=message) as info:
        record_from_data(data)
    assert HASH not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2026, 1, 2), datetime(2026, 1, 2, tzinfo=UTC)),
        # YAML reads an unquoted time without a zone.
        (datetime(2026, 1, 2, 3, 4), datetime(2026, 1, 2, 3, 4, tzinfo=UTC)),  # noqa: DTZ001
        ("2026-01-02T05:04:00+02:00", datetime(2026, 1, 2, 3, 4, tzinfo=UTC)),
    ],
    ids=["yaml-date", "yaml-datetime", "text"],
)
def test_times_from_hand_edited_files(value: Any, expected: datetime) -> None:
    """Unquoted YAML dates and times, and RFC 3339 text, are read as UTC."""
    assert read_time("created_at", value) == expected


def test_a_time_that_is_no_time_names_its_field() -> None:
    """A number where a time belongs is refused with the field's name."""
    with pytest.raises(KeyStoreError, match="invalid 'revoked_at'"):
        read_time("revoked_at", 5)
