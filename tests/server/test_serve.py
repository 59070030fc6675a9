"""server.serve: start-up refusals, and the plain-HTTP redirect listener."""

from __future__ import annotations

import asyncio
import io
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiohttp import web

from authproxy.config.load import load_config
from authproxy.server.serve import bootstrap_keys, create_redirect_runner
from tests.support.harness import CHEAP_ARGON2, nested
from tests.support.logs import LogCapture, Secrets
from tests.support.rawhttp import connect, parse, send_raw


async def test_serve_refuses_a_symlinked_audit_file(
    config_file: Path, audit_path: Path, tmp_path: Path, key
) -> None:
    """serve exits 2 with one line naming audit.file when it is a symlink."""
    victim = tmp_path / "victim"
    victim.write_text("")
    audit_path.parent.mkdir(parents=True)
    audit_path.symlink_to(victim)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert err.decode() == (
        f"authproxy: audit.file: cannot open {audit_path}: is a symbolic link; "
        "refusing to follow it\n"
    )
    assert victim.read_text() == ""


async def test_bad_audit_file_stops_start_up_before_a_token_is_made(
    config_file: Path, audit_path: Path, keys_path: Path, tmp_path: Path
) -> None:
    """On a first run, an unusable audit.file stops serve before the store exists."""
    audit_path.parent.mkdir(parents=True)
    audit_path.symlink_to(tmp_path / "victim")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"audit.file: cannot open" in err
    assert out == b""
    assert not keys_path.exists()


async def test_serve_refuses_an_empty_store(config_file: Path, keys_path: Path) -> None:
    """serve with a 0-byte store exits 1 with one clear line, not with zero keys."""
    keys_path.parent.mkdir(parents=True)
    keys_path.write_bytes(b"")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert err.decode() == (
        f"authproxy: {keys_path}: the file is empty (a write cut short?); "
        "restore it, or delete it to start a new store\n"
    )
    assert b"server_started" not in out
    assert keys_path.read_bytes() == b""


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("listen", "listen: cannot bind {addr}: {why} (setting listen / --listen)"),
        (
            "admin.listen",
            "admin.listen: cannot bind {addr}: {why} "
            "(setting admin.listen / --admin-listen)",
        ),
        (
            "tls.redirect_listen",
            "tls.redirect_listen: cannot bind {addr}: {why} "
            "(setting tls.redirect_listen)",
        ),
    ],
    ids=["listen", "admin", "redirect"],
)
@pytest.mark.parametrize("cause", ["in-use", "not-here"])
async def test_a_listener_that_cannot_bind_names_itself(
    tmp_path: Path,
    tls_overrides: dict[str, Any],
    setting: str,
    message: str,
    cause: str,
) -> None:
    """A port in use (or an address not of this host) stops serve: exit 1.

    One line names the listener, the address, the reason in words and the
    setting to change; no traceback.
    """
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if cause == "in-use":
            addr, why = f"127.0.0.1:{port}", "address already in use"
        else:  # TEST-NET-1, never an address of this host
            addr, why = "192.0.2.1:8080", "cannot assign requested address"
        config = {**tls_overrides, "tls.redirect_listen": "127.0.0.1:0"}
        config["listen.port"] = 0
        if setting == "listen":
            host, _, bind_port = addr.rpartition(":")
            config.update({"listen.host": host, "listen.port": int(bind_port)})
        else:
            config[setting] = addr
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(nested(config)))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "authproxy",
            "serve",
            "--config",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert err.decode().splitlines()[-1] == "authproxy: " + message.format(
        addr=addr, why=why
    )
    assert "Traceback" not in err.decode()


async def test_serve_exits_2_on_a_mismatched_pair(
    ca: trustme.CA,
    pair: tuple[Path, Path],
    config_file: Path,
    keys_path: Path,
) -> None:
    """serve refuses a key that does not match: exit 2, one line, no key store made."""
    cert, key = pair
    key.write_bytes(ca.issue_cert("127.0.0.1").private_key_pem.bytes())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 2
    assert err.decode() == (
        f"authproxy: tls.cert/tls.key: cannot load {cert} with {key}: "
        "the private key does not match the certificate\n"
    )
    assert out == b""
    assert not keys_path.exists()


StartRedirect = Callable[..., Awaitable[int]]


# Every header a redirect or a refusal may carry; anything else was injected.
ALLOWED_HEADERS = {"Location", "Content-Length", "Content-Type", "Date", "Connection"}


@pytest.fixture
async def start_redirect() -> AsyncIterator[StartRedirect]:
    """Start the redirect listener as `serve` builds it, on a loopback port."""
    runners: list[web.AppRunner] = []

    async def start(extra: dict[str, Any] | None = None, https_port: int = 8443) -> int:
        runner = create_redirect_runner(load_config(None, extra or {}), https_port)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


CRLF_TARGET = "/a%0d%0aSet-Cookie:%20x=1?b%0D%0A=c"


LOCATIONS = [
    pytest.param(8443, "GET /a%20b/c?x=1%202&y", "example.com", 308,
                 "https://example.com:8443/a%20b/c?x=1%202&y", None, id="name"),
    pytest.param(8443, "GET /a", "example.com:80", 308,
                 "https://example.com:8443/a", None, id="name-port"),
    pytest.param(443, "GET /a", "example.com:80", 308,
                 "https://example.com/a", None, id="default-port"),
    pytest.param(8443, "GET /a", "[::1]:80", 308,
                 "https://[::1]:8443/a", None, id="ipv6"),
    pytest.param(8443, "GET //evil.example/x", "example.com", 308,
                 "https://example.com:8443//evil.example/x", None, id="network-path"),
    pytest.param(443, "GET //evil.example/x", "example.com", 308,
                 "https://example.com//evil.example/x", None,
                 id="network-path-default-port"),
    pytest.param(8443, "GET http://evil.example/x?y", "example.com", 308,
                 "https://example.com:8443/x?y", None, id="absolute-form"),
    pytest.param(8443, f"GET {CRLF_TARGET}", "example.com", 308,
                 f"https://example.com:8443{CRLF_TARGET}", None, id="encoded-crlf"),
    pytest.param(8443, "GET /a#frag", "example.com", 308,
                 "https://example.com:8443/a", None, id="fragment"),
    pytest.param(8443, "POST /api/chat?stream=true", "example.com", 308,
                 "https://example.com:8443/api/chat?stream=true", None, id="post"),
    pytest.param(8443, "GET /", "evil.example@good.example", 400,
                 None, "missing or invalid Host header", id="userinfo-host"),
    pytest.param(8443, "GET /", "good.example/evil", 400,
                 None, "missing or invalid Host header", id="path-host"),
    pytest.param(8443, "GET /", "good.example\r\n x", 400,
                 None, "bad request", id="folded-host"),
    pytest.param(8443, "GET /", "a\r\nHost: b", 400,
                 None, "bad request", id="two-hosts"),
    pytest.param(8443, "OPTIONS *", "example.com", 400,
                 None, "invalid request target", id="asterisk"),
    pytest.param(8443, "CONNECT evil.example:443", "example.com", 400,
                 None, "invalid request target", id="connect"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("https_port", "request_line", "host", "status", "location", "error"), LOCATIONS
)
async def test_location(
    start_redirect: StartRedirect,
    https_port: int,
    request_line: str,
    host: str,
    status: int,
    location: str | None,
    error: str | None,
) -> None:
    """The Location keeps the Host's name and the raw path; anything odd is a 400."""
    port = await start_redirect(https_port=https_port)
    data = f"{request_line} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    got, reply_headers, body = parse(await send_raw(port, data.encode()))
    assert (got, reply_headers.get("Location"), body) == (
        status,
        location,
        None if error is None else {"error": error},
    )
    assert set(reply_headers) <= ALLOWED_HEADERS


async def test_no_host_is_refused(start_redirect: StartRedirect) -> None:
    """An HTTP/1.0 request without a Host gets a JSON 400, not a guessed Location."""
    port = await start_redirect()
    got, headers, body = parse(await send_raw(port, b"GET / HTTP/1.0\r\n\r\n"))
    assert (got, body) == (400, {"error": "missing or invalid Host header"})
    assert "Location" not in headers


TOO_LARGE = "request line or headers too large"


MALFORMED = [
    pytest.param("Authorization: Bearer {}\x00", 400, "bad request",
                 id="nul-in-bearer"),
    pytest.param("x-api-key: {}\x7f", 400, "bad request",
                 id="control-char-in-api-key"),
    pytest.param("Authorization: Basic {}\r\n folded", 400, "bad request",
                 id="folded-credential"),
    pytest.param("Authorization: Bearer {}\r\nX-Pad: " + "a" * 2000, 431, TOO_LARGE,
                 id="header-too-large"),
    pytest.param("Authorization: Bearer {}\nX-A: b", 400, "bad request",
                 id="bare-lf"),
    pytest.param("Authorization: Bearer {}\r\nContent-Length: 1\r\nContent-Length: 2",
                 400, "bad request", id="two-content-lengths"),
]  # fmt: skip


@pytest.mark.parametrize(("template", "status", "error"), MALFORMED)
async def test_malformed_requests_never_echo_a_credential(
    start_redirect: StartRedirect,
    secrets_seen: Secrets,
    log_capture: LogCapture,
    template: str,
    status: int,
    error: str,
) -> None:
    """A malformed request gets a JSON 4xx that neither quotes nor challenges."""
    secret = f"ap_redirect_{secrets.token_urlsafe(24)}"
    secrets_seen.add(secret)  # the log_capture fixture fails the test if it is logged
    port = await start_redirect({"limits.max_header_size": 1024})
    data = f"GET / HTTP/1.1\r\nHost: example.com\r\n{template.format(secret)}\r\n\r\n"
    reply = await send_raw(port, data.encode())
    got, headers, body = parse(reply)
    assert (got, body) == (status, {"error": error})
    assert secret.encode() not in reply
    assert set(headers) <= ALLOWED_HEADERS  # no challenge, no Server version
    assert log_capture.events("bad_http_request")


async def test_slow_headers_are_cut(
    start_redirect: StartRedirect, log_capture: LogCapture
) -> None:
    """A client trickling its headers is cut at limits.header_timeout."""
    port = await start_redirect(
        {"limits.header_timeout": 0.3, "server.keepalive_timeout": 60}
    )
    async with connect(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: example.com\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
    (event,) = log_capture.events("request_header_timeout")
    assert event["timeout"] == 0.3


async def test_limits_follow_the_proxy_settings(start_redirect: StartRedirect) -> None:
    """limits.max_request_line and limits.max_header_size bound the listener too."""
    port = await start_redirect(
        {"limits.max_request_line": 256, "limits.max_header_size": 512}
    )
    for line, header, expected in [
        ("/" + "a" * 200, "X-Pad: " + "b" * 400, 308),
        ("/" + "a" * 300, "X-Pad: b", 431),
        ("/", "X-Pad: " + "b" * 600, 431),
    ]:
        data = (
            f"GET {line} HTTP/1.1\r\nHost: h\r\n{header}\r\nConnection: close\r\n\r\n"
        )
        assert parse(await send_raw(port, data.encode()))[0] == expected, (line, header)


async def test_idle_keepalive_is_closed(start_redirect: StartRedirect) -> None:
    """After a redirect, an idle connection is closed at server.keepalive_timeout."""
    port = await start_redirect({"server.keepalive_timeout": 0.3})
    async with connect(port) as (reader, writer):
        writer.write(b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 308 ")
        assert await asyncio.wait_for(reader.read(), 10) == b""


def test_the_first_start_says_where_it_made_the_store_once(
    tmp_path: Path, monkeypatch, secrets_seen: Secrets
) -> None:
    """The first start names the new store in full; later starts say nothing."""
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {"keys.file": "keys/keys.yaml", **CHEAP_ARGON2})
    first, second = io.StringIO(), io.StringIO()
    created = bootstrap_keys(config, first)
    assert created is not None
    secrets_seen.add(created.token)
    assert first.getvalue().startswith(
        f"authproxy: created key store {tmp_path / 'keys' / 'keys.yaml'} with key "
    )
    assert (bootstrap_keys(config, second), second.getvalue()) == (None, "")
