"""OpenSSH ed25519 public keys, as the ``ollama`` CLI's ``id_ed25519.pub`` holds them.

A line is ``ssh-ed25519 <base64> [comment]``. The base64 field is the SSH wire
format (RFC 8709 §4): a length-prefixed ``ssh-ed25519`` then the length-prefixed
32-byte key. The ``ollama`` CLI sends that same base64 field in its signatures
(shared/ollama-wire.md §8c), so it is what the store keeps and looks keys up by.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Final

from authproxy.errors import KeyStoreError

KEY_TYPE: Final = b"ssh-ed25519"
KEY_BYTES: Final = 32
_BLOB_RE: Final = re.compile(r"[A-Za-z0-9+/]{68}")  # 51 bytes of wire format
_LINE_RE: Final = re.compile(r"ssh-ed25519[ \t]+([A-Za-z0-9+/]+={0,2})(?:[ \t].*)?")


def raw_key(blob: str) -> bytes:
    """Return the 32-byte ed25519 key of a base64 wire-format blob.

    Raises:
        KeyStoreError: not a well-formed ``ssh-ed25519`` public key.
    """
    if not _BLOB_RE.fullmatch(blob):
        raise KeyStoreError("not an ssh-ed25519 public key")
    try:
        wire = base64.b64decode(blob, validate=True)
    except binascii.Error:
        raise KeyStoreError("not an ssh-ed25519 public key") from None
    expected = (
        len(KEY_TYPE).to_bytes(4, "big") + KEY_TYPE + KEY_BYTES.to_bytes(4, "big")
    )
    if len(wire) != len(expected) + KEY_BYTES or not wire.startswith(expected):
        raise KeyStoreError("not an ssh-ed25519 public key")
    return wire[len(expected) :]


def parse_public_key(text: str) -> str:
    """Read the content of an ``id_ed25519.pub`` file (or its base64 field alone).

    Args:
        text: ``ssh-ed25519 AAAA... comment``, one line.

    Raises:
        KeyStoreError: not exactly one ed25519 public key.

    Returns:
        The base64 wire-format blob.
    """
    line = text.strip()
    if "\n" in line or "\r" in line:
        raise KeyStoreError("expected one line: ssh-ed25519 AAAA... [comment]")
    match = _LINE_RE.fullmatch(line)
    blob = match.group(1) if match else line
    raw_key(blob)
    return blob


def fingerprint_of(blob: str) -> str:
    """Return the key's fingerprint as ``ssh-keygen -l`` prints it (``SHA256:...``)."""
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")
