"""Access policy units: scopes and listing filters (names: test_modelname.py)."""

from __future__ import annotations

import json

import pytest

from authproxy.keys.record import ALL_SCOPES
from authproxy.policy.routes import RouteClass, classify
from authproxy.policy.rules import filter_listing, missing_scope
from tests.support.fake_ollama import wire


class TestClassify:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/api/generate", RouteClass.INFERENCE),
            ("/v1/audio/transcriptions", RouteClass.INFERENCE),
            ("/api/embed", RouteClass.EMBEDDINGS),
            ("/v1/embeddings", RouteClass.EMBEDDINGS),
            ("/", RouteClass.MODELS_READ),
            ("/v1/models/llama3.2", RouteClass.MODELS_READ),
            ("/api/blobs/sha256:abc", RouteClass.MODELS_MANAGE),
            ("/api/delete", RouteClass.MODELS_MANAGE),
            ("/api/me", RouteClass.CLOUD),
            ("/api/user/keys/abc", RouteClass.CLOUD),
            ("/api/experimental/web_search", RouteClass.CLOUD),
            ("/api/chat/", RouteClass.OTHER),
            ("/api/blobs/", RouteClass.OTHER),
            ("/metrics", RouteClass.OTHER),
        ],
    )
    def test_route_classes(self, path, expected) -> None:
        """Paths map to their scope class; anything unknown is OTHER."""
        assert classify(path) is expected


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
