"""What a person does on the admin console, as steps for browser tests.

Each step uses the pages as the console contract names them (form and
element ids); ``proxy_status`` checks the effect where it counts, on the
proxy port.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

from authproxy.keys.store import parse_token
from tests.support.browser import Console
from tests.support.threadstack import ThreadStack


def proxy_status(stack: ThreadStack, token: str, model: str | None = None) -> int:
    """Send one request through the proxy port with ``token``; return its status.

    Without ``model`` it lists models; with one it generates (metered tokens).
    """
    body = None
    if model is not None:
        body = json.dumps({"model": model, "prompt": "hi", "stream": False}).encode()
    request = urllib.request.Request(  # noqa: S310 - our loopback listener
        stack.proxy_url + ("/api/generate" if body else "/api/tags"),
        data=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        with err:
            return err.code


def sign_in(console: Console, token: str) -> None:
    """Fill in and send the login form."""
    console.open("/admin/ui/login")
    console.fill("#login-form", {"token": token})
    console.submit("#login-form")


def signed_in(console: Console, stack: ThreadStack) -> None:
    """Sign in with the stack's admin key and land on the keys page."""
    sign_in(console, stack.admin_token)
    assert console.path.startswith("/admin/ui/keys")


def read_token(console: Console, stack: ThreadStack) -> str:
    """Return the token a secret page shows once (and remember it as a secret)."""
    token = console.wait_for("#new-token").get_attribute("value")
    assert token
    stack.secrets.add(token)
    return token


def create_key(console: Console, stack: ThreadStack, name: str) -> tuple[str, str]:
    """Create a token key through the new-key form; return its id and token."""
    console.open("/admin/ui/keys")
    console.wait_for("#new-key").click()
    console.fill("#create-form", {"name": name})
    console.submit("#create-form")
    token = read_token(console, stack)
    parsed = parse_token(token)
    assert parsed is not None
    return parsed[0], token


def act(console: Console, key_id: str, form: str, **fields: str | bool) -> None:
    """Send one of the key page's action forms."""
    console.open(f"/admin/ui/keys/{key_id}")
    console.fill(form, fields)
    console.submit(form)


_DUPLICATE_IDS_JS = """
const seen = {};
for (const el of document.querySelectorAll('[id]')) {
  seen[el.id] = (seen[el.id] || 0) + 1;
}
return Object.keys(seen).filter(id => seen[id] > 1).sort();
"""


def page_faults(console: Console) -> list[str]:
    """Return what is wrong with the page's markup as the browser built it.

    Tests and console.js find elements by id, so an id must be unique; a
    title or main id holding markup means a template block went astray.
    """
    faults = [
        f"duplicate id {name}"
        for name in console.driver.execute_script(_DUPLICATE_IDS_JS)
    ]
    title = str(console.driver.title)
    if "<" in title or not title.endswith("authproxy"):
        faults.append(f"title {title[:60]!r}")
    main = str(
        console.driver.execute_script("return document.querySelector('main').id")
    )
    if not re.fullmatch(r"[a-z][a-z0-9-]*", main):
        faults.append(f"main id {main[:60]!r}")
    return faults
