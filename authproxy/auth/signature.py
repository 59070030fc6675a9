"""The signatures the ``ollama`` CLI makes with ``OLLAMA_AUTH=1`` (wire §8c).

The CLI sends ``Authorization: <public key>:<signature>``: the base64 SSH
wire format of its ed25519 key, and the standard base64 of an Ed25519
signature of ``"<METHOD>,<PATH>?ts=<unix seconds>"``, the same ``ts`` being in
the query. The signature covers neither the body nor the host, so it is
accepted only within a window around ``ts``, and only once.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from typing import Final
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authproxy.auth.credentials import CredentialError
from authproxy.errors import KeyStoreError
from authproxy.keys.sshkey import raw_key

SCHEME: Final = "ollama-signature"
# A bound on remembered signatures: a signed request costs an Ed25519 check
# by a registered key, so only key holders can fill it.
MAX_SEEN: Final = 100_000


def signed_challenge(
    method: str, path: str, query: str, now: float, window: float
) -> tuple[bytes, int]:
    """Rebuild what the client signed, and check its ``ts`` is fresh.

    Args:
        method: the request method.
        path: the request path as sent, without the query.
        query: the raw query string; exactly one ``ts`` must be in it.
        now: the current Unix time.
        window: how far ``ts`` may be from ``now``, either way, in seconds.

    Raises:
        CredentialError: ``ts`` missing, repeated, not a number
            (``malformed``) or outside the window (``signature_expired``).

    Returns:
        The challenge bytes and ``ts``.
    """
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "ts"]
    if len(values) != 1 or not values[0].isascii() or not values[0].isdigit():
        raise CredentialError("malformed")
    ts = int(values[0])
    if abs(now - ts) > window:
        raise CredentialError("signature_expired")
    return f"{method},{path}?ts={values[0]}".encode(), ts


def signature_valid(public_key: str, signature: str, challenge: bytes) -> bool:
    """Tell whether ``signature`` is the key's Ed25519 signature of ``challenge``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(raw_key(public_key))
        key.verify(base64.b64decode(signature, validate=True), challenge)
    except (InvalidSignature, KeyStoreError, binascii.Error, ValueError):
        return False
    return True


class SeenSignatures:
    """Signatures already accepted, each until its ``ts`` leaves the window."""

    def __init__(self, window: float, max_entries: int = MAX_SEEN) -> None:
        self.window = window
        self.max_entries = max_entries
        self._until: OrderedDict[str, float] = OrderedDict()

    def first_use(self, signature: str, ts: int, now: float) -> bool:
        """Record a signature; return ``False`` if it was seen (a replay).

        When full of live entries it refuses new ones rather than forget one
        that could then be replayed.
        """
        while self._until and next(iter(self._until.values())) < now:
            self._until.popitem(last=False)
        if signature in self._until:
            return False
        if len(self._until) >= self.max_entries:
            # Expiry is not in insertion order (ts may lie either side of now).
            for old in [s for s, until in self._until.items() if until < now]:
                del self._until[old]
            if len(self._until) >= self.max_entries:
                return False
        self._until[signature] = ts + self.window
        return True
