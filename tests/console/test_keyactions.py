"""console.keyactions: each key action as a form, checked and recorded as by the API."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support.admin import Stack
from tests.support.console import ConsoleClient, Page, admin_trail


async def key_of(stack: Stack, name: str) -> dict[str, Any]:
    """The key as the admin API describes it."""
    status, data = await stack.api("GET", f"/admin/keys/{name}")
    assert status == HTTPStatus.OK
    return data  # type: ignore[no-any-return]


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
    [entry] = [r for r in admin_trail(audit_path) if r["action"] == "update"]
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
    actions = [(r["action"], r["detail"]) for r in admin_trail(audit_path)]
    assert ("update", {"fields": ["disabled"]}) in actions
    assert ("revoke", {}) in actions


async def test_an_unknown_key_is_a_404_page(signed_in: ConsoleClient) -> None:
    """Acting on a key that does not exist: 404, not 500."""
    page = await signed_in.submit(
        "/admin/ui/keys/zzzzzzzzzzzz/revoke", {"confirm": "yes"}
    )
    assert page.status == HTTPStatus.NOT_FOUND
    assert (await signed_in.get("/admin/ui/keys/zzzzzzzzzzzz")).status == 404


async def test_export_downloads_the_store_as_keys_export_writes_it(
    signed_in: ConsoleClient, console_stack: Stack, token: str, audit_path: Path
) -> None:
    """A confirmed POST: keys.yaml with hashes and no token; recorded as export."""
    refused = await signed_in.submit("/admin/ui/keys/export", {})
    assert refused.status == HTTPStatus.BAD_REQUEST
    resp = await signed_in.client.post(
        "/admin/ui/keys/export",
        data={"confirm": "yes", "csrf_token": signed_in.csrf or ""},
        headers=signed_in.same_origin(),
    )
    assert resp.status == HTTPStatus.OK
    assert resp.headers["Content-Disposition"] == 'attachment; filename="keys.yaml"'
    assert resp.headers["Cache-Control"] == "no-store"
    text = await resp.text()
    data = yaml.safe_load(text)
    assert sorted(k["name"] for k in data["keys"]) == ["alice", "ops"]
    assert all(k["hash"].startswith("$argon2id$") for k in data["keys"])
    assert token not in text
    entry = admin_trail(audit_path)[-1]
    assert (entry["action"], entry["detail"], entry["source"]) == (
        "export",
        {"keys": 2},
        "console",
    )


async def import_file(browser: ConsoleClient, content: bytes, **fields: str) -> Page:
    """Send the import form with ``content`` as the chosen file (multipart)."""
    form = aiohttp.FormData()
    form.add_field("csrf_token", browser.csrf or "")
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field(
        "file", content, filename="keys.yaml", content_type="application/yaml"
    )
    resp = await browser.client.post(
        "/admin/ui/keys/import", data=form, headers=browser.same_origin()
    )
    return await browser.page(resp)


async def test_import_checks_the_file_and_replaces_only_when_asked(
    signed_in: ConsoleClient, console_stack: Stack, token: str, audit_path: Path
) -> None:
    """An exported store comes back in; garbage and an unticked replace are 400s."""
    resp = await signed_in.client.post(
        "/admin/ui/keys/export",
        data={"confirm": "yes", "csrf_token": signed_in.csrf or ""},
        headers=signed_in.same_origin(),
    )
    exported = await resp.read()
    status, _ = await console_stack.api("POST", "/admin/keys/alice/revoke")
    assert status == HTTPStatus.OK
    assert await console_stack.call(token) == HTTPStatus.UNAUTHORIZED
    page = await import_file(signed_in, exported, confirm="yes")
    assert page.status == HTTPStatus.BAD_REQUEST
    assert "replace" in page.doc.by_id("error").text
    page = await import_file(signed_in, b"keys: [1, 2", confirm="yes", replace="yes")
    assert page.status == HTTPStatus.BAD_REQUEST
    page = await import_file(signed_in, exported, replace="yes")
    assert page.status == HTTPStatus.BAD_REQUEST  # not confirmed
    page = await import_file(signed_in, exported, confirm="yes", replace="yes")
    assert page.status == HTTPStatus.OK, page.text
    assert page.doc.find(class_="flash").text == "Imported 2 key(s); replaced 2."  # type: ignore[union-attr]
    assert await console_stack.call(token) == HTTPStatus.OK  # alice as exported
    entry = admin_trail(audit_path)[-1]
    assert (entry["action"], entry["detail"]) == ("import", {"keys": 2, "replaced": 2})
