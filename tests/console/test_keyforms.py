"""console.keyforms: form fields into the admin API's body shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from multidict import MultiDict, MultiDictProxy

from authproxy.admin.body import BadRequestError
from authproxy.console.keyforms import (
    changed_fields,
    confirmed,
    create_body,
    password_body,
    rotation_body,
    token_body,
    update_body,
)


def form(*pairs: tuple[str, Any]) -> MultiDictProxy[Any]:
    """A submitted form holding ``pairs`` (a name may repeat)."""
    return MultiDictProxy(MultiDict(pairs))


def test_a_token_key_form_gives_only_what_was_filled_in() -> None:
    """Empty fields are left out: the API's defaults apply."""
    body = create_body(
        form(
            ("name", " build "),
            ("kind", "token"),
            ("scopes", "inference"),
            ("scopes", "models:read"),
            ("models", "llama3*, , qwen*"),
            ("expires", ""),
            ("rpm", "60"),
            ("concurrency", ""),
            ("note", ""),
        )
    )
    assert body == {
        "name": "build",
        "scopes": ["inference", "models:read"],
        "models": ["llama3*", "qwen*"],
        "limits": {"requests_per_minute": 60},
    }


def test_each_kind_takes_its_own_field() -> None:
    """password for password keys (kept as typed), public_key for ollama keys."""
    password = create_body(
        form(("name", "c"), ("kind", "password"), ("password", " pw "))
    )
    assert password["password"] == " pw "
    ollama = create_body(
        form(("name", "d"), ("kind", "ollama"), ("public_key", "ssh-ed25519 X"))
    )
    assert ollama["ollama_public_key"] == "ssh-ed25519 X"
    assert "password" not in create_body(form(("name", "t"), ("password", "ignored")))


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ((("kind", "magic"),), "kind"),
        ((("kind", "password"),), "password: required"),
        ((("kind", "ollama"),), "public_key: required"),
        ((("rpm", "-1"),), "rpm"),
        ((("tokens_per_day", "1e6"),), "tokens_per_day"),
    ],
)
def test_bad_fields_are_named(pairs: tuple[tuple[str, str], ...], message: str) -> None:
    """The form's own field names appear in the refusal."""
    with pytest.raises(BadRequestError, match=message):
        create_body(form(("name", "x"), *pairs))


def test_the_edit_form_gives_every_field() -> None:
    """Unset limits are none, never clears the expiry, an empty note is none."""
    body = update_body(
        form(("scopes", "inference"), ("expires", "never"), ("rpm", "5"))
    )
    assert body == {
        "scopes": ["inference"],
        "models": [],
        "expires_at": None,
        "limits": {
            "requests_per_minute": 5,
            "concurrent": None,
            "tokens_per_day": None,
            "tokens_per_month": None,
        },
        "note": None,
    }


def test_only_changed_fields_are_kept() -> None:
    """Compared with the key's describe() view."""
    current = {
        "scopes": ["inference"],
        "models": [],
        "limits": {"concurrent": 2},
        "expires_at": "2030-01-01T00:00:00Z",
        "note": None,
    }
    changes = {
        "scopes": ["inference"],
        "models": ["a"],
        "limits": {"concurrent": 2, "tokens_per_day": None},
        "expires_at": datetime(2030, 1, 1, tzinfo=UTC),
        "note": "n",
    }
    assert changed_fields(changes, current) == {"models": ["a"], "note": "n"}


def test_confirmation_is_the_ticked_box() -> None:
    """confirm=yes passes; anything else is refused."""
    confirmed(form(("confirm", "yes")))
    for pairs in ((), (("confirm", "no"),), (("confirm", "YES!"),)):
        with pytest.raises(BadRequestError, match="confirmation"):
            confirmed(form(*pairs))


def test_rotation_password_and_token_bodies() -> None:
    """Defaults: no grace, 15 minutes, the key's scopes."""
    assert rotation_body(form()) == {"grace": "0s"}
    assert rotation_body(form(("grace", "1h"), ("public_key", "k"))) == {
        "grace": "1h",
        "ollama_public_key": "k",
    }
    assert password_body(form(("password", "p"))) == {"password": "p", "grace": "0s"}
    assert token_body(form()) == {"ttl": "15m"}
    assert token_body(form(("ttl", "1h"), ("scopes", "inference"))) == {
        "ttl": "1h",
        "scopes": ["inference"],
    }
