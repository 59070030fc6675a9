"""proxy.headers: filter sets, X-Forwarded-*, request ids; tables and the wire."""

from __future__ import annotations

import os
from http import HTTPStatus

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.memo import MEMO_KEY_LENGTH
from authproxy.proxy import headers as headers_module
from authproxy.proxy.headers import (
    KEEP_MEMO_SIZE,
    TRUST_MEMO_SIZE,
    TrustedProxies,
    client_address,
    filter_response_headers,
    forward_request_headers,
    parse_networks,
    request_id,
)
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import HOP_BY_HOP, upstream_port
from tests.support.payloads import SAY_HI

TRUSTED = TrustedProxies(parse_networks(["10.0.0.0/8", "192.168.1.1"]))


def proxy_of(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


class TestClientAddress:
    @pytest.mark.parametrize(
        ("peer", "xff", "expected"),
        [
            ("1.2.3.4", [], "1.2.3.4"),
            ("1.2.3.4", ["9.9.9.9"], "1.2.3.4"),
            ("10.0.0.1", ["9.9.9.9"], "9.9.9.9"),
            ("10.0.0.1", ["9.9.9.9, 10.0.0.2"], "9.9.9.9"),
            ("10.0.0.1", ["6.6.6.6, 9.9.9.9, 10.0.0.2"], "9.9.9.9"),
            ("10.0.0.1", ["10.0.0.3", "10.0.0.2"], "10.0.0.3"),
            ("10.0.0.1", [], "10.0.0.1"),
            ("192.168.1.1", ["garbage"], "garbage"),
        ],
        ids=[
            "direct",
            "untrusted-peer-xff-ignored",
            "one-hop",
            "two-hops",
            "spoofed-left",
            "all-trusted",
            "trusted-no-xff",
            "exact-ip",
        ],
    )
    def test_right_to_left(self, peer, xff, expected) -> None:
        """Only hops added by trusted proxies are believed."""
        assert client_address(peer, xff, TRUSTED) == expected


class TestTrustedProxies:
    def test_answers_stay_right_when_remembered(self) -> None:
        """A second question about an address gets the same answer as the first."""
        for _ in range(2):
            assert "10.1.2.3" in TRUSTED
            assert "192.168.1.1" in TRUSTED
            assert "192.168.1.2" not in TRUSTED
            assert "not-an-ip" not in TRUSTED

    def test_memo_is_bounded(self) -> None:
        """Spoofed hops cannot grow the memo past its bound."""
        trusted = TrustedProxies(parse_networks(["10.0.0.0/8"]))
        for n in range(TRUST_MEMO_SIZE * 2 + 7):
            assert f"198.18.{n // 250 % 250}.{n % 250}" not in trusted
            assert len(trusted._seen) <= TRUST_MEMO_SIZE
        assert f"10.0.{n % 250}.1" in trusted

    def test_long_hops_are_judged_not_kept(self) -> None:
        """A spoofed hop longer than any address is answered but not remembered."""
        trusted = TrustedProxies(parse_networks(["10.0.0.0/8"]))
        long = "10.0.0.1" + "x" * MEMO_KEY_LENGTH
        for _ in range(2):
            assert long not in trusted
        assert long not in trusted._seen
        assert "10.0.0.1" in trusted
        assert "10.0.0.1" in trusted._seen

    def test_none_trusted(self) -> None:
        """Without networks nothing is trusted and the object is falsy."""
        trusted = TrustedProxies()
        assert not trusted
        assert "127.0.0.1" not in trusted
        assert client_address("127.0.0.1", ["9.9.9.9"], trusted) == "127.0.0.1"


class TestRequestId:
    @pytest.mark.parametrize(
        ("value", "kept"),
        [
            ("abc", True),
            ("a-b_c.d:e/f+g=h@i", True),
            (None, False),
            ("", False),
            ("a b", False),
            ("x" * 129, False),
            ("é", False),
        ],
        ids=["simple", "punctuation", "absent", "empty", "space", "long", "non-ascii"],
    )
    def test_sane_ids_are_kept(self, value, kept) -> None:
        """A sane id is kept; anything else becomes a fresh 32-hex id."""
        result = request_id(value)
        if kept:
            assert result == value
        else:
            assert len(result) == 32
            assert int(result, 16) >= 0

    def test_generated_ids_are_fresh(self) -> None:
        """Generated ids are 32 lower-case hex digits, none repeated, past a refill."""
        ids = [request_id(None) for _ in range(1000)]
        assert len(set(ids)) == len(ids)
        assert all(len(i) == 32 and i == i.lower() and int(i, 16) >= 0 for i in ids)

    def test_a_forked_child_draws_its_own_ids(self) -> None:
        """After a fork the child never repeats the ids the parent goes on to draw."""
        request_id(None)  # the pool holds unused bytes now
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read_end)
            os.write(write_end, " ".join(request_id(None) for _ in range(8)).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            child = set(pipe.read().split())
        os.waitpid(pid, 0)
        parent = {request_id(None) for _ in range(8)}
        assert len(child) == 8
        assert not child & parent


class TestForwardRequestHeaders:
    @pytest.mark.parametrize("trusted", [False, True])
    def test_rebuilt_headers_are_sent_once_at_the_end(self, trusted: bool) -> None:
        """Host, X-Forwarded-* and X-Request-ID come once each, after the kept ones."""
        rebuilt = "Host X-Forwarded-Host X-Forwarded-For X-Forwarded-Proto X-Request-ID"
        sent = [(n, "client") for n in [*rebuilt.split(), "host", "x-forwarded-for"]]
        out = forward_request_headers(
            proxy_of(("Accept", "a"), *sent, ("Accept", "b")),
            upstream_host="ollama:11434",
            peer="10.0.0.1",
            scheme="http",
            request_id="rid",
            trusted_peer=trusted,
        )
        names = [name.lower() for name, _ in out.items()]
        assert names[:2] == ["accept", "accept"]
        assert names[2:4] == ["host", "x-forwarded-for"]
        assert names[-1] == "x-request-id"
        assert len(names) == len(set(names)) + 1
        assert (out["Host"], out["X-Request-ID"]) == ("ollama:11434", "rid")

    def test_past_the_memo_bound_names_are_judged_alike(self) -> None:
        """More distinct names than the memo holds: each still kept or dropped right."""
        many = [(f"X-Custom-{i}", "v") for i in range(2 * KEEP_MEMO_SIZE + 3)]
        for _ in range(2):
            out = forward_request_headers(
                proxy_of(*many, ("Authorization", "Bearer x"), ("Cookie", "c=1")),
                upstream_host="ollama:11434",
                peer="10.0.0.1",
                scheme="http",
                request_id="rid",
                trusted_peer=False,
            )
            assert [n for n, _ in out.items()][: len(many)] == [n for n, _ in many]
            assert "Authorization" not in out
            assert "Cookie" not in out

    def test_long_header_names_are_judged_and_not_kept(self) -> None:
        """A name past the memo's length is filtered right and not remembered."""
        long = "X-" + "n" * MEMO_KEY_LENGTH
        for _ in range(2):
            out = forward_request_headers(
                proxy_of((long, "v"), ("Authorization", "Bearer x")),
                upstream_host="ollama:11434",
                peer="10.0.0.1",
                scheme="http",
                request_id="rid",
                trusted_peer=False,
            )
            assert out[long] == "v"
            assert "Authorization" not in out
        assert long not in headers_module._UNTRUSTED_KEEP

    def test_untrusted_peer(self) -> None:
        """Credentials, hop-by-hop and spoofable forwarding headers are replaced."""
        out = forward_request_headers(
            proxy_of(
                ("Host", "proxy.example:8443"),
                ("Authorization", "Bearer x"),
                ("X-API-Key", "x"),
                ("Cookie", "a=b"),
                ("Connection", "close, X-Hop"),
                ("X-Hop", "1"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "10"),
                ("Proxy-Authorization", "Basic x"),
                ("X-Forwarded-For", "6.6.6.6"),
                ("Forwarded", "for=6.6.6.6"),
                ("Accept", "application/json"),
                ("Accept", "text/plain"),
            ),
            upstream_host="127.0.0.1:11434",
            peer="1.2.3.4",
            scheme="https",
            request_id="rid",
            trusted_peer=False,
        )
        assert list(out.items()) == [
            ("Accept", "application/json"),
            ("Accept", "text/plain"),
            ("Host", "127.0.0.1:11434"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "proxy.example:8443"),
            ("X-Request-ID", "rid"),
        ]

    def test_trusted_peer_extends_the_chain(self) -> None:
        """Behind a trusted proxy the chain is extended and its proto/host kept."""
        out = forward_request_headers(
            proxy_of(
                ("Host", "internal"),
                ("X-Forwarded-For", "9.9.9.9"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "api.example"),
                ("Forwarded", "for=9.9.9.9"),
            ),
            upstream_host="ollama:11434",
            peer="10.0.0.1",
            scheme="http",
            request_id="rid",
            trusted_peer=True,
        )
        assert out["X-Forwarded-For"] == "9.9.9.9, 10.0.0.1"
        assert out["X-Forwarded-Proto"] == "https"
        assert out["X-Forwarded-Host"] == "api.example"
        assert out["Forwarded"] == "for=9.9.9.9"


class TestFilterResponseHeaders:
    def test_hop_by_hop_dropped(self) -> None:
        """Hop-by-hop and Connection-named headers never reach the client."""
        out = filter_response_headers(
            proxy_of(
                ("Content-Type", "text/event-stream"),
                ("Connection", "keep-alive, X-Secret-Hop"),
                ("X-Secret-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("Cache-Control", "no-cache"),
                ("Content-Length", "12"),
            )
        )
        assert list(out.items()) == [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Content-Length", "12"),
        ]

    @pytest.mark.parametrize("value", ["keep-alive", "close", "Keep-Alive, close"])
    def test_a_connection_of_hop_by_hop_names_only(self, value: str) -> None:
        """``Connection: keep-alive`` (nginx's, say) drops the hop-by-hop set alone."""
        for _ in range(2):  # the second time from the remembered tokens
            out = filter_response_headers(
                proxy_of(
                    ("Server", "nginx"),
                    ("Connection", value),
                    ("Keep-Alive", "timeout=5"),
                    ("X-Kept", "1"),
                )
            )
            assert list(out.items()) == [("Server", "nginx"), ("X-Kept", "1")]

    def test_long_connection_values_are_not_remembered(self) -> None:
        """A long value is parsed each time: the memo holds short values only."""
        hop = "X-" + "h" * MEMO_KEY_LENGTH
        for _ in range(2):
            out = filter_response_headers(
                proxy_of(("Connection", hop), (hop, "dropped"), ("X-Kept", "1"))
            )
            assert list(out.items()) == [("X-Kept", "1")]
        assert hop not in headers_module._TOKENS_SEEN

    def test_remembered_tokens_stay_per_value(self) -> None:
        """Past the memo's bound, each Connection value still names its own headers."""
        for round_ in range(2):
            for i in range(KEEP_MEMO_SIZE + 5):
                out = filter_response_headers(
                    proxy_of(
                        ("Connection", f"X-Hop-{i}"),
                        (f"X-Hop-{i}", "dropped"),
                        (f"X-Hop-{i + 1}", "kept"),
                    )
                )
                assert list(out.items()) == [(f"X-Hop-{i + 1}", "kept")], round_


async def test_proxied_headers_match_direct(proxy, bearer, upstream) -> None:
    """End-to-end headers are the upstream's (minus hop-by-hop) plus X-Request-ID."""
    async with (
        aiohttp.ClientSession() as direct,
        direct.post(
            upstream.make_url("/v1/messages"),
            json={**SAY_HI, "max_tokens": 8, "stream": True},
        ) as resp,
    ):
        await resp.read()
        direct_headers = {k.lower() for k in resp.headers}
    async with proxy.post(
        "/v1/messages", json={**SAY_HI, "max_tokens": 8, "stream": True}, headers=bearer
    ) as resp:
        await resp.read()
        proxied_headers = {k.lower() for k in resp.headers}
    assert "connection" in direct_headers  # hop-by-hop: not relayed
    assert proxied_headers - {"x-request-id"} == direct_headers - HOP_BY_HOP
    assert "cache-control" in proxied_headers


async def test_upstream_receives_clean_headers(proxy, token, fake: FakeOllama) -> None:
    """Credentials and hop-by-hop headers dropped; Host, X-Forwarded-* rebuilt."""
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Api-Key": "something",
        "Cookie": "session=1",
        "Connection": "keep-alive, X-Private",
        "X-Private": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "6.6.6.6",
        "Forwarded": "for=6.6.6.6",
        "User-Agent": "ThingsBoard/4.0",
        "Accept-Encoding": "gzip",
        "X-Custom": "kept",
    }
    resp = await proxy.get("/api/tags", headers=headers)
    assert resp.status == HTTPStatus.OK
    seen = fake.last.headers
    for name in (
        "Authorization",
        "X-Api-Key",
        "Cookie",
        "X-Private",
        "Keep-Alive",
        "TE",
        "X-Real-IP",
        "Forwarded",
        "Accept-Encoding",
    ):
        assert name not in seen, name
    assert seen["Host"] == f"127.0.0.1:{upstream_port(proxy)}"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] == f"127.0.0.1:{proxy.port}"
    assert seen["User-Agent"] == "ThingsBoard/4.0"
    assert seen["X-Custom"] == "kept"
    assert token not in str(seen)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123_X.y:z", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("bad id", False),
        ("<script>", False),
    ],
    ids=["sane", "max-length", "too-long", "space", "markup"],
)
async def test_request_id_kept_or_generated(
    proxy, bearer, fake: FakeOllama, sent, kept
) -> None:
    """A sane X-Request-ID is kept and echoed; anything else is replaced."""
    resp = await proxy.get("/api/tags", headers={**bearer, "X-Request-ID": sent})
    echoed = resp.headers["X-Request-ID"]
    assert fake.last.headers["X-Request-ID"] == echoed
    assert (echoed == sent) is kept
    assert len(echoed) == len(sent) if kept else len(echoed) == 32
