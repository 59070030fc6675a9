"""Classify Ollama routes: what a request is for decides scopes, metering and audit."""

from __future__ import annotations

import enum
from typing import Final


class RouteClass(enum.StrEnum):
    """What a route does, for scopes (one per class), metering and metrics."""

    INFERENCE = "inference"
    EMBEDDINGS = "embeddings"
    MODELS_READ = "models:read"
    MODELS_MANAGE = "models:manage"
    CLOUD = "cloud"
    OTHER = "other"


_EXACT: Final[dict[str, RouteClass]] = {
    "/api/generate": RouteClass.INFERENCE,
    "/api/chat": RouteClass.INFERENCE,
    "/v1/chat/completions": RouteClass.INFERENCE,
    "/v1/completions": RouteClass.INFERENCE,
    "/v1/responses": RouteClass.INFERENCE,
    "/v1/messages": RouteClass.INFERENCE,
    "/api/embed": RouteClass.EMBEDDINGS,
    "/api/embeddings": RouteClass.EMBEDDINGS,
    "/v1/embeddings": RouteClass.EMBEDDINGS,
    "/": RouteClass.MODELS_READ,
    "/api/version": RouteClass.MODELS_READ,
    "/api/tags": RouteClass.MODELS_READ,
    "/api/ps": RouteClass.MODELS_READ,
    "/api/show": RouteClass.MODELS_READ,
    "/v1/models": RouteClass.MODELS_READ,
    "/api/pull": RouteClass.MODELS_MANAGE,
    "/api/push": RouteClass.MODELS_MANAGE,
    "/api/create": RouteClass.MODELS_MANAGE,
    "/api/copy": RouteClass.MODELS_MANAGE,
    "/api/delete": RouteClass.MODELS_MANAGE,
    "/api/me": RouteClass.CLOUD,
    "/api/signout": RouteClass.CLOUD,
}
_PREFIXES: Final[tuple[tuple[str, RouteClass], ...]] = (
    ("/v1/audio/", RouteClass.INFERENCE),
    ("/v1/models/", RouteClass.MODELS_READ),
    ("/api/blobs/", RouteClass.MODELS_MANAGE),
    ("/api/user/keys/", RouteClass.CLOUD),
    ("/api/experimental/", RouteClass.CLOUD),
)
# Routes whose JSON request body names a model and carries the prompt.
MODEL_BODY_CLASSES: Final = frozenset({RouteClass.INFERENCE, RouteClass.EMBEDDINGS})
# The fields each route's JSON body names models in, as Ollama's request
# structs bind them (api/types.go; shared/ollama-wire.md §8b). Ollama takes
# the first non-empty of ``model`` and ``name``; the policy checks them all.
MODEL_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "/api/generate": ("model",),
    "/api/chat": ("model",),
    "/api/embed": ("model",),
    "/api/embeddings": ("model",),
    "/v1/chat/completions": ("model",),
    "/v1/completions": ("model",),
    "/v1/embeddings": ("model",),
    "/v1/responses": ("model",),
    "/v1/messages": ("model",),
    "/api/show": ("model", "name"),
    "/api/pull": ("model", "name"),
    "/api/push": ("model", "name"),
    "/api/create": ("model", "name", "from"),
    "/api/copy": ("source", "destination"),
    "/api/delete": ("model", "name"),
}
# Multipart bodies whose ``model`` form field Ollama reads (FormValue).
FORM_MODEL_ROUTES: Final = frozenset({"/v1/audio/transcriptions"})
# Where Ollama itself decompresses a ``Content-Encoding: zstd`` body: the /v1
# routes behind its cloud passthrough (server/cloud_proxy.go).
ZSTD_ROUTES: Final = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
    }
)


def classify(path: str) -> RouteClass:
    """Return the class of a decoded request path (unknown paths are OTHER)."""
    found = _EXACT.get(path)
    if found is not None:
        return found
    for prefix, route_class in _PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            return route_class
    return RouteClass.OTHER


def reads_model(path: str) -> bool:
    """Tell whether the request body names models the policy must read."""
    return path in MODEL_FIELDS or path in FORM_MODEL_ROUTES


def requires_model(path: str, route_class: RouteClass) -> bool:
    """Tell whether a key with an allow-list may only call this with a model."""
    return reads_model(path) or route_class in MODEL_BODY_CLASSES


def path_model(path: str) -> str | None:
    """Return the model named in the path (``/v1/models/{model}``), if any."""
    prefix = "/v1/models/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def is_metered(route_class: RouteClass) -> bool:
    """Tell whether requests of this class consume tokens."""
    return route_class in MODEL_BODY_CLASSES
