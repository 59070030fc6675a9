"""Access policy: scopes per route class, the models a request names, listings.

Pure: every check takes plain values and raises ``Denied`` (403, or 400 for a
path model Ollama would refuse). Model names and allow-list globs are
``policy.names``'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from authproxy.errors import Denied
from authproxy.keys.record import ALL_SCOPES
from authproxy.policy.names import (
    ModelNameError,
    ModelRef,
    model_allowed,
    name_allowed,
    parse_model,
)
from authproxy.policy.routes import RouteClass, path_model, requires_model

# The only responses the proxy rewrites: model listings, for keys with an
# allow-list.
LISTINGS: Final = frozenset({"/api/tags", "/api/ps", "/v1/models"})


@dataclass(frozen=True, slots=True)
class ModelUse:
    """What a request's body asks of the policy.

    Attributes:
        models: every model the body names (an empty field is not a model).
        remote: ``/api/create`` with a ``remote_host``: the new model would
            run on another server, which needs the ``cloud`` scope.
    """

    models: tuple[ModelRef, ...] = ()
    remote: bool = False


def forbidden(reason: str, message: str) -> Denied:
    """Return the 403 of a policy decision, naming what is missing."""
    return Denied(403, reason, message)


def require_scope(scopes: frozenset[str], route_class: RouteClass) -> None:
    """Refuse a route class the key has no scope for.

    Raises:
        Denied: 403 naming the scope.
    """
    scope = missing_scope(scopes, route_class)
    if scope is not None:
        raise forbidden(f"missing_scope:{scope}", f"this key lacks the {scope!r} scope")


def require_models(
    scopes: frozenset[str],
    rules: tuple[tuple[str, ...], ...],
    path: str,
    route_class: RouteClass,
    use: ModelUse,
) -> ModelUse:
    """Apply the cloud scope and the allow-lists to every model the request names.

    The names are resolved as Ollama resolves them: the body's model fields,
    or the ``/v1/models/{model}`` path. Each must pass ``rules``, the key's
    allow-list and a JWT's narrower one.

    Raises:
        Denied: 403 for a missing scope, a model not allowed, or no model on a
            route that needs one; 400 for a path model Ollama would refuse.

    Returns:
        The models judged (the path's, when the path names one).
    """
    named = path_model(path)
    if named is not None and named.strip():
        try:
            use = ModelUse((parse_model(named),))
        except ModelNameError as err:
            raise Denied(400, "model_invalid", f"model: {err}") from None
    if not use.models and rules and requires_model(path, route_class):
        raise forbidden("model_unchecked", "this key may only use named models")
    if (use.remote or any(ref.cloud for ref in use.models)) and ("cloud" not in scopes):
        raise forbidden("missing_scope:cloud", "this key lacks the 'cloud' scope")
    for ref in use.models:
        if not model_allowed(ref, rules):
            raise forbidden(
                "model_not_allowed", f"model {ref.name!r} is not allowed for this key"
            )
    return use


def missing_scope(scopes: frozenset[str], route_class: RouteClass) -> str | None:
    """Return the scope a route needs and the key lacks, or ``None``.

    Routes in no class need every scope.
    """
    if route_class is RouteClass.OTHER:
        return next((s for s in ALL_SCOPES if s not in scopes), None)
    return None if route_class.value in scopes else route_class.value


def filter_listing(
    path: str, body: bytes, rules: Iterable[tuple[str, ...]]
) -> bytes | None:
    """Drop disallowed models from a listing body.

    Returns:
        The rewritten body, or ``None`` if it is not a listing we understand
        (it is then withheld, never passed through unfiltered).
    """
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None
    rules = list(rules)
    if path == "/v1/models" and isinstance(data, dict):
        items, field, name_key = data.get("data"), "data", "id"
    elif isinstance(data, dict):
        items, field, name_key = data.get("models"), "models", "name"
    else:
        return None
    if items is None:
        return body
    if not isinstance(items, list):
        return None
    kept = [
        item
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get(name_key), str)
        and name_allowed(item[name_key], rules)
    ]
    data[field] = kept
    encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return encoded + b"\n" if body.endswith(b"\n") else encoded
