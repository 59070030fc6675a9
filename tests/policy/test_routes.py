"""policy.routes: which scope class each Ollama route belongs to."""

from __future__ import annotations

import pytest

from authproxy.policy.routes import RouteClass, classify


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
