"""policy.rules: scopes per route class, model allow-lists, listing filters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authproxy.keys.record import ALL_SCOPES
from authproxy.policy.routes import RouteClass
from authproxy.policy.rules import filter_listing, missing_scope
from tests.support.admin import Stack
from tests.support.fake_ollama import wire
from tests.support.fake_ollama.server import FakeOllama
from tests.support.payloads import CHAT, EMBED


class TestScopes:
    def test_each_class_needs_its_scope(self) -> None:
        """A route class needs the scope of the same name."""
        assert missing_scope(frozenset({"inference"}), RouteClass.INFERENCE) is None
        assert (
            missing_scope(frozenset({"inference"}), RouteClass.EMBEDDINGS)
            == "embeddings"
        )

    def test_unclassified_routes_need_every_scope(self) -> None:
        """Routes in no class are denied unless the key holds every scope."""
        almost = frozenset(ALL_SCOPES) - {"cloud"}
        assert missing_scope(almost, RouteClass.OTHER) == "cloud"
        assert missing_scope(frozenset(ALL_SCOPES), RouteClass.OTHER) is None


class TestListings:
    def test_tags_filtered_and_encoded_compactly(self) -> None:
        """/api/tags keeps only allowed models, compact JSON, no trailing newline."""
        body = wire.go_json(
            {"models": [{"name": "llama3.2:latest"}, {"name": "qwen3:8b"}]}
        )
        out = filter_listing("/api/tags", body, [("llama3.2",)])
        assert out == b'{"models":[{"name":"llama3.2:latest"}]}'

    def test_v1_models_keeps_its_newline(self) -> None:
        """/v1/models filters `data` by `id` and keeps the trailing newline."""
        body = wire.openai_models_body(["llama3.2:latest", "qwen3:8b"])
        out = filter_listing("/v1/models", body, [("qwen3:*",)])
        assert out is not None
        assert out.endswith(b"\n")
        assert [m["id"] for m in json.loads(out)["data"]] == ["qwen3:8b"]

    def test_unexpected_bodies_are_withheld(self) -> None:
        """Something that is not a listing is never passed through unfiltered."""
        assert filter_listing("/api/tags", b"not json", [("x",)]) is None
        assert filter_listing("/api/tags", b'{"models": 5}', [("x",)]) is None
        assert filter_listing("/api/tags", b"[1]", [("x",)]) is None
        assert (
            filter_listing("/v1/models", b'{"data":null}\n', [("x",)])
            == b'{"data":null}\n'
        )


ROUTES = {
    "inference": ("POST", "/api/chat", CHAT),
    "embeddings": ("POST", "/api/embed", EMBED),
    "models:read": ("GET", "/api/tags", None),
    "models:manage": ("POST", "/api/pull", {"model": "llama3.2"}),
    "cloud": ("POST", "/api/me", None),
}


@pytest.mark.parametrize("scope", sorted(ROUTES))
async def test_each_scope_opens_only_its_routes(
    stack: Stack, scope: str, fake: FakeOllama
) -> None:
    """One scope opens its class; elsewhere the key gets a 403 naming the scope."""
    _, created = await stack.api(
        "POST",
        "/admin/keys",
        {"name": f"only-{scope.replace(':', '-')}", "scopes": [scope]},
    )
    for route_scope, (method, path, body) in ROUTES.items():
        resp = await stack.proxy.request(
            method,
            path,
            json=body,
            headers={"Authorization": f"Bearer {created['token']}"},
        )
        if route_scope == scope:
            assert resp.status != 403, path
        else:
            assert resp.status == 403, path
            assert await resp.json() == {
                "error": f"this key lacks the {route_scope!r} scope"
            }


async def test_unclassified_routes_need_every_scope(stack: Stack, key) -> None:
    """An unknown route is open only to a key holding every scope."""
    _, most = await stack.api(
        "POST",
        "/admin/keys",
        {
            "name": "most",
            "scopes": [
                "inference",
                "embeddings",
                "models:read",
                "models:manage",
                "cloud",
            ],
        },
    )
    assert await stack.call(most["token"], path="/api/unknown") == 403
    assert await stack.call(str(key.token), path="/api/unknown") == 404


async def test_cloud_models_need_the_cloud_scope(stack: Stack) -> None:
    """A `*-cloud` model is refused to keys without the cloud scope."""
    _, plain = await stack.api("POST", "/admin/keys", {"name": "plain"})
    body = {**CHAT, "model": "gpt-oss:120b-cloud"}
    resp = await stack.proxy.post(
        "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {plain['token']}"},
    )
    assert resp.status == 403
    assert await resp.json() == {"error": "this key lacks the 'cloud' scope"}


async def test_model_allow_list(
    stack: Stack, fake: FakeOllama, audit_path: Path
) -> None:
    """Other models get 403 on native and /v1 routes; nothing is forwarded."""
    _, created = await stack.api(
        "POST", "/admin/keys", {"name": "dash", "models": ["llama3.2"]}
    )
    token = created["token"]
    assert await stack.call(token, "POST", "/api/chat", CHAT) == 200
    assert (
        await stack.call(
            token, "POST", "/v1/chat/completions", {**CHAT, "model": "llama3.2:latest"}
        )
        == 200
    )
    fake.received.clear()
    for method, path, body in [
        ("POST", "/api/chat", {**CHAT, "model": "qwen3:8b"}),
        ("POST", "/api/generate", {"model": "llama3.2:1b", "prompt": "x"}),
        ("POST", "/v1/chat/completions", {**CHAT, "model": "qwen3"}),
        ("POST", "/v1/messages", {**CHAT, "model": "qwen3", "max_tokens": 5}),
        ("POST", "/api/embed", EMBED),
        ("POST", "/api/chat", {"messages": []}),
        ("POST", "/api/show", {"model": "qwen3:8b"}),
        ("GET", "/v1/models/qwen3:8b", None),
    ]:
        resp = await stack.proxy.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 403, (path, body)
    assert fake.received == []
    denied = [json.loads(line) for line in audit_path.read_text().splitlines()][-1]
    assert (denied["outcome"], denied["reason"]) == ("denied", "model_not_allowed")
