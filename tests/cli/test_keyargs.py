"""cli.keyargs: what `authproxy keys ...` accepts, the ollama public key options too."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from authproxy.cli.main import build_parser
from authproxy.keys.sshkey import fingerprint_of
from authproxy.keys.store import read_store
from tests.support.ollama import OllamaIdentity


@pytest.fixture
def pub_file(tmp_path: Path) -> tuple[OllamaIdentity, Path]:
    """An ollama CLI key pair and its id_ed25519.pub file."""
    identity = OllamaIdentity()
    path = tmp_path / "id_ed25519.pub"
    path.write_text(identity.pub_line + "\n")
    return identity, path


def test_an_ollama_key_from_a_pub_file(cli, pub_file, keys_path: Path) -> None:
    """--ollama-public-key FILE makes an ollama key; no token is printed."""
    identity, path = pub_file
    code, out, _ = cli("keys", "create", "laptop", "--ollama-public-key", str(path))
    assert code == 0
    fingerprint = fingerprint_of(identity.blob)
    assert out.splitlines()[-1] == (
        f"Public key {fingerprint}: run the ollama CLI with OLLAMA_AUTH=1."
    )
    assert "Token" not in out
    record = read_store(keys_path).by_name["laptop"]
    assert (record.kind, record.public_key) == ("ollama", identity.blob)


def test_an_ollama_key_from_stdin(cli, monkeypatch, keys_path: Path) -> None:
    """'-' reads the public key line from standard input."""
    identity = OllamaIdentity()
    monkeypatch.setattr("sys.stdin", io.StringIO(identity.pub_line + "\n"))
    code, out, _ = cli("keys", "create", "cli", "--ollama-public-key", "-", "--json")
    data = json.loads(out)
    assert (code, data["kind"], data["token"]) == (0, "ollama", None)
    assert data["fingerprint"] == fingerprint_of(identity.blob)


def test_list_and_show_give_the_fingerprint(cli, pub_file) -> None:
    """keys list shows an ollama key's SHA256 fingerprint in its column."""
    identity, path = pub_file
    cli("keys", "create", "laptop", "--ollama-public-key", str(path))
    _, table, _ = cli("keys", "list")
    row = next(line for line in table.splitlines() if "laptop" in line)
    assert row.split()[-1] == fingerprint_of(identity.blob)


def test_rotation_registers_a_new_public_key(cli, pub_file, keys_path: Path) -> None:
    """keys rotate --ollama-public-key swaps the key; the old one works for --grace."""
    old, path = pub_file
    cli("keys", "create", "laptop", "--ollama-public-key", str(path))
    new = OllamaIdentity()
    path.write_text(new.pub_line)
    code, out, _ = cli(
        "keys", "rotate", "laptop", "--grace", "1h", "--ollama-public-key", str(path)
    )
    assert code == 0
    assert out.splitlines()[-1].endswith(f"; new: {fingerprint_of(new.blob)}")
    record = read_store(keys_path).by_name["laptop"]
    assert record.public_key == new.blob
    assert [p.public_key for p in record.previous] == [old.blob]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ollama-public-key", "/nonexistent/id.pub"], "cannot read /nonexistent"),
        (["--ollama-public-key", "{bad}"], "not an ssh-ed25519 public key"),
    ],
    ids=["missing-file", "not-a-key"],
)
def test_a_bad_public_key_writes_nothing(
    cli, tmp_path: Path, keys_path: Path, args, message: str
) -> None:
    """An unreadable file or a file without one ed25519 key exits 1, naming it."""
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-rsa AAAAB3NzaC1yc2E alice\n")
    args = [a.replace("{bad}", str(bad)) for a in args]
    code, out, err = cli("keys", "create", "laptop", *args)
    assert (code, out) == (1, "")
    assert message in err
    assert not keys_path.exists()


def test_a_password_and_a_public_key_exclude_each_other(capsys, pub_file) -> None:
    """--password-stdin and --ollama-public-key cannot both be given (exit 2)."""
    _, path = pub_file
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(
            [
                "keys",
                "create",
                "x",
                "--password-stdin",
                "--ollama-public-key",
                str(path),
            ]
        )
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_policy_options_parse_lists_and_limits() -> None:
    """--scopes and --models take comma lists; the limit flags take integers."""
    args = build_parser().parse_args(
        [
            "keys",
            "update",
            "svc",
            "--scopes",
            "inference, models:read,",
            "--models",
            "llama3.2,qwen3:*",
            "--rpm",
            "60",
            "--disable",
        ]
    )
    assert (args.scopes, args.models, args.disable) == (
        ["inference", "models:read"],
        ["llama3.2", "qwen3:*"],
        True,
    )
    assert args.requests_per_minute == 60
