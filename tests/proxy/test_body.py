"""proxy.body: limits, codings, 100-continue, stalls and model bodies, on sockets."""

from __future__ import annotations

import asyncio
import io
import json
from http import HTTPStatus
from pathlib import Path

import pytest
import zstandard

from tests.support.audit import wait_audit
from tests.support.fake_ollama.server import FakeOllama
from tests.support.payloads import SAY_HI, blob_path
from tests.support.rawhttp import (
    build_request,
    connect,
    exchange,
    send_raw,
    status_and_json,
)


async def test_body_over_limit_is_413(start_proxy, key, fake: FakeOllama) -> None:
    """A body over server.max_body_size gets 413 and nothing reaches the upstream."""
    client = await start_proxy({"server.max_body_size": "1KiB"})
    auth = {"Authorization": f"Bearer {key.token}"}
    resp = await client.post(blob_path("00"), data=b"x" * 2048, headers=auth)
    assert resp.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert await resp.json() == {"error": "request body too large"}
    assert fake.received == []

    async def chunks():
        for _ in range(4):
            yield b"y" * 512

    resp = await client.post(blob_path("11"), data=chunks(), headers=auth)
    assert resp.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    resp = await client.post(blob_path("22"), data=b"z" * 1024, headers=auth)
    assert resp.status == HTTPStatus.CREATED


async def test_large_body_streams_intact(proxy, bearer, fake: FakeOllama) -> None:
    """A multi-megabyte upload, chunked or not, reaches the upstream byte for byte."""
    payload = bytes(range(256)) * 20000

    async def chunks():
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    resp = await proxy.post(blob_path("ab"), data=io.BytesIO(payload), headers=bearer)
    assert resp.status == HTTPStatus.CREATED
    assert fake.last.body == payload
    assert fake.last.headers["Content-Length"] == str(len(payload))
    resp = await proxy.post(blob_path("cd"), data=chunks(), headers=bearer)
    assert resp.status == HTTPStatus.CREATED
    assert fake.last.body == payload


@pytest.mark.parametrize(
    ("path", "coding"),
    [
        ("/v1/chat/completions", "gzip"),
        ("/v1/chat/completions", "ZSTD"),
        ("/v1/chat/completions", "zstd, gzip"),
        ("/api/chat", "zstd"),
        ("/api/chat", "br"),
        ("/api/pull", "deflate"),
    ],
    ids=["gzip-v1", "zstd-uppercase", "zstd-then-gzip", "zstd-native", "br", "pull"],
)
async def test_codings_ollama_would_not_decode_are_refused(
    proxy, bearer, fake: FakeOllama, path, coding
) -> None:
    """A coding Ollama ignores on that route would hide the model: 415, not sent."""
    body = b'{"model":"llama3.2","messages":[]}'
    resp = await proxy.post(
        path, data=body, headers={**bearer, "Content-Encoding": coding}
    )
    assert resp.status == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    assert await resp.json() == {
        "error": "Content-Encoding not supported on this route"
    }
    assert fake.received == []


async def test_zstd_bodies_are_checked_and_sent_decoded(
    proxy, bearer, fake: FakeOllama, audit_path
) -> None:
    """On the /v1 routes Ollama decodes zstd: the proxy checks and sends plain JSON."""
    plain = b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}'
    resp = await proxy.post(
        "/v1/chat/completions",
        data=zstandard.ZstdCompressor().compress(plain),
        headers={**bearer, "Content-Encoding": "zstd"},
    )
    assert resp.status == HTTPStatus.OK
    await resp.read()
    assert fake.last.body == plain
    assert "Content-Encoding" not in fake.last.headers
    assert fake.last.headers["Content-Length"] == str(len(plain))
    (record,) = await wait_audit(audit_path, 1)
    assert record["model"] == "llama3.2"


async def test_identity_coding_is_plain(proxy, bearer, fake: FakeOllama) -> None:
    """`Content-Encoding: identity` means no coding, as Ollama reads it."""
    resp = await proxy.post(
        "/api/chat",
        json={"model": "llama3.2", "messages": []},
        headers={**bearer, "Content-Encoding": "identity"},
    )
    assert resp.status == HTTPStatus.OK
    assert json.loads(fake.last.body)["model"] == "llama3.2"


async def test_zstd_bombs_and_garbage_are_refused(
    proxy, bearer, fake: FakeOllama
) -> None:
    """Past Ollama's 20 MiB decoded cap is 413; data that is not zstd is 400."""
    bomb = zstandard.ZstdCompressor().compress(
        b'{"model":"llama3.2","prompt":"' + b"a" * (21 * 1024 * 1024) + b'"}'
    )
    headers = {**bearer, "Content-Encoding": "zstd"}
    resp = await proxy.post("/v1/completions", data=bomb, headers=headers)
    assert resp.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    resp = await proxy.post("/v1/completions", data=b"not zstd", headers=headers)
    assert resp.status == HTTPStatus.BAD_REQUEST
    assert await resp.json() == {"error": "request body: invalid zstd data"}
    assert fake.received == []


async def test_continue_is_sent_only_after_authentication(
    proxy, token, fake: FakeOllama
) -> None:
    """An unauthenticated client is never invited to upload its body."""
    request = build_request(
        "Expect: 100-continue", "Content-Length: 40", method="POST", target="/api/chat"
    )
    reply = await exchange(proxy.port, request)
    assert not reply.startswith(b"HTTP/1.1 100")
    assert status_and_json(reply) == (401, {"error": "unauthorized"})
    assert fake.received == []


async def test_continue_is_sent_to_an_authenticated_client(
    proxy, token, fake: FakeOllama
) -> None:
    """With a valid key, 100 Continue comes first, then the real reply."""
    body = b'{"model":"llama3.2","messages":[]}'
    request = build_request(
        f"Authorization: Bearer {token}",
        "Expect: 100-continue",
        f"Content-Length: {len(body)}",
        method="POST",
        target="/api/chat",
    )
    async with connect(proxy.port) as (reader, writer):
        writer.write(request)
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 5)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert fake.last.body == body


async def test_unknown_expectation_is_417(proxy, token, fake: FakeOllama) -> None:
    """An expectation other than 100-continue is refused, after authentication."""
    reply = await send_raw(
        proxy.port,
        build_request(
            f"Authorization: Bearer {token}",
            "Expect: 200-ok",
            "Content-Length: 2",
            method="POST",
            target="/api/chat",
        )
        + b"{}",
    )
    assert status_and_json(reply) == (417, {"error": "unsupported Expect header"})
    assert fake.received == []


async def test_stalled_model_body_is_cut(
    start_proxy, token, fake: FakeOllama, audit_path
) -> None:
    """A body that stops arriving gets 408 after limits.body_idle_timeout."""
    client = await start_proxy({"limits.body_idle_timeout": 0.3})
    reply = await send_raw(
        client.port,
        build_request(
            f"Authorization: Bearer {token}",
            "Content-Length: 100",
            method="POST",
            target="/api/chat",
            close=False,
        )
        + b'{"model":',
    )
    assert status_and_json(reply) == (408, {"error": "request body timed out"})
    assert fake.received == []
    (record,) = await wait_audit(audit_path, 1)
    assert (record["outcome"], record["reason"]) == ("denied", "body_timeout")


async def test_stalled_streamed_body_is_cut(
    start_proxy, token, fake: FakeOllama, audit_path
) -> None:
    """A large streamed upload that stalls is cut too, with 408, not 502."""
    client = await start_proxy({"limits.body_idle_timeout": 0.3})
    reply = await send_raw(
        client.port,
        build_request(
            f"Authorization: Bearer {token}",
            f"Content-Length: {1024 * 1024}",
            method="POST",
            target=f"/api/blobs/sha256:{'ab' * 32}",
            close=False,
        )
        + b"x" * 100_000,
    )
    assert status_and_json(reply) == (408, {"error": "request body timed out"})
    (record,) = await wait_audit(audit_path, 1)
    assert record["reason"] == "body_timeout"


async def test_ambiguous_body_is_refused_and_audited(
    proxy, bearer, fake: FakeOllama, audit_path
) -> None:
    """A body Ollama could read another way gets 400, and the record says why."""
    resp = await proxy.post(
        "/api/chat",
        data=b'{"model":"llama3.2","Model":"qwen3:8b"}',
        headers=bearer,
    )
    assert resp.status == HTTPStatus.BAD_REQUEST
    assert (await resp.json())["error"].startswith("request body: two keys differ")
    (record,) = await wait_audit(audit_path, 1)
    assert (record["outcome"], record["reason"], record["model"]) == (
        "denied",
        "body_invalid",
        None,
    )
    assert fake.received == []


async def test_model_names_ollama_refuses_are_400(
    proxy, bearer, fake: FakeOllama, audit_path
) -> None:
    """A non-string, invalid or over-long model name is refused before forwarding."""
    for body, message in [
        ({"model": ["llama3.2"]}, "model: expected a string"),
        ({"model": "a/b/c/d"}, "model: invalid model name"),
        ({"name": "x:cloud:local"}, "name: use either :local or :cloud, not both"),
        ({"model": "m" * (20 * 1024 * 1024)}, "model: longer than 1024 characters"),
    ]:
        data = io.BytesIO(json.dumps(body).encode())
        resp = await proxy.post("/api/show", data=data, headers=bearer)
        assert resp.status == HTTPStatus.BAD_REQUEST
        assert await resp.json() == {"error": message}
    records = await wait_audit(audit_path, 4)
    assert [r["reason"] for r in records] == ["model_invalid"] * 4
    assert max(len(json.dumps(r)) for r in records) < 4096
    assert fake.received == []


async def test_audit_records_the_model_ollama_runs(
    proxy, bearer, fake: FakeOllama, audit_path
) -> None:
    """The record names the trimmed model Ollama binds, whatever the key case."""
    resp = await proxy.post(
        "/api/generate",
        data=b'{"MODEL":"  llama3.2 ","prompt":"hi","stream":false}',
        headers={**bearer, "Content-Type": "text/plain"},
    )
    assert resp.status == HTTPStatus.OK
    (record,) = await wait_audit(audit_path, 1)
    assert record["model"] == "llama3.2"


async def test_body_too_large_is_recorded(start_proxy, key, audit_path: Path) -> None:
    """A 413 is a denied record with reason body_too_large."""
    client = await start_proxy({"server.max_body_size": 100})
    await client.post(
        "/api/chat",
        json={**SAY_HI, "pad": "x" * 200},
        headers={"Authorization": f"Bearer {key.token}"},
    )
    (record,) = await wait_audit(audit_path, 1)
    assert (record["status"], record["outcome"], record["reason"]) == (
        413,
        "denied",
        "body_too_large",
    )
    assert record["key_id"] == key.record.id


async def test_chunked_body_too_large_on_a_model_route(
    start_proxy, key, audit_path: Path
) -> None:
    """A chunked JSON body past the limit on an inference route gets 413 too."""
    client = await start_proxy({"server.max_body_size": 100})

    async def chunks():
        yield b'{"model":"llama3.2","prompt":"'
        yield b"x" * 200
        yield b'"}'

    resp = await client.post(
        "/api/generate", data=chunks(), headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert await resp.json() == {"error": "request body too large"}


async def test_opt_in_include_usage_gives_exact_openai_counts(
    start_proxy, key, fake: FakeOllama, audit_path: Path
) -> None:
    """With audit.openai_include_usage the proxy asks for usage, and meters exactly."""
    client = await start_proxy({"audit.openai_include_usage": True})
    await (
        await client.post(
            "/v1/chat/completions",
            json={**SAY_HI, "stream": True},
            headers={"Authorization": f"Bearer {key.token}"},
        )
    ).read()
    (record,) = await wait_audit(audit_path, 1)
    assert (
        record["prompt_tokens"],
        record["completion_tokens"],
        record["usage_exact"],
    ) == (26, 4, True)
    assert b'"stream_options":{"include_usage":true}' in fake.last.body.replace(
        b" ", b""
    )


async def test_requests_are_not_modified_by_default(
    proxy, bearer, fake: FakeOllama
) -> None:
    """Without the opt-in, the request body reaches Ollama byte for byte."""
    send_raw = (
        b'{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"x"}]}'
    )
    await (
        await proxy.post(
            "/v1/chat/completions",
            data=send_raw,
            headers={**bearer, "Content-Type": "application/json"},
        )
    ).read()
    assert fake.last.body == send_raw
