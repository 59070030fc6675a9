"""console.keyactions: each key action as a form, checked and recorded as by the API."""

from __future__ import annotations

import base64
import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import Stack
from tests.support.console import ConsoleClient, Page
from tests.support.ollama import OllamaIdentity


def trail(audit_path: Path) -> list[dict[str, Any]]:
    """The admin trail's records."""
    path = audit_path.with_name("admin.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


async def create(browser: ConsoleClient, **fields: Any) -> Page:
    """Send the new-key form (from its page, as a browser would)."""
    form = await browser.get("/admin/ui/keys/new")
    assert form.doc.find(id="create-form") is not None
    # What the form holds ticked already, unless the test says otherwise.
    ticked = [
        el.attrs["value"]
        for el in form.doc.find_all("input", name="scopes")
        if "checked" in el.attrs
    ]
    data: list[tuple[str, str]] = []
    for name, value in {"kind": "token", "scopes": ticked, **fields}.items():
        values = value if isinstance(value, list) else [value]
        data += [(name, str(v)) for v in values]
    return await browser.submit("/admin/ui/keys", data)


def new_token(page: Page, stack: Stack) -> str:
    """The secret the page shows once; remembered as a secret for the log checks."""
    value = page.doc.by_id("new-token").attrs["value"]
    stack.secrets.add(value)
    return value


async def key_of(stack: Stack, name: str) -> dict[str, Any]:
    """The key as the admin API describes it."""
    status, data = await stack.api("GET", f"/admin/keys/{name}")
    assert status == HTTPStatus.OK
    return data  # type: ignore[no-any-return]


async def test_create_shows_the_token_once_and_it_works(
    signed_in: ConsoleClient, console_stack: Stack, audit_path: Path
) -> None:
    """201, the token in #new-token with a copy button and a curl line; no-store."""
    page = await create(
        signed_in,
        name="build",
        scopes=["inference", "models:read"],
        models="llama3*, qwen*",
        rpm="60",
        tokens_per_day="100000",
        note="CI runners",
    )
    assert page.status == HTTPStatus.CREATED, page.text
    assert page.headers["Cache-Control"] == "no-store"
    token = new_token(page, console_stack)
    assert page.doc.by_id("new-token").attrs.get("readonly") is not None
    assert page.doc.by_id("copy-token").attrs["data-copy"] == "new-token"
    curl = page.doc.by_id("curl-line").text
    assert curl.startswith("curl http://127.0.0.1:")
    assert f"Authorization: Bearer {token}" in curl
    assert await console_stack.call(token) == HTTPStatus.OK
    key = await key_of(console_stack, "build")
    assert key["scopes"] == ["inference", "models:read"]
    assert key["models"] == ["llama3*", "qwen*"]
    assert key["limits"] == {"requests_per_minute": 60, "tokens_per_day": 100000}
    assert key["note"] == "CI runners"
    again = await signed_in.get(f"/admin/ui/keys/{key['id']}")
    assert token not in again.text
    [entry] = [r for r in trail(audit_path) if r["action"] == "create"]
    assert entry["source"] == "console"
    assert entry["actor"] == "ops"
    assert entry["detail"] == {"scopes": ["inference", "models:read"]}


async def test_a_password_key_and_an_ollama_key(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """The other kinds: no token on the page; the password works as Basic."""
    page = await create(
        signed_in, name="carol", kind="password", password="correct horse battery"
    )
    assert page.status == HTTPStatus.CREATED, page.text
    assert page.doc.find(id="new-token") is None
    basic = base64.b64encode(b"carol:correct horse battery").decode()
    resp = await console_stack.proxy.get(
        "/api/tags", headers={"Authorization": f"Basic {basic}"}
    )
    assert resp.status == HTTPStatus.OK
    identity = OllamaIdentity()
    page = await create(
        signed_in, name="dev", kind="ollama", public_key=identity.pub_line
    )
    assert page.status == HTTPStatus.CREATED, page.text
    assert (await key_of(console_stack, "dev"))["kind"] == "ollama"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "rpm": "fast"}, "rpm: expected a whole number"),
        ({"name": "x", "scopes": ["everything"]}, "everything"),
        ({"name": "x", "kind": "password", "password": "short"}, "password"),
        ({"name": "x", "kind": "password"}, "password: required"),
        ({"name": "x", "kind": "ollama", "public_key": "ssh-rsa AAAA"}, "public"),
        ({"name": "x", "kind": "magic"}, "kind"),
        ({"name": "x", "expires": "yesterday"}, "expires_at"),
        ({"name": "ops"}, "ops"),
    ],
)
async def test_bad_input_is_a_400_page_naming_the_field(
    signed_in: ConsoleClient, console_stack: Stack, fields: dict[str, Any], message: str
) -> None:
    """Validated by the API's parsers and the store: the same refusals, as pages."""
    page = await create(signed_in, **fields)
    assert page.status == HTTPStatus.BAD_REQUEST, page.text
    assert message in page.doc.by_id("error").text
    status, listed = await console_stack.api("GET", "/admin/keys")
    assert status == HTTPStatus.OK
    assert sorted(k["name"] for k in listed["keys"]) == ["alice", "ops"]


async def test_edit_changes_what_differs_and_records_those_fields(
    signed_in: ConsoleClient, console_stack: Stack, audit_path: Path
) -> None:
    """The edit form: scopes, models, limits, note, expiry; 303 and a flash."""
    alice = await key_of(console_stack, "alice")
    page = await signed_in.get(f"/admin/ui/keys/{alice['id']}")
    form = page.doc.by_id("edit-form")
    assert form.attrs["action"] == f"/admin/ui/keys/{alice['id']}/edit"
    data = [
        ("scopes", "inference"),
        ("models", "llama3*"),
        ("expires", "30d"),
        ("rpm", ""),
        ("concurrency", "2"),
        ("tokens_per_day", ""),
        ("tokens_per_month", ""),
        ("note", "trimmed"),
    ]
    done = await signed_in.submit(f"/admin/ui/keys/{alice['id']}/edit", data)
    assert done.status == HTTPStatus.OK
    assert done.url == f"/admin/ui/keys/{alice['id']}"
    assert "Saved: " in done.doc.find(class_="flash").text  # type: ignore[union-attr]
    key = await key_of(console_stack, "alice")
    assert key["scopes"] == ["inference"]
    assert key["models"] == ["llama3*"]
    assert key["limits"] == {"concurrent": 2}
    assert key["note"] == "trimmed"
    assert key["expires_at"] is not None
    [entry] = [r for r in trail(audit_path) if r["action"] == "update"]
    assert entry["detail"] == {
        "fields": ["expires_at", "limits", "models", "note", "scopes"]
    }
    # The flash shows once.
    again = await signed_in.get(f"/admin/ui/keys/{alice['id']}")
    assert again.doc.find(class_="flash") is None
    # The form now shows the key's values; sent back unchanged, nothing changes.
    form = again.doc.by_id("edit-form")
    same = [
        (el.attrs["name"], el.attrs.get("value", ""))
        for el in form.find_all("input")
        if el.attrs.get("type") != "checkbox" and el.attrs["name"] != "csrf_token"
    ]
    same += [("scopes", "inference"), ("note", "trimmed")]
    unchanged = await signed_in.submit(f"/admin/ui/keys/{alice['id']}/edit", same)
    assert unchanged.doc.find(class_="flash").text == "Nothing changed."  # type: ignore[union-attr]


@pytest.mark.parametrize("action", ["rotate", "disable", "revoke"])
async def test_dangerous_actions_need_the_confirmation_box(
    signed_in: ConsoleClient, console_stack: Stack, action: str
) -> None:
    """Without confirm=yes: 400 saying so, and the key is unchanged."""
    alice = await key_of(console_stack, "alice")
    page = await signed_in.get(f"/admin/ui/keys/{alice['id']}")
    box = page.doc.by_id(f"{action}-form").find("input", name="confirm")
    assert box is not None
    assert box.attrs["value"] == "yes"
    assert "required" in box.attrs
    refused = await signed_in.submit(f"/admin/ui/keys/{alice['id']}/{action}", {})
    assert refused.status == HTTPStatus.BAD_REQUEST
    assert "confirmation" in refused.doc.by_id("error").text
    assert await key_of(console_stack, "alice") == alice


async def test_rotate_with_grace_keeps_the_old_token_for_a_while(
    signed_in: ConsoleClient, console_stack: Stack, token: str, audit_path: Path
) -> None:
    """A new token at once; the old one until the grace runs out."""
    alice = await key_of(console_stack, "alice")
    page = await signed_in.submit(
        f"/admin/ui/keys/{alice['id']}/rotate", {"grace": "1h", "confirm": "yes"}
    )
    assert page.status == HTTPStatus.OK, page.text
    fresh = new_token(page, console_stack)
    assert fresh != token
    assert await console_stack.call(fresh) == HTTPStatus.OK
    assert await console_stack.call(token) == HTTPStatus.OK
    console_stack.clock.advance(hours=1, seconds=1)
    assert await console_stack.call(token) == HTTPStatus.UNAUTHORIZED
    [entry] = [r for r in trail(audit_path) if r["action"] == "rotate"]
    assert entry["detail"] == {"grace_seconds": 3600.0}


async def test_passwd_changes_a_password_key(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """The password form appears on a password key's page; the new one works."""
    await create(signed_in, name="carol", kind="password", password="first password 1")
    carol = await key_of(console_stack, "carol")
    page = await signed_in.get(f"/admin/ui/keys/{carol['id']}")
    assert page.doc.find(id="passwd-form") is not None
    assert page.doc.find(id="rotate-form") is None
    done = await signed_in.submit(
        f"/admin/ui/keys/{carol['id']}/passwd",
        {"password": "second password 2", "grace": "0s", "confirm": "yes"},
    )
    assert done.status == HTTPStatus.OK, done.text
    for password, status in (
        ("second password 2", HTTPStatus.OK),
        ("first password 1", HTTPStatus.UNAUTHORIZED),
    ):
        basic = base64.b64encode(f"carol:{password}".encode()).decode()
        resp = await console_stack.proxy.get(
            "/api/tags", headers={"Authorization": f"Basic {basic}"}
        )
        assert resp.status == status


async def test_a_minted_jwt_is_shown_once_and_works(
    signed_in: ConsoleClient, console_stack: Stack, audit_path: Path
) -> None:
    """The token form: a JWT with the chosen scopes and lifetime."""
    alice = await key_of(console_stack, "alice")
    page = await signed_in.submit(
        f"/admin/ui/keys/{alice['id']}/token",
        [("ttl", "10m"), ("scopes", "models:read")],
    )
    assert page.status == HTTPStatus.CREATED, page.text
    jwt = new_token(page, console_stack)
    assert jwt.count(".") == 2
    assert await console_stack.call(jwt) == HTTPStatus.OK
    resp = await console_stack.proxy.post(
        "/api/chat", json={}, headers={"Authorization": f"Bearer {jwt}"}
    )
    assert resp.status == HTTPStatus.FORBIDDEN  # no inference scope in this JWT
    [entry] = [r for r in trail(audit_path) if r["action"] == "token"]
    assert entry["detail"] == {"ttl": "10m", "scopes": ["models:read"]}


async def test_disable_enable_and_revoke_act_on_the_proxy_at_once(
    signed_in: ConsoleClient, console_stack: Stack, token: str, audit_path: Path
) -> None:
    """Disabled: refused; enabled: works; revoked: refused for good."""
    alice = await key_of(console_stack, "alice")
    url = f"/admin/ui/keys/{alice['id']}"
    page = await signed_in.submit(f"{url}/disable", {"confirm": "yes"})
    assert page.url == url
    assert page.doc.by_id("key-status").text == "disabled"
    assert page.doc.find(id="enable-form") is not None
    assert await console_stack.call(token) == HTTPStatus.UNAUTHORIZED
    page = await signed_in.submit(f"{url}/enable", {})
    assert page.doc.by_id("key-status").text == "active"
    assert await console_stack.call(token) == HTTPStatus.OK
    page = await signed_in.submit(f"{url}/revoke", {"confirm": "yes"})
    assert page.doc.by_id("key-status").text == "revoked"
    assert page.doc.find(id="revoke-form") is None
    assert await console_stack.call(token) == HTTPStatus.UNAUTHORIZED
    actions = [(r["action"], r["detail"]) for r in trail(audit_path)]
    assert ("update", {"fields": ["disabled"]}) in actions
    assert ("revoke", {}) in actions


async def test_an_unknown_key_is_a_404_page(signed_in: ConsoleClient) -> None:
    """Acting on a key that does not exist: 404, not 500."""
    page = await signed_in.submit(
        "/admin/ui/keys/zzzzzzzzzzzz/revoke", {"confirm": "yes"}
    )
    assert page.status == HTTPStatus.NOT_FOUND
    assert (await signed_in.get("/admin/ui/keys/zzzzzzzzzzzz")).status == 404
