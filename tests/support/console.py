"""Drive the admin console over HTTP like a browser without JavaScript.

``parse_html`` builds a small element tree (html.parser) with lookups by id,
tag and attribute; ``ConsoleClient`` signs in through the login form, keeps
the cookies, reads each page's CSRF token and posts forms as a browser
would (``application/x-www-form-urlencoded``, same-origin headers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Final

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

VOID: Final = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)


@dataclass
class Element:
    """One HTML element: its tag, attributes, children and text."""

    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The element's text, its children's included, whitespace collapsed."""
        return " ".join("".join(self._texts()).split())

    def _texts(self) -> Iterator[str]:
        yield from self.parts
        for child in self.children:
            yield " "
            yield from child._texts()

    def iter(self) -> Iterator[Element]:
        """Yield this element and every element below it, in document order."""
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Return the elements with ``tag`` (any if None) and these attribute values.

        ``class_`` matches one class among the element's classes.
        """
        wanted = {k.rstrip("_"): v for k, v in attrs.items()}
        found = []
        for el in self.iter():
            if tag is not None and el.tag != tag:
                continue
            if all(
                (v in el.attrs.get("class", "").split())
                if k == "class"
                else el.attrs.get(k) == v
                for k, v in wanted.items()
            ):
                found.append(el)
        return found

    def find(self, tag: str | None = None, **attrs: str) -> Element | None:
        """Return the first match of ``find_all``, or ``None``."""
        matches = self.find_all(tag, **attrs)
        return matches[0] if matches else None

    def by_id(self, element_id: str) -> Element:
        """Return the element with this id; fail the test if there is none."""
        el = self.find(id=element_id)
        assert el is not None, f"no element #{element_id}"
        return el

    def value_of(self, name: str) -> str | None:
        """Return the ``value`` of the first input named ``name`` below this one."""
        el = self.find("input", name=name)
        return None if el is None else el.attrs.get("value", "")


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = Element(tag, {k: v if v is not None else "" for k, v in attrs})
        self.stack[-1].children.append(el)
        if tag not in VOID:
            self.stack.append(el)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(
            Element(tag, {k: v if v is not None else "" for k, v in attrs})
        )

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def admin_trail(audit_path: Path) -> list[dict[str, Any]]:
    """Return the admin trail's records (``admin.jsonl`` beside ``audit_path``)."""
    path = audit_path.with_name("admin.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def parse_html(text: str) -> Element:
    """Parse an HTML document into an ``Element`` tree (its root is #document)."""
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


@dataclass
class Page:
    """A fetched page: the response status, headers and parsed document."""

    status: int
    headers: Any
    text: str
    doc: Element
    url: str = ""  # the path and query of the page (after redirects)

    @property
    def secret(self) -> str | None:
        """The token or JWT a secret page shows once in ``#new-token``, if any."""
        el = self.doc.find(id="new-token")
        return None if el is None else el.attrs.get("value")

    @property
    def csrf(self) -> str:
        """The first ``csrf_token`` on the page (every form carries the same)."""
        token = self.doc.value_of("csrf_token")
        assert token, "no csrf_token on the page"
        return token


class ConsoleClient:
    """A browser without JavaScript on the admin listener's console."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        """Drive ``client`` (an aiohttp test client of the admin listener app)."""
        self.client = client
        self.csrf: str | None = None

    def same_origin(self) -> dict[str, str]:
        """Headers a browser adds to a same-origin form post."""
        origin = str(self.client.make_url("/").origin())
        return {"Origin": origin, "Sec-Fetch-Site": "same-origin"}

    async def page(self, response: ClientResponse) -> Page:
        """Read ``response`` as a page (and remember its CSRF token)."""
        text = await response.text()
        doc = parse_html(text)
        token = doc.value_of("csrf_token")
        if token and response.url.path != "/admin/ui/login":
            self.csrf = token
        return Page(response.status, response.headers, text, doc, response.url.path_qs)

    async def get(self, path: str, **kwargs: Any) -> Page:
        """GET a console page, following redirects."""
        return await self.page(await self.client.get(path, **kwargs))

    async def sign_in(self, token: str, next_: str | None = None) -> Page:
        """Fill in and send the login form; return the page it leads to."""
        query = f"?next={next_}" if next_ else ""
        form = await self.get(f"/admin/ui/login{query}")
        data = {"csrf_token": form.csrf, "token": token}
        nxt = form.doc.value_of("next")
        if nxt:
            data["next"] = nxt
        resp = await self.client.post(
            "/admin/ui/login", data=data, headers=self.same_origin()
        )
        return await self.page(resp)

    async def submit(
        self,
        path: str,
        data: dict[str, Any] | list[tuple[str, str]] | None = None,
        *,
        csrf: str | None = None,
        allow_redirects: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Page:
        """POST a form with the session's CSRF token (or ``csrf``), like a browser.

        A ``data`` list repeats a field (several ``scopes`` checkboxes).
        """
        if self.csrf is None and csrf is None:
            await self.get("/admin/ui/keys")
        token = csrf if csrf is not None else self.csrf
        fields = list(data.items()) if isinstance(data, dict) else list(data or [])
        fields.append(("csrf_token", token or ""))
        resp = await self.client.post(
            path,
            data=fields,
            headers={**self.same_origin(), **(headers or {})},
            allow_redirects=allow_redirects,
        )
        return await self.page(resp)

    async def create_key(self, **fields: Any) -> Page:
        """Fill in the new-key form as a browser would and send it.

        The form's ticked scopes are sent unless ``scopes`` is given; a list
        value sends its field once per item.
        """
        form = await self.get("/admin/ui/keys/new")
        ticked = [
            el.attrs["value"]
            for el in form.doc.by_id("create-form").find_all("input", name="scopes")
            if "checked" in el.attrs
        ]
        data: list[tuple[str, str]] = []
        for name, value in {"kind": "token", "scopes": ticked, **fields}.items():
            values = value if isinstance(value, list) else [value]
            data += [(name, str(v)) for v in values]
        return await self.submit("/admin/ui/keys", data)

    async def sign_out(self) -> Page:
        """Send the sign-out form from the navigation bar."""
        return await self.submit("/admin/ui/logout")

    def cookie(self, name: str) -> str | None:
        """Return the value of the cookie ``name`` the browser holds, if any."""
        for morsel in self.client.session.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None
