"""The name of this replica (``server.replica``), written into every record it makes.

With several replicas each keeps its own audit file; the name says which one
served a request, in the audit records and in the admin trail. Left unset it
is the host name, which in Kubernetes is the pod's name.
"""

from __future__ import annotations

import functools
import re
import socket
from typing import Any, Final

_REPLICA_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")


def replica_option(value: Any) -> str | None:
    """Validate ``server.replica``: empty (the host name) or a host-like name."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _REPLICA_RE.fullmatch(value):
        raise ValueError("expected 1-128 letters, digits or _.:@- (a host or pod name)")
    return value


@functools.cache
def host_name() -> str:
    """Return this host's name (a pod's name in Kubernetes), cut to 128 chars."""
    return socket.gethostname()[:128] or "localhost"


def replica_name(configured: str | None) -> str:
    """Return the name of this replica: ``server.replica``, else the host name."""
    return configured or host_name()
