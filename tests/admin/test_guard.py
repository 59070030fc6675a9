"""admin.guard: the Host allow-list, JSON-only and same-origin writes."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from authproxy.admin.app import create_admin_app
from authproxy.admin.guard import HostAllowList, request_host
from authproxy.config.load import load_config
from authproxy.keys.store import read_store
from tests.support.audit import read_audit
from tests.support.harness import MakeKey
from tests.support.logs import LogCapture
from tests.support.rawhttp import send_raw, status_and_json

JSON = {"Content-Type": "application/json"}


ALLOWED = ["admin.internal", "*.svc.cluster.local", "10.0.0.0/8", "fd00::/8"]


@dataclass
class Admin:
    """The admin API on a real socket, with an admin token and the trail path."""

    client: TestClient[Any, Any]
    token: str
    trail: Path
    keys: Path

    @property
    def port(self) -> int:
        assert self.client.port is not None
        return self.client.port

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def send(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, Any]:
        # No Content-Type means none at all (aiohttp would add its own).
        skip = () if "Content-Type" in headers else ("Content-Type",)
        resp = await self.client.request(
            method, path, headers=headers, data=body, skip_auto_headers=skip
        )
        return resp.status, await resp.json()


@pytest.fixture
async def admin(
    start_proxy, aiohttp_client, make_key: MakeKey, audit_path: Path, keys_path: Path
) -> Admin:
    ops = make_key("ops", scopes=["admin"])
    assert ops.token is not None
    proxy = await start_proxy({"admin.allowed_hosts": ALLOWED})
    client = await aiohttp_client(create_admin_app(proxy.app))
    return Admin(client, ops.token, audit_path.with_name("admin.jsonl"), keys_path)


WRITES = [
    ("POST", "/admin/keys", b'{"name":"csrf"}'),
    ("PATCH", "/admin/keys/alice", b'{"disabled":true}'),
    ("POST", "/admin/keys/alice/rotate", b""),
    ("POST", "/admin/keys/alice/revoke", b""),
    ("POST", "/admin/keys/alice/tokens", b"{}"),
]


SIMPLE_TYPES = [
    None,
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json-patch+json",
    "text/plain; x=application/json",
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=str)
@pytest.mark.parametrize("content_type", SIMPLE_TYPES, ids=str)
async def test_writes_must_say_json(
    admin: Admin, method, path, body, content_type, log_capture: LogCapture
) -> None:
    """A write without Content-Type: application/json is a 415 and changes nothing."""
    before = admin.keys.read_bytes()
    headers = dict(admin.auth)
    if content_type is not None:
        headers["Content-Type"] = content_type
    status, data = await admin.send(method, path, headers, body)
    assert (status, data) == (
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        {"error": "Content-Type must be application/json"},
    )
    assert admin.keys.read_bytes() == before
    assert read_audit(admin.trail) == []
    assert [e["reason"] for e in log_capture.events("admin_request_refused")] == [
        "content_type"
    ]


async def test_content_type_is_checked_before_authentication(admin: Admin) -> None:
    """Without credentials a form POST still gets 415, and the trail stays empty."""
    status, data = await admin.send(
        "POST",
        "/admin/keys",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"name=csrf",
    )
    assert (status, data["error"]) == (415, "Content-Type must be application/json")
    assert read_audit(admin.trail) == []


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON"],
)
async def test_json_writes_pass_even_without_a_body(admin: Admin, content_type) -> None:
    """application/json with any case or parameters passes, with or without a body."""
    headers = {**admin.auth, "Content-Type": content_type}
    status, _ = await admin.send("POST", "/admin/keys", headers, b'{"name":"ok"}')
    assert status == HTTPStatus.CREATED
    status, revoked = await admin.send("POST", "/admin/keys/ok/revoke", headers)
    assert (status, revoked["status"]) == (200, "revoked")
    assert "ok" in read_store(admin.keys).by_name


async def test_reads_need_no_content_type(admin: Admin) -> None:
    """GET endpoints stay as they were: no Content-Type needed."""
    status, data = await admin.send("GET", "/admin/keys", admin.auth)
    assert status == 200
    assert [k["name"] for k in data["keys"]] == ["alice", "ops"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "https://{host}"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://{host}"},
    ],
    ids=str,
)
async def test_cross_site_writes_are_refused(admin: Admin, headers) -> None:
    """A write from another origin (Origin or Sec-Fetch-Site) is a 403, even as JSON."""
    host = f"127.0.0.1:{admin.port}"
    extra = {k: v.format(host=host) for k, v in headers.items()}
    status, data = await admin.send(
        "POST", "/admin/keys", {**admin.auth, **JSON, **extra}, b'{"name":"x"}'
    )
    assert (status, data) == (403, {"error": "cross-site requests are refused"})
    assert "x" not in read_store(admin.keys).by_name


async def test_same_origin_writes_and_cross_site_reads_pass(admin: Admin) -> None:
    """The listener's own origin may write; a cross-site GET is not refused."""
    own = {"Origin": f"http://127.0.0.1:{admin.port}"}
    headers = {**admin.auth, **JSON, **own, "Sec-Fetch-Site": "same-origin"}
    status, _ = await admin.send("POST", "/admin/keys", headers, b'{"name":"x"}')
    assert status == HTTPStatus.CREATED
    # Chromium's form post from a page with Referrer-Policy: no-referrer.
    nulled = {**admin.auth, **JSON, "Origin": "null", "Sec-Fetch-Site": "same-origin"}
    status, _ = await admin.send("POST", "/admin/keys", nulled, b'{"name":"y"}')
    assert status == HTTPStatus.CREATED
    cross = {**admin.auth, "Origin": "http://evil.example", "Sec-Fetch-Site": "none"}
    status, _ = await admin.send("GET", "/admin/keys", cross)
    assert status == 200


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "127.0.0.1",
        "127.8.9.10:80",
        "localhost",
        "LocalHost:11436",
        "localhost.",
        "[::1]:11436",
        "[::ffff:127.0.0.1]",
        "admin.internal",
        "Admin.Internal:8080",
        "authproxy.ns.svc.cluster.local",
        "10.1.2.3:11436",
        "[fd00::5]",
    ],
)
async def test_allowed_hosts_are_served(admin: Admin, host: str) -> None:
    """Loopback names and addresses and admin.allowed_hosts entries are served."""
    headers = {**admin.auth, "Host": host.format(port=admin.port)}
    status, _ = await admin.send("GET", "/admin/keys", headers)
    assert status == 200


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "svc.cluster.local",
        "admin.internal.evil.example",
        "0.0.0.0",
        "11.0.0.1",
        "[::2]",
        "::1",
        "[::1",
        "[localhost]",
        "user@localhost",
        "localhost:abc",
        "local host",
        "",
    ],
)
async def test_other_hosts_are_misdirected(
    admin: Admin, host: str, log_capture: LogCapture
) -> None:
    """Any other Host (DNS rebinding) is a 421 on every route, before authentication."""
    expected = {"error": "this host name is not served here (admin.allowed_hosts)"}
    host = host.format(port=admin.port)
    for path in ("/admin/keys", "/admin/openapi.json", "/metrics"):
        status, data = await admin.send("GET", path, {**admin.auth, "Host": host})
        assert (status, data) == (HTTPStatus.MISDIRECTED_REQUEST, expected)
    status, data = await admin.send(
        "POST", "/admin/keys", {"Host": host, **JSON}, b'{"name":"x"}'
    )
    assert (status, data) == (421, expected)
    assert read_audit(admin.trail) == []
    refused = log_capture.events("admin_request_refused")
    assert [(e["reason"], e["status"]) for e in refused] == [("host", 421)] * 4


async def test_absolute_form_target_names_the_host(admin: Admin) -> None:
    """An absolute-form target's authority is the host that is checked (RFC 9112)."""
    port = admin.port
    request = (
        "GET http://evil.example/admin/openapi.json HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    status, data = status_and_json(await send_raw(port, request.encode()))
    assert status == HTTPStatus.MISDIRECTED_REQUEST
    assert "not served here" in data["error"]


async def test_a_request_without_host_is_refused(admin: Admin) -> None:
    """HTTP/1.0 may omit Host; the admin listener still requires one (400)."""
    port = admin.port
    reply = await send_raw(port, b"GET /admin/openapi.json HTTP/1.0\r\n\r\n")
    status, data = status_and_json(reply)
    assert (status, data) == (400, {"error": "a Host header is required"})
    ok = b"GET /admin/openapi.json HTTP/1.0\r\nHost: localhost\r\n\r\n"
    status, data = status_and_json(await send_raw(port, ok))
    assert (status, data["openapi"]) == (200, "3.1.0")


@pytest.mark.parametrize(
    ("listen", "allowed", "host", "served"),
    [
        ("127.0.0.1:11436", (), "localhost", True),
        ("admin.example:11436", (), "admin.example", True),
        ("Admin.Example.:11436", (), "admin.example", True),
        ("[fd00::1]:11436", (), "fd00::1", True),
        ("10.0.0.5:11436", (), "10.0.0.5", True),
        ("10.0.0.5:11436", (), "10.0.0.6", False),
        ("0.0.0.0:11436", (), "0.0.0.0", False),
        ("0.0.0.0:11436", (), "authproxy", False),
        ("[::]:11436", (), "authproxy", False),
        ("0.0.0.0:11436", ("authproxy",), "authproxy", True),
        ("0.0.0.0:11436", ("*.example",), "a.b.example", True),
        ("0.0.0.0:11436", ("*.example",), "example", False),
        ("0.0.0.0:11436", ("*.example",), "badexample", False),
        ("", (), "localhost", True),
    ],
)
def test_allow_list_from_config(listen, allowed, host, served) -> None:
    """The listen host is served unless it is a wildcard; the setting adds names."""
    config = load_config(
        None, {"admin.listen": listen, "admin.allowed_hosts": list(allowed)}
    ).admin
    assert HostAllowList.from_config(config).allows(host) is served


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("LOCALHOST:1", "localhost"),
        ("localhost.", "localhost"),
        ("localhost:", "localhost"),
        ("[::1]:8080", "::1"),
        ("[0:0::1]", "::1"),
        ("10.0.0.1:80", "10.0.0.1"),
        ("::1", None),
        ("[::1]x", None),
        ("[example]", None),
        ("a@b", None),
        ("a:b", None),
        ("a b", None),
        ("", None),
    ],
)
def test_request_host(value: str, host: str | None) -> None:
    """Host values parse to a bare lower-case host, or None when malformed."""
    assert request_host(value) == host
