"""The ``ollama`` CLI's side of ``OLLAMA_AUTH`` (shared/ollama-wire.md §8c), for tests.

The Go client signs ``"<METHOD>,<PATH>?ts=<unix seconds>"`` with the user's
ed25519 key, puts the same ``ts`` in the query, and sends
``Authorization: <public key>:<signature>``. Python's ``ollama`` package does not
sign, so the tests sign as the Go client does.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class OllamaIdentity:
    """An ``~/.ollama/id_ed25519`` key pair."""

    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def pub_line(self) -> str:
        """The ``id_ed25519.pub`` line: ``ssh-ed25519 <base64> <comment>``."""
        openssh = self.private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return openssh.decode() + " alice@laptop"

    @property
    def blob(self) -> str:
        """The base64 field of the public key line, as the CLI sends it."""
        return self.pub_line.split()[1]

    def signature(self, method: str, path: str, ts: int) -> str:
        """Return the standard base64 of the signature of the CLI's challenge."""
        signed = self.private.sign(f"{method},{path}?ts={ts}".encode())
        return base64.b64encode(signed).decode()

    def sign(
        self, method: str, path: str, ts: int | None = None
    ) -> tuple[str, dict[str, str]]:
        """Return the target (``path?ts=...``) and the header of a signed request."""
        ts = int(time.time()) if ts is None else ts
        header = f"{self.blob}:{self.signature(method, path, ts)}"
        return f"{path}?ts={ts}", {"Authorization": header}
