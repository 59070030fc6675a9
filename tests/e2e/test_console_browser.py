"""The admin console's sign-in and key pages in a real headless browser, end to end.

One proxy stack and one browser serve the module (tests/e2e/conftest.py): the
proxy and the admin listener with the console on real loopback sockets, in
front of the fake Ollama, with three seeded keys and two weeks of traffic.
Each test signs in through the login form as a person would, acts through the
pages, and checks the effect where it counts: on the proxy port. The usage,
live, CSP and phone checks are in test_console_views.py.
"""

from __future__ import annotations

import csv
import io

from tests.support.audit import read_audit
from tests.support.browser import Console, browser_needed
from tests.support.pages import (
    act,
    create_key,
    proxy_status,
    read_token,
    sign_in,
    signed_in,
)
from tests.support.threadstack import ThreadStack

pytestmark = browser_needed


def test_screenshots_of_the_sign_in_and_key_pages(
    console: Console, browser_stack: ThreadStack
) -> None:
    """Each page renders from the seeded state; screenshots go to the artifacts."""
    console.open("/admin/ui/")
    console.wait_for("#login-form")
    console.screenshot("login", docs=True)
    signed_in(console, browser_stack)
    console.wait_for("table#keys-table")
    console.screenshot("keys", docs=True)
    console.open(f"/admin/ui/keys/{browser_stack.keys['build-bot'].record.id}")
    console.wait_for("figure#key-usage-chart svg")
    console.screenshot("key", docs=True)
    create_key(console, browser_stack, "docs-example")
    console.screenshot("new-token", docs=True)


def test_sign_in_refuses_a_bad_token_and_admits_the_admin_key(
    console: Console, browser_stack: ThreadStack
) -> None:
    """A wrong token gets "Sign-in failed" and no session; the admin key gets in."""
    console.open("/admin/ui/keys")
    assert console.path.startswith("/admin/ui/login")
    sign_in(console, "ap_notakey_" + "x" * 32)
    assert "Sign-in failed" in console.text(".error")
    assert console.path.startswith("/admin/ui/login")
    console.open("/admin/ui/keys")
    assert console.path.startswith("/admin/ui/login")
    signed_in(console, browser_stack)
    ops = browser_stack.keys["ops"].record.id
    assert console.find_all(f'tr[data-key-id="{ops}"]')


def test_browsing_the_console_is_not_a_failed_authentication(
    console: Console, browser_stack: ThreadStack
) -> None:
    """Many page views (more than limits.auth_failures) leave this client unblocked.

    A browser asks each page's origin for /favicon.ico unless the page names
    an icon; on the admin listener that is an API request without
    credentials, which the failure limiter counts, and 20 of them blocked the
    admin's address on the proxy port too.
    """
    signed_in(console, browser_stack)
    failures = browser_stack.config.limits.auth_failures
    for _ in range(failures + 5):
        console.open("/admin/ui/keys")
        console.wait_for("table#keys-table")
    token = browser_stack.keys["notebook"].token
    assert token is not None
    assert proxy_status(browser_stack, token) == 200


def test_a_new_key_shows_its_token_once_and_it_works_on_the_proxy(
    console: Console, browser_stack: ThreadStack
) -> None:
    """The created key's token is shown once, with a curl line, and opens the proxy."""
    signed_in(console, browser_stack)
    key_id, token = create_key(console, browser_stack, "browser-made")
    assert "Bearer" in console.text("#curl-line")
    assert console.find_all("button#copy-token")
    status, headers, _ = console.fetch(f"/admin/ui/keys/{key_id}")
    assert status == 200
    assert "no-store" in headers["Cache-Control"]
    assert proxy_status(browser_stack, token) == 200
    console.open(f"/admin/ui/keys/{key_id}")
    console.wait_for("#key-detail")
    assert token not in console.driver.page_source
    assert not console.find_all("#new-token")


def test_rotate_with_grace_gives_a_new_token_and_keeps_the_old_one(
    console: Console, browser_stack: ThreadStack
) -> None:
    """Rotating with a grace period shows a new token; both work during the grace."""
    signed_in(console, browser_stack)
    key_id, old = create_key(console, browser_stack, "rotated")
    act(console, key_id, "#rotate-form", grace="1h", confirm=True)
    new = read_token(console, browser_stack)
    assert new != old
    assert proxy_status(browser_stack, new) == 200
    assert proxy_status(browser_stack, old) == 200


def test_revoke_needs_confirmation_and_the_proxy_then_refuses_the_key(
    console: Console, browser_stack: ThreadStack
) -> None:
    """Revoke does not go without the box ticked; once revoked, the proxy says 401."""
    signed_in(console, browser_stack)
    key_id, token = create_key(console, browser_stack, "revoked")
    console.open(f"/admin/ui/keys/{key_id}")
    form = console.wait_for("#revoke-form")
    assert console.driver.execute_script("return !arguments[0].checkValidity()", form)
    assert proxy_status(browser_stack, token) == 200
    act(console, key_id, "#revoke-form", confirm=True)
    assert console.text(".flash")
    assert proxy_status(browser_stack, token) == 401


def test_disable_then_enable(console: Console, browser_stack: ThreadStack) -> None:
    """A disabled key is refused on the proxy port; enabled again, it works."""
    signed_in(console, browser_stack)
    key_id, token = create_key(console, browser_stack, "toggled")
    act(console, key_id, "#disable-form", confirm=True)
    assert console.text(".flash")
    assert proxy_status(browser_stack, token) == 401
    act(console, key_id, "#enable-form")
    assert proxy_status(browser_stack, token) == 200


def test_edit_limits_models_and_note(
    console: Console, browser_stack: ThreadStack
) -> None:
    """Edited limits and note show on the key page; the model list binds the proxy."""
    signed_in(console, browser_stack)
    key_id, token = create_key(console, browser_stack, "edited")
    assert proxy_status(browser_stack, token, "qwen3:8b") == 200
    act(
        console,
        key_id,
        "#edit-form",
        rpm="30",
        models="llama3.2:latest",
        note="edited in a browser",
    )
    assert console.text(".flash")
    detail = console.text("#key-detail")
    assert "30" in detail
    assert "edited in a browser" in detail
    assert proxy_status(browser_stack, token, "qwen3:8b") == 403
    assert proxy_status(browser_stack, token, "llama3.2:latest") == 200


def test_the_key_chart_downloads_as_csv(
    console: Console, browser_stack: ThreadStack
) -> None:
    """The key page's chart links a CSV file of the key's tokens per day."""
    signed_in(console, browser_stack)
    console.open(f"/admin/ui/keys/{browser_stack.keys['grafana'].record.id}")
    link = console.wait_for("figure#key-usage-chart a.csv-link").get_attribute("href")
    assert link is not None
    assert link.startswith(console.base + "/admin/ui/")
    status, headers, body = console.fetch(link[len(console.base) :])
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"].startswith("attachment")
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert len(rows) == 31  # a header, then the chart's 30 days
    key_id = browser_stack.keys["grafana"].record.id
    seeded = [r for r in read_audit(browser_stack.audit_path) if r["key_id"] == key_id]
    assert sum(int(row[2]) for row in rows[1:]) == sum(
        r["total_tokens"] for r in seeded
    )


def test_sign_out_ends_the_session(
    console: Console, browser_stack: ThreadStack
) -> None:
    """After sign-out the console asks to sign in again, even with the old cookie."""
    signed_in(console, browser_stack)
    old = console.cookie_header()
    console.submit("#logout-form")
    assert console.path.startswith("/admin/ui/login")
    console.open("/admin/ui/keys")
    assert console.path.startswith("/admin/ui/login")
    status, headers, _ = console.fetch("/admin/ui/keys", cookie=old)
    assert status == 303
    assert "/admin/ui/login" in headers["Location"]


def test_an_action_works_without_javascript(
    nojs_console: Console, browser_stack: ThreadStack
) -> None:
    """With JavaScript off, an admin signs in, creates a key and disables it."""
    console = nojs_console
    signed_in(console, browser_stack)
    key_id, token = create_key(console, browser_stack, "no-script")
    assert proxy_status(browser_stack, token) == 200
    act(console, key_id, "#disable-form", confirm=True)
    assert console.text(".flash")
    assert proxy_status(browser_stack, token) == 401
