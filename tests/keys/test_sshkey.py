"""keys.sshkey: id_ed25519.pub lines as the ollama CLI writes them; fingerprints."""

from __future__ import annotations

import base64

import pytest

from authproxy.errors import KeyStoreError
from authproxy.keys.sshkey import fingerprint_of, parse_public_key, raw_key
from tests.support.ollama import OllamaIdentity

# Made with `ssh-keygen -t ed25519 -C alice@laptop`; `ssh-keygen -lf` printed the
# fingerprint.
LINE = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEmT2KuprpVQP/LS7/1VjJitbtgczjitAqQVYTEpJRMf "
    "alice@laptop"
)
BLOB = LINE.split()[1]
FINGERPRINT = "SHA256:rjDsjSl9/0TUKuKiqtU8WzZ9HGE+OWyi9rQnedwsoIU"
# The same wire format around a 33-byte key: the right shape, the wrong length.
LONG = base64.b64encode(base64.b64decode(BLOB)[:-32] + bytes(33)).decode()


@pytest.mark.parametrize(
    "text",
    [LINE, BLOB, f"  {LINE}\n", "ssh-ed25519\t" + BLOB, f"ssh-ed25519 {BLOB}"],
    ids=["line", "blob-alone", "padded", "tab", "no-comment"],
)
def test_a_public_key_line_gives_its_blob(text: str) -> None:
    """The base64 field is what is kept, whatever surrounds it on the line."""
    assert parse_public_key(text) == BLOB


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{LINE}\n{LINE}", "expected one line"),
        ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ alice", "not an ssh-ed25519"),
        ("ssh-ed25519 " + BLOB[:-4], "not an ssh-ed25519"),
        ("ssh-ed25519 " + BLOB[:-1] + "!", "not an ssh-ed25519"),
        (LONG, "not an ssh-ed25519"),
        ("", "not an ssh-ed25519"),
    ],
    ids=["two-lines", "rsa", "truncated", "bad-base64", "wrong-length", "empty"],
)
def test_anything_else_is_refused(text: str, message: str) -> None:
    """Another key type, a cut or padded key, or two keys: a KeyStoreError."""
    with pytest.raises(KeyStoreError, match=message):
        parse_public_key(text)


def test_raw_key_is_the_ed25519_key() -> None:
    """The 32 bytes inside the wire format are the key's raw public bytes."""
    identity = OllamaIdentity()
    public = identity.private.public_key().public_bytes_raw()
    assert raw_key(identity.blob) == public


def test_fingerprint_matches_ssh_keygen() -> None:
    """The fingerprint is what `ssh-keygen -l` prints for the same key."""
    assert fingerprint_of(BLOB) == FINGERPRINT
    assert fingerprint_of(OllamaIdentity().blob) != FINGERPRINT
