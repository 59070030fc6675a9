"""Access policy: scopes per route class and filtered model listings.

Model names and allow-list globs are ``modelname``'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from authproxy.keys.record import ALL_SCOPES
from authproxy.policy.names import name_allowed
from authproxy.policy.routes import RouteClass

# The only responses the proxy rewrites: model listings, for keys with an
# allow-list.
LISTINGS: Final = frozenset({"/api/tags", "/api/ps", "/v1/models"})


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
