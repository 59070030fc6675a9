"""The real client packages (ollama, openai, anthropic) and curl through the proxy."""

from __future__ import annotations

import asyncio
import json

import anthropic
import ollama
import openai
import pytest

from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import base_url


async def test_ollama_chat_streamed(proxy, token, fake: FakeOllama) -> None:
    """ollama.AsyncClient with a Bearer header streams a chat through the proxy."""
    client = ollama.AsyncClient(
        host=base_url(proxy), headers={"Authorization": f"Bearer {token}"}
    )
    parts = []
    async for part in await client.chat(
        model="llama3.2", messages=[{"role": "user", "content": "Say hi"}], stream=True
    ):
        parts.append(part)
    await client.close()
    assert "".join(p.message.content or "" for p in parts) == "Hi there!"
    assert parts[-1].done is True
    assert parts[-1].eval_count == 4
    assert "Authorization" not in fake.last.headers


async def test_ollama_chat_not_streamed(proxy, token) -> None:
    """ollama.AsyncClient non-streamed chat returns the full message and counts."""
    client = ollama.AsyncClient(
        host=base_url(proxy), headers={"Authorization": f"Bearer {token}"}
    )
    reply = await client.chat(
        model="llama3.2", messages=[{"role": "user", "content": "Say hi"}]
    )
    await client.close()
    assert reply.message.content == "Hi there!"
    assert reply.prompt_eval_count == 26


async def test_ollama_sync_client_with_basic_auth(proxy, token) -> None:
    """The sync ollama.Client with HTTP Basic name:token (ThingsBoard's Basic mode)."""

    def call() -> list[str]:
        client = ollama.Client(host=base_url(proxy), auth=("alice", token))
        try:
            return [m.model or "" for m in client.list().models]
        finally:
            client.close()

    models = await asyncio.to_thread(call)
    assert models == ["llama3.2:latest", "qwen3:8b", "nomic-embed-text:latest"]


async def test_curl_with_url_userinfo(proxy, token) -> None:
    """curl with http://name:token@host/ sends Basic credentials that work."""
    url = proxy.make_url("/api/tags").with_user("alice").with_password(token)
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--fail-with-body", str(url), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert json.loads(out)["models"][0]["name"] == "llama3.2:latest"


async def test_curl_streams_ndjson(proxy, token, fake: FakeOllama) -> None:
    """curl -N receives the NDJSON stream exactly as Ollama sent it."""
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "-N",
        "-H",
        f"Authorization: Bearer {token}",
        "-d",
        '{"model":"llama3.2","prompt":"hi"}',
        str(proxy.make_url("/api/generate")),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out == b"".join(fake.sent)
    assert json.loads(out.splitlines()[-1])["done"] is True


async def test_ollama_wrong_token_raises_401(proxy, fake: FakeOllama) -> None:
    """The ollama client surfaces the proxy's 401 as a ResponseError."""
    client = ollama.AsyncClient(
        host=base_url(proxy), headers={"Authorization": "Bearer nope"}
    )
    with pytest.raises(ollama.ResponseError) as info:
        await client.list()
    await client.close()
    assert info.value.status_code == 401
    assert info.value.error == "unauthorized"
    assert fake.received == []


@pytest.mark.parametrize("include_usage", [False, True], ids=["plain", "include-usage"])
async def test_openai_chat_streamed(proxy, token, include_usage) -> None:
    """openai.AsyncOpenAI streams chat completions with api_key=token."""
    client = openai.AsyncOpenAI(base_url=base_url(proxy) + "/v1", api_key=token)
    stream = await client.chat.completions.create(
        model="llama3.2",
        messages=[{"role": "user", "content": "Say hi"}],
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.omit,
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hi there!"
    usage = [c.usage for c in chunks if c.usage]
    if include_usage:
        assert usage[0].prompt_tokens == 26
        assert usage[0].completion_tokens == 4
    else:
        assert usage == []
    await client.close()


async def test_openai_chat_and_embeddings(proxy, token) -> None:
    """Non-streamed chat completions and embeddings through the openai SDK."""
    client = openai.AsyncOpenAI(base_url=base_url(proxy) + "/v1", api_key=token)
    reply = await client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": "Say hi"}]
    )
    assert reply.choices[0].message.content == "Hi there!"
    assert reply.usage is not None
    assert reply.usage.total_tokens == 30
    emb = await client.embeddings.create(model="nomic-embed-text", input=["a", "b"])
    assert len(emb.data) == 2
    models = await client.models.list()
    assert [m.id async for m in models] == [
        "llama3.2:latest",
        "qwen3:8b",
        "nomic-embed-text:latest",
    ]
    await client.close()


async def test_openai_bad_key_is_authentication_error(proxy) -> None:
    """The openai SDK raises AuthenticationError on the proxy's 401."""
    client = openai.AsyncOpenAI(
        base_url=base_url(proxy) + "/v1", api_key="sk-wrong", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    await client.close()


async def test_anthropic_messages_streamed(proxy, token) -> None:
    """anthropic.AsyncAnthropic(api_key=token) streams messages (sent as Bearer)."""
    client = anthropic.AsyncAnthropic(base_url=base_url(proxy), api_key=token)
    async with client.messages.stream(
        model="llama3.2",
        max_tokens=64,
        messages=[{"role": "user", "content": "Say hi"}],
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Hi there!"
    assert final.usage.output_tokens == 4
    assert final.usage.input_tokens == 26
    await client.close()


async def test_anthropic_messages_not_streamed(proxy, token, fake: FakeOllama) -> None:
    """messages.create authenticating with an x-api-key header (older SDKs' way)."""
    client = anthropic.AsyncAnthropic(
        base_url=base_url(proxy), api_key=None, default_headers={"X-Api-Key": token}
    )
    message = await client.messages.create(
        model="llama3.2", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hi there!"
    assert "x-api-key" not in fake.last.headers
    assert "Authorization" not in fake.last.headers
    assert "anthropic-version" in fake.last.headers
    await client.close()
