"""keys.lifecycle: create, update, rotate and revoke keys in the store file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from authproxy.config.model import Argon2Config
from authproxy.errors import KeyNotFoundError, KeyStoreError
from authproxy.keys.codec import describe, key_status
from authproxy.keys.lifecycle import (
    KeySpec,
    create_key,
    revoke_key,
    rotate_key,
    update_key,
)
from authproxy.keys.sshkey import fingerprint_of
from authproxy.keys.store import make_hasher, parse_token, read_store
from tests.support.ollama import OllamaIdentity

HASHER = make_hasher(Argon2Config(time_cost=1, memory_cost=8, parallelism=1))
NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "keys.yaml"


def test_a_token_key_gets_a_token_the_store_never_holds(store: Path) -> None:
    """The token names the key's id; the store keeps only its hash."""
    created = create_key(store, HASHER, KeySpec(name="svc"), now=NOW)
    assert created.token is not None
    key_id, secret = parse_token(created.token) or ("", "")
    assert key_id == created.record.id
    assert secret not in store.read_text()
    assert read_store(store).by_name["svc"] == created.record


def test_an_ollama_key_holds_a_public_key_and_no_token(store: Path) -> None:
    """An id_ed25519.pub line makes a key with no token and no hash."""
    identity = OllamaIdentity()
    created = create_key(
        store, HASHER, KeySpec(name="cli", ollama_public_key=identity.pub_line), now=NOW
    )
    record = created.record
    assert (created.token, record.kind, record.hash) == (None, "ollama", "")
    assert (record.public_key, record.fingerprint) == (
        identity.blob,
        fingerprint_of(identity.blob),
    )
    assert read_store(store).by_public_key[identity.blob] == record


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            KeySpec(name="x", password="a long password", ollama_public_key="ssh-..."),
            "a password or a public key, not both",
        ),
        (KeySpec(name="x", ollama_public_key="ssh-rsa AAAA"), "not an ssh-ed25519"),
        (KeySpec(name="x", password="short"), "password too short"),
        (KeySpec(name="x", note="n" * 501), "note: expected text of at most 500"),
        (KeySpec(name="x", expires_at=NOW), "expires_at: must be in the future"),
        (KeySpec(name="x", scopes=("root",)), "unknown scope 'root'"),
    ],
    ids=["both-proofs", "rsa-key", "short-password", "long-note", "past", "scope"],
)
def test_bad_specs_write_nothing(store: Path, spec: KeySpec, message: str) -> None:
    """An invalid key is refused with a message naming what is wrong."""
    with pytest.raises(KeyStoreError, match=message):
        create_key(store, HASHER, spec, now=NOW)
    assert not store.exists()


def test_a_public_key_belongs_to_one_key(store: Path) -> None:
    """Registering the same public key twice is refused, at create and at rotate."""
    first, second = OllamaIdentity(), OllamaIdentity()
    create_key(
        store, HASHER, KeySpec(name="a", ollama_public_key=first.pub_line), now=NOW
    )
    create_key(
        store, HASHER, KeySpec(name="b", ollama_public_key=second.pub_line), now=NOW
    )
    with pytest.raises(KeyStoreError):
        create_key(
            store, HASHER, KeySpec(name="c", ollama_public_key=first.pub_line), now=NOW
        )
    with pytest.raises(KeyStoreError, match="already belongs to a key"):
        rotate_key(
            store, HASHER, "b", grace=timedelta(0), now=NOW, public_key=first.pub_line
        )


def test_rotating_an_ollama_key_keeps_the_old_key_for_the_grace(store: Path) -> None:
    """The new public key works at once; the old one until now + grace."""
    old, new = OllamaIdentity(), OllamaIdentity()
    created = create_key(
        store, HASHER, KeySpec(name="cli", ollama_public_key=old.pub_line), now=NOW
    )
    rotated = rotate_key(
        store, HASHER, "cli", grace=timedelta(hours=1), now=NOW, public_key=new.pub_line
    )
    record = rotated.record
    assert (rotated.token, record.id) == (None, created.record.id)
    assert record.public_keys_at(NOW) == [new.blob, old.blob]
    assert record.public_keys_at(NOW + timedelta(hours=1)) == [new.blob]
    assert read_store(store).by_public_key[new.blob].id == record.id


@pytest.mark.parametrize(
    ("kind", "proof", "message"),
    [
        ("ollama", None, "rotated by registering a new public key"),
        ("ollama", "password", "only a password key has a password to change"),
        ("token", "public_key", "a public key is only for an ollama key"),
        ("token", "password", "only a password key has a password to change"),
        ("password", None, "only token and ollama keys can be rotated; change a"),
        ("password", "public_key", "a public key is only for an ollama key"),
    ],
)
def test_each_kind_rotates_its_own_way(
    store: Path, kind: str, proof: str | None, message: str
) -> None:
    """An ollama key rotates to a new public key, a password key to a new password."""
    spec = {
        "ollama": KeySpec(name="k", ollama_public_key=OllamaIdentity().pub_line),
        "token": KeySpec(name="k"),
        "password": KeySpec(name="k", password="a long password"),
    }[kind]
    create_key(store, HASHER, spec, now=NOW)
    before = store.read_bytes()
    new = {
        "public_key": OllamaIdentity().pub_line,
        "password": "another long password",
    }
    given = {proof: new[proof]} if proof else {}
    with pytest.raises(KeyStoreError, match=message):
        rotate_key(store, HASHER, "k", grace=timedelta(0), now=NOW, **given)
    assert store.read_bytes() == before


def test_a_new_password_keeps_the_old_one_for_the_grace(store: Path) -> None:
    """The new password's hash is current; the old one verifies until now + grace."""
    created = create_key(
        store, HASHER, KeySpec(name="human", password="the first password"), now=NOW
    )
    changed = rotate_key(
        store,
        HASHER,
        "human",
        grace=timedelta(hours=1),
        now=NOW,
        password="the second password",
    )
    record = changed.record
    assert (record.id, record.kind, changed.token) == (
        created.record.id,
        "password",
        None,
    )
    assert (record.fingerprint, record.previous[0].fingerprint) == (None, None)
    assert HASHER.verify(record.hash, "the second password")
    assert [h for h, _ in record.hashes_at(NOW)] == [record.hash, created.record.hash]
    assert [h for h, _ in record.hashes_at(NOW + timedelta(hours=1))] == [record.hash]
    assert "the second password" not in store.read_text()
    assert changed.as_dict(NOW)["previous_valid_until"] == "2026-11-01T01:00:00Z"


def test_a_new_password_without_grace_ends_the_old_one(store: Path) -> None:
    """With no grace only the new password verifies, and the reply says null."""
    create_key(
        store, HASHER, KeySpec(name="human", password="the first password"), now=NOW
    )
    changed = rotate_key(
        store, HASHER, "human", grace=timedelta(0), now=NOW, password="a second one!"
    )
    assert len(changed.record.hashes_at(NOW)) == 1
    assert changed.as_dict(NOW)["previous_valid_until"] is None
    with pytest.raises(KeyStoreError, match="password too short"):
        rotate_key(
            store, HASHER, "human", grace=timedelta(0), now=NOW, password="short"
        )


def test_a_token_rotation_drops_expired_previous_secrets(store: Path) -> None:
    """Each rotation keeps the secrets still in their grace, and no others."""
    create_key(store, HASHER, KeySpec(name="svc"), now=NOW)
    rotate_key(store, HASHER, "svc", grace=timedelta(hours=1), now=NOW)
    later = NOW + timedelta(hours=2)
    record = rotate_key(
        store, HASHER, "svc", grace=timedelta(hours=1), now=later
    ).record
    assert [p.until for p in record.previous] == [later + timedelta(hours=1)]
    assert len(record.hashes_at(later)) == 2


def test_disabling_ends_the_keys_jwts(store: Path) -> None:
    """Disabling sets tokens_valid_after; enabling again does not move it back."""
    create_key(store, HASHER, KeySpec(name="svc"), now=NOW)
    disabled = update_key(store, "svc", {"disabled": True}, now=NOW)
    assert disabled.tokens_valid_after == NOW
    later = NOW + timedelta(minutes=5)
    enabled = update_key(store, "svc", {"disabled": False}, now=later)
    assert (enabled.disabled, enabled.tokens_valid_after) == (False, NOW)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hash": "x"}, "hash: not a field that can be changed"),
        ({"expires_at": "tomorrow"}, "expires_at: expected a time or null"),
        ({"disabled": "yes"}, "disabled: expected true or false"),
        ({"note": 5}, "note: expected text"),
    ],
)
def test_updates_name_what_they_refuse(store: Path, changes, message: str) -> None:
    """An update with an unknown field or a bad value changes nothing."""
    create_key(store, HASHER, KeySpec(name="svc"), now=NOW)
    before = store.read_bytes()
    with pytest.raises(KeyStoreError, match=message):
        update_key(store, "svc", changes, now=NOW)
    assert store.read_bytes() == before


def test_revocation_is_for_good(store: Path) -> None:
    """A revoked key cannot rotate or come back; revoking it again changes nothing."""
    created = create_key(store, HASHER, KeySpec(name="svc"), now=NOW)
    rotate_key(store, HASHER, "svc", grace=timedelta(hours=1), now=NOW)
    record, changed = revoke_key(store, created.record.id, now=NOW)
    assert (changed, record.previous, key_status(record, NOW)) == (True, (), "revoked")
    assert revoke_key(store, "svc", now=NOW)[1] is False
    with pytest.raises(KeyStoreError, match="a revoked key cannot be rotated"):
        rotate_key(store, HASHER, "svc", grace=timedelta(0), now=NOW)
    create_key(store, HASHER, KeySpec(name="hu", password="a long password"), now=NOW)
    revoke_key(store, "hu", now=NOW)
    with pytest.raises(KeyStoreError, match="a revoked key cannot be rotated"):
        rotate_key(store, HASHER, "hu", grace=timedelta(0), now=NOW, password="x" * 12)
    with pytest.raises(KeyStoreError, match="cannot be enabled again"):
        update_key(store, "svc", {"disabled": False}, now=NOW)
    with pytest.raises(KeyNotFoundError, match="no key with id or name 'nobody'"):
        revoke_key(store, "nobody", now=NOW)


def test_status_and_public_description(store: Path) -> None:
    """A key is active, disabled or expired in time; describe() shows no secret."""
    expires = NOW + timedelta(days=1)
    record = create_key(
        store, HASHER, KeySpec(name="svc", expires_at=expires), now=NOW
    ).record
    assert key_status(record, NOW) == "active"
    assert key_status(record, expires) == "expired"
    disabled = update_key(store, "svc", {"disabled": True}, now=NOW)
    shown = describe(disabled, NOW)
    assert shown["status"] == "disabled"
    assert "hash" not in shown
    assert record.hash not in str(shown)


def test_create_and_rotate_replies_are_the_key_plus_its_token(store: Path) -> None:
    """The reply is describe() plus token; a rotation's adds previous_valid_until."""
    created = create_key(store, HASHER, KeySpec(name="svc"), now=NOW)
    assert created.as_dict(NOW) == {
        **describe(created.record, NOW),
        "token": created.token,
    }
    assert created.as_dict(NOW)["status"] == "active"
    later = NOW + timedelta(minutes=1, seconds=30)
    rotated = rotate_key(store, HASHER, "svc", grace=timedelta(days=1), now=later)
    assert rotated.as_dict(later) == {
        **describe(rotated.record, later),
        "token": rotated.token,
        "previous_valid_until": "2026-11-02T00:01:30Z",
    }
