"""Token metering and audit records for every source, through the whole proxy."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import ollama
import openai
import pytest

from tests.support.audit import wait_audit
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import base_url
from tests.support.payloads import SAY_HI
from tests.support.rawhttp import closed_port

GEN = {"model": "llama3.2", "prompt": "Say hi"}


DURATIONS = {
    "total_duration": 187459021,
    "load_duration": 38112604,
    "prompt_eval_duration": 52318000,
    "eval_duration": 39004000,
}


NO_DURATIONS = dict.fromkeys(DURATIONS)


# (id, path, body, prompt, completion, exact, stream, model, durations)
SOURCES: list[
    tuple[str, str, dict[str, Any], int, int, bool, bool, str, dict[str, Any]]
] = [
    ("generate-stream", "/api/generate", GEN, 26, 4, True, True, "llama3.2", DURATIONS),
    (
        "generate-json",
        "/api/generate",
        {**GEN, "stream": False},
        26,
        4,
        True,
        False,
        "llama3.2",
        DURATIONS,
    ),
    ("chat-stream", "/api/chat", SAY_HI, 26, 4, True, True, "llama3.2", DURATIONS),
    (
        "chat-json",
        "/api/chat",
        {**SAY_HI, "stream": False},
        26,
        4,
        True,
        False,
        "llama3.2",
        DURATIONS,
    ),
    (
        "embed",
        "/api/embed",
        {"model": "nomic-embed-text", "input": ["a", "b"]},
        26,
        0,
        True,
        False,
        "nomic-embed-text",
        {
            "total_duration": 187459021,
            "load_duration": 38112604,
            "prompt_eval_duration": None,
            "eval_duration": None,
        },
    ),
    (
        "embeddings-legacy",
        "/api/embeddings",
        {"model": "nomic-embed-text", "prompt": "hello world!"},
        3,
        0,
        False,
        False,
        "nomic-embed-text",
        NO_DURATIONS,
    ),
    (
        "v1-embeddings",
        "/v1/embeddings",
        {"model": "nomic-embed-text", "input": "a"},
        26,
        0,
        True,
        False,
        "nomic-embed-text",
        NO_DURATIONS,
    ),
    (
        "v1-chat-json",
        "/v1/chat/completions",
        SAY_HI,
        26,
        4,
        True,
        False,
        "llama3.2",
        NO_DURATIONS,
    ),
    (
        "v1-chat-stream-usage",
        "/v1/chat/completions",
        {**SAY_HI, "stream": True, "stream_options": {"include_usage": True}},
        26,
        4,
        True,
        True,
        "llama3.2",
        NO_DURATIONS,
    ),
    (
        "v1-chat-stream-estimated",
        "/v1/chat/completions",
        {**SAY_HI, "stream": True},
        2,
        3,
        False,
        True,
        "llama3.2",
        NO_DURATIONS,
    ),
    (
        "v1-completions-stream-usage",
        "/v1/completions",
        {**GEN, "stream": True, "stream_options": {"include_usage": True}},
        26,
        4,
        True,
        True,
        "llama3.2",
        NO_DURATIONS,
    ),
    (
        "v1-completions-json",
        "/v1/completions",
        GEN,
        26,
        4,
        True,
        False,
        "llama3.2",
        NO_DURATIONS,
    ),
    (
        "v1-responses-stream",
        "/v1/responses",
        {"model": "llama3.2", "input": "Say hi", "stream": True},
        26,
        4,
        True,
        True,
        "llama3.2",
        NO_DURATIONS,
    ),
    (
        "v1-responses-json",
        "/v1/responses",
        {"model": "llama3.2", "input": "Say hi"},
        26,
        4,
        True,
        False,
        "llama3.2",
        NO_DURATIONS,
    ),
    (
        "v1-messages-stream",
        "/v1/messages",
        {**SAY_HI, "max_tokens": 9, "stream": True},
        26,
        4,
        True,
        True,
        "llama3.2",
        NO_DURATIONS,
    ),
    (
        "v1-messages-json",
        "/v1/messages",
        {**SAY_HI, "max_tokens": 9},
        26,
        4,
        True,
        False,
        "llama3.2",
        NO_DURATIONS,
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "prompt", "completion", "exact", "stream", "model", "durations"),
    [s[1:] for s in SOURCES],
    ids=[s[0] for s in SOURCES],
)
async def test_every_source_is_metered(
    proxy,
    bearer,
    key,
    audit_path: Path,
    path,
    body,
    prompt,
    completion,
    exact,
    stream,
    model,
    durations,
) -> None:
    """Counts come from where Ollama reports them; estimates are marked inexact."""
    resp = await proxy.post(path, json=body, headers=bearer)
    await resp.read()
    (record,) = await wait_audit(audit_path, 1)
    assert record["status"] == 200
    assert record["outcome"] == "completed"
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        prompt,
        completion,
    )
    assert record["total_tokens"] == prompt + completion
    assert record["usage_exact"] is exact
    assert record["stream"] is stream
    assert record["model"] == model
    assert {k: record[k] for k in DURATIONS} == durations
    assert record["key_id"] == key.record.id
    assert record["key_name"] == "alice"
    assert record["scheme"] == "bearer"
    assert record["request_id"] == resp.headers["X-Request-ID"]
    assert record["bytes_out"] == int(resp.headers.get("Content-Length") or 0) or stream
    assert record["bytes_in"] == len(aiohttp.payload.JsonPayload(body)._value)


async def test_non_inference_routes_consume_no_tokens(
    proxy, bearer, audit_path: Path
) -> None:
    """Listing models is recorded with exactly zero tokens and the route class."""
    await (await proxy.get("/api/tags?x=1", headers=bearer)).read()
    (record,) = await wait_audit(audit_path, 1)
    assert (record["route"], record["path"], record["model"]) == (
        "models:read",
        "/api/tags",
        None,
    )
    assert (
        record["prompt_tokens"],
        record["completion_tokens"],
        record["usage_exact"],
    ) == (0, 0, True)


async def test_error_line_is_a_stream_error(
    proxy, bearer, fake: FakeOllama, audit_path: Path
) -> None:
    """An {"error":...} line mid-stream: outcome stream_error, counts estimated."""
    fake.behaviour.error_after = 2
    await (await proxy.post("/api/chat", json=SAY_HI, headers=bearer)).read()
    (record,) = await wait_audit(audit_path, 1)
    assert record["outcome"] == "stream_error"
    assert record["status"] == 200
    assert (record["prompt_tokens"], record["completion_tokens"]) == (2, 2)
    assert record["usage_exact"] is False


async def test_openai_stream_without_terminator_is_a_stream_error(
    proxy, bearer, fake: FakeOllama, audit_path: Path
) -> None:
    """An OpenAI stream ending without [DONE] (a mid-stream error) is flagged."""
    fake.behaviour.error_after = 2
    await (
        await proxy.post(
            "/v1/chat/completions", json={**SAY_HI, "stream": True}, headers=bearer
        )
    ).read()
    (record,) = await wait_audit(audit_path, 1)
    assert record["outcome"] == "stream_error"
    assert record["usage_exact"] is False


async def test_upstream_killed_mid_stream(
    proxy, bearer, fake: FakeOllama, audit_path: Path
) -> None:
    """An upstream that dies mid-stream: outcome upstream_error, chunks estimated."""
    fake.behaviour.abort_after = 2
    resp = await proxy.post("/api/generate", json=GEN, headers=bearer)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    (record,) = await wait_audit(audit_path, 1)
    assert record["outcome"] == "upstream_error"
    assert (record["completion_tokens"], record["usage_exact"]) == (2, False)
    assert record["prompt_tokens"] == 2


async def test_client_abort_mid_stream(
    proxy, bearer, fake: FakeOllama, audit_path: Path
) -> None:
    """A client that leaves mid-stream: client_disconnected with estimated counts."""
    fake.behaviour.tokens = [f"t{i}" for i in range(50)]
    fake.behaviour.chunk_delay = 0.05
    resp = await proxy.post("/api/chat", json=SAY_HI, headers=bearer)
    await resp.content.readline()
    await resp.content.readline()
    resp.close()
    (record,) = await wait_audit(audit_path, 1)
    assert record["outcome"] == "client_disconnected"
    assert record["usage_exact"] is False
    assert 2 <= record["completion_tokens"] < 50
    assert record["prompt_tokens"] == 2


async def test_client_abort_before_headers(
    proxy, bearer, fake: FakeOllama, audit_path: Path
) -> None:
    """Leaving while the model loads is recorded too (no status was sent)."""
    fake.behaviour.header_delay = 10
    with pytest.raises(TimeoutError):
        await proxy.post(
            "/api/chat",
            json=SAY_HI,
            headers=bearer,
            timeout=aiohttp.ClientTimeout(total=0.2),
        )
    (record,) = await wait_audit(audit_path, 1)
    assert record["outcome"] == "client_disconnected"
    assert record["status"] is None
    assert (
        record["prompt_tokens"],
        record["completion_tokens"],
        record["usage_exact"],
    ) == (2, 0, False)


async def test_denied_requests_are_recorded_without_secrets(
    proxy, key, fake: FakeOllama, audit_path: Path, secrets_seen
) -> None:
    """401s are audited with the reason and the presented key id, never the secret."""
    wrong = f"ap_{key.record.id}_" + "W" * 43
    secrets_seen.add(wrong)
    await proxy.get("/api/tags", headers={"Authorization": f"Bearer {wrong}"})
    basic = base64.b64encode(b"nobody:secret-password").decode()
    secrets_seen.add("secret-password")
    await proxy.get("/api/tags", headers={"Authorization": f"Basic {basic}"})
    await proxy.get("/api/tags")
    records = await wait_audit(audit_path, 3)
    assert [(r["status"], r["outcome"], r["reason"]) for r in records] == [
        (401, "denied", "wrong_secret"),
        (401, "denied", "unknown_key"),
        (401, "denied", "missing"),
    ]
    assert records[0]["key_id"] == key.record.id
    assert records[0]["key_name"] is None
    assert records[0]["scheme"] == "bearer"
    assert records[1]["key_id"] is None
    assert all(r["prompt_tokens"] == 0 and r["usage_exact"] for r in records)
    assert fake.received == []


async def test_upstream_down_records_upstream_error(
    start_proxy, key, audit_path: Path
) -> None:
    """A 502 is recorded as upstream_error with zero tokens (nothing ran)."""
    client = await start_proxy({"upstream.url": f"http://127.0.0.1:{closed_port()}"})
    await client.post(
        "/api/chat", json=SAY_HI, headers={"Authorization": f"Bearer {key.token}"}
    )
    (record,) = await wait_audit(audit_path, 1)
    assert (record["status"], record["outcome"], record["usage_exact"]) == (
        502,
        "upstream_error",
        True,
    )


async def test_upstream_refusal_consumes_no_tokens(
    proxy, bearer, audit_path: Path
) -> None:
    """A 404 for a missing model is completed with exactly zero tokens."""
    await proxy.post("/api/chat", json={**SAY_HI, "model": "missing"}, headers=bearer)
    (record,) = await wait_audit(audit_path, 1)
    assert (record["status"], record["outcome"], record["model"]) == (
        404,
        "completed",
        "missing",
    )
    assert (record["prompt_tokens"], record["usage_exact"]) == (0, True)


async def test_ollama_client_metered(proxy, token, audit_path: Path) -> None:
    """The ollama package, streamed and not, produces exact records."""
    client = ollama.AsyncClient(
        host=base_url(proxy), headers={"Authorization": f"Bearer {token}"}
    )
    async for _ in await client.chat(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        pass
    await client.generate(model="llama3.2", prompt="hi")
    await client.close()
    records = await wait_audit(audit_path, 2)
    assert [
        (
            r["path"],
            r["stream"],
            r["prompt_tokens"],
            r["completion_tokens"],
            r["usage_exact"],
        )
        for r in records
    ] == [
        ("/api/chat", True, 26, 4, True),
        ("/api/generate", False, 26, 4, True),
    ]


@pytest.mark.parametrize(("include_usage", "exact"), [(True, True), (False, False)])
async def test_openai_client_metered(
    proxy, token, audit_path: Path, include_usage, exact
) -> None:
    """openai streams are exact with include_usage and estimated without."""
    client = openai.AsyncOpenAI(base_url=base_url(proxy) + "/v1", api_key=token)
    stream = await client.chat.completions.create(
        model="llama3.2",
        messages=[{"role": "user", "content": "Say hi"}],
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.omit,
    )
    async for _ in stream:
        pass
    await client.close()
    (record,) = await wait_audit(audit_path, 1)
    assert record["usage_exact"] is exact
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        (26, 4) if exact else (2, 3)
    )


async def test_anthropic_client_metered(proxy, token, audit_path: Path) -> None:
    """anthropic streams are metered from message_delta, not message_start."""
    client = anthropic.AsyncAnthropic(base_url=base_url(proxy), api_key=token)
    async with client.messages.stream(
        model="llama3.2", max_tokens=9, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        await stream.get_final_message()
    await client.close()
    (record,) = await wait_audit(audit_path, 1)
    assert (
        record["prompt_tokens"],
        record["completion_tokens"],
        record["usage_exact"],
    ) == (26, 4, True)
    assert record["scheme"] == "bearer"  # anthropic 2.x sends api_key as Bearer
