"""keys.store: tokens, parsing the file, its completeness mark, locked writes."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from authproxy.config.model import Argon2Config
from authproxy.errors import KeyStoreError
from authproxy.keys.lifecycle import KeySpec, create_key
from authproxy.keys.store import (
    KeyRecord,
    KeyTable,
    dump_store,
    format_token,
    load_store,
    make_hasher,
    new_key_id,
    new_secret,
    parse_store,
    parse_store_file,
    parse_token,
    read_store,
    update_store,
    write_store,
)
from tests.support.admin import Stack

CHEAP = Argon2Config(time_cost=1, memory_cost=8, parallelism=1)


HASH = (
    "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0"
    "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)


NOW = datetime(2026, 11, 1, tzinfo=UTC)


def entry(**fields: object) -> str:
    """One store entry as YAML flow text, with overridable fields."""
    values = {"id": "abcdefghijkl", "name": "a", "hash": f"'{HASH}'"}
    values["created_at"] = "2026-01-01"
    values.update({k: str(v) for k, v in fields.items()})
    return "keys:\n- {" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}"


def record(**kw: object) -> KeyRecord:
    values: dict[str, object] = {
        "id": "abcdefghijkl",
        "name": "alice",
        "hash": HASH,
        "created_at": NOW,
    }
    values.update(kw)
    return KeyRecord(**values)  # type: ignore[arg-type]


class TestTokens:
    def test_round_trip(self) -> None:
        """A formatted token parses back into its id and 256-bit secret."""
        key_id, secret = new_key_id(), new_secret()
        assert parse_token(format_token(key_id, secret)) == (key_id, secret)
        assert len(key_id) == 12
        assert len(secret) == 43

    @pytest.mark.parametrize(
        "token",
        [
            "",
            "ap_",
            "ap_abcdefghijkl_",
            "sk_abcdefghijkl_" + "a" * 43,
            "ap_ABCDEFGHIJKL_" + "a" * 43,
            "ap_abcdefghijkl_" + "a" * 42,
            "ap_abcdefghijkl_" + "a" * 44,
            "ap_abcdefghij1l_" + "a" * 43,
        ],
        ids=[
            "empty",
            "prefix",
            "no-secret",
            "other-prefix",
            "upper-id",
            "short",
            "long",
            "bad-id-char",
        ],
    )
    def test_malformed(self, token: str) -> None:
        """Anything not exactly ap_<12 base32>_<43 base64url> is malformed."""
        assert parse_token(token) is None


class TestParse:
    def test_round_trip(self) -> None:
        """dump_store and parse_store agree."""
        table = KeyTable(
            (record(), record(id="mnopqrstuvwx", name="bob", disabled=True))
        )
        parsed = parse_store(dump_store(table), "x")
        assert parsed.records == table.records
        assert parsed.find("bob") is parsed.find("mnopqrstuvwx")

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("keys: [\n  {id: x", "x: not valid YAML at line 2"),
            ("[]", "expected a mapping with a 'keys' list"),
            ("version: 3\nkeys: []", "unsupported store version"),
            ("keys:\n- 5", "keys[0]: expected a mapping"),
            (
                "keys:\n- {id: abcdefghijkl, name: a}",
                "keys[0]: missing or invalid 'hash'",
            ),
            (entry(created_at="x"), "keys[0]: invalid 'created_at'"),
            (entry(expires_at=5), "keys[0]: invalid 'expires_at'"),
            (entry(id="abc"), "keys[0]: invalid 'id'"),
            (entry(hash="plain"), "keys[0]: 'hash' is not an argon2 hash"),
            (entry(x=1), "keys[0]: unknown field 'x'"),
            (entry(kind="magic"), "keys[0]: 'kind' must be token, password or ollama"),
            (entry(disabled="maybe"), "keys[0]: 'disabled' must be true or false"),
            (
                entry() + "\n" + entry(id="mnopqrstuvwx").split("\n", 1)[1],
                "keys[1]: a key named 'a' already exists",
            ),
        ],
        ids=[
            "yaml",
            "not-mapping",
            "version",
            "item",
            "missing",
            "time",
            "expiry",
            "id",
            "hash",
            "unknown-field",
            "kind",
            "disabled",
            "duplicate",
        ],
    )
    def test_errors_name_the_entry_and_never_quote_hashes(self, text, message) -> None:
        """Parse errors say where, and never echo file contents."""
        with pytest.raises(KeyStoreError) as info:
            parse_store(text, "x")
        assert message in str(info.value)
        assert HASH not in str(info.value)

    def test_written_store_ends_with_its_record_count(self) -> None:
        """The writer's last top-level key is the mark of completeness."""
        text = dump_store(KeyTable((record(), record(id="mnopqrstuvwx", name="b"))))
        assert text.splitlines()[-1] == "records: 2"
        assert parse_store_file(text, "x").version == 2
        assert dump_store(KeyTable()).endswith("keys: []\nrecords: 0\n")


class TestCompleteness:
    """A store cut short still parses as YAML; the mark makes the loader refuse it."""

    def test_no_prefix_of_a_written_store_loads(self) -> None:
        """A written store cut at any line's start, middle or end is refused."""
        text = dump_store(
            KeyTable(
                (
                    record(note="first"),
                    record(id="mnopqrstuvwx", name="bob", models=("llama3.2",)),
                )
            )
        )
        assert len(parse_store(text, "x").records) == 2
        whole = text.rstrip("\n")
        starts = [0] + [i + 1 for i, c in enumerate(whole) if c == "\n"]
        ends = [*starts[1:], len(whole) + 1]
        pairs = zip(starts, ends, strict=True)
        cuts = {cut for a, b in pairs for cut in (a, (a + b) // 2, b - 1)}
        assert len(cuts) > 100
        for cut in sorted(cuts - {len(whole)}):
            with pytest.raises(KeyStoreError) as info:
                parse_store(whole[:cut], "x")
            assert HASH not in str(info.value)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "x: the file is empty (a write cut short?)"),
            ("\n\n", "x: the file is empty"),
            ("# authproxy key store\n", "x: the file is empty"),
            (
                "version: 2\n" + entry(),
                "x: incomplete: the final 'records' count is missing",
            ),
            (
                "version: 2\n" + entry() + "\nrecords: 2",
                "x: incomplete: 'records' does not match the number of keys (1)",
            ),
            (
                "version: 2\n" + entry() + "\nrecords: true",
                "x: incomplete: 'records' does not match",
            ),
            (
                "version: 2\nrecords: 1\n" + entry(),
                "x: 'records' must be the last top-level key",
            ),
            (
                "version: 1\n" + entry() + "\nrecords: 0",
                "x: incomplete: 'records' does not match the number of keys (1)",
            ),
        ],
        ids=[
            "zero-bytes",
            "blank",
            "comment-only",
            "no-mark",
            "count-mismatch",
            "count-not-int",
            "mark-not-last",
            "v1-with-wrong-mark",
        ],
    )
    def test_refused_with_a_hint(self, text: str, message: str) -> None:
        """Empty, unmarked or miscounted stores are refused; the message says why."""
        with pytest.raises(KeyStoreError) as info:
            parse_store(text, "x")
        assert str(info.value).startswith(message)
        if "records" in message:
            assert str(info.value).endswith("see keys/README.md, 'Editing by hand'")

    @pytest.mark.parametrize(
        "text",
        [entry(), "version: 1\n" + entry(), "version: 2\n" + entry() + "\nrecords: 1"],
        ids=["no-version", "v1", "v2-hand-edited"],
    )
    def test_hand_written_stores_load(self, text: str) -> None:
        """A version 1 file (no mark) and a v2 file with a correct mark both load."""
        loaded = parse_store_file(text, "x")
        assert [r.id for r in loaded.table.records] == ["abcdefghijkl"]
        assert loaded.version == (2 if "records" in text else 1)

    def test_any_write_upgrades_a_version_1_store(self, tmp_path: Path) -> None:
        """Changing a version 1 store rewrites it as version 2 with its mark."""
        path = tmp_path / "keys.yaml"
        path.write_text("version: 1\n" + entry(), encoding="utf-8")
        assert load_store(path).version == 1
        create_key(path, make_hasher(CHEAP), KeySpec(name="second"), now=NOW)
        loaded = load_store(path)
        assert (loaded.version, len(loaded.table.records)) == (2, 2)
        assert path.read_text().splitlines()[-1] == "records: 2"

    def test_an_empty_file_is_not_an_empty_store(self, tmp_path: Path) -> None:
        """A key change on a 0-byte store fails instead of starting over."""
        path = tmp_path / "keys.yaml"
        path.write_bytes(b"")
        with pytest.raises(KeyStoreError, match="the file is empty"):
            create_key(path, make_hasher(CHEAP), KeySpec(name="x"), now=NOW)
        assert path.read_bytes() == b""


class TestWrite:
    def test_atomic_write_mode_0600(self, tmp_path: Path) -> None:
        """The store is replaced whole, mode 0600, with no temp files left."""
        path = tmp_path / "k" / "keys.yaml"
        write_store(path, KeyTable((record(),)))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert read_store(path).records == (record(),)
        assert sorted(p.name for p in path.parent.iterdir()) == ["keys.yaml"]

    def test_unwritable_location(self, tmp_path: Path) -> None:
        """A location that cannot hold the store gives a clear KeyStoreError."""
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        with pytest.raises(KeyStoreError, match="cannot write"):
            write_store(blocker / "keys.yaml", KeyTable())

    def test_dates_in_hand_edited_files(self) -> None:
        """Unquoted YAML dates and times are read as UTC."""
        text = entry(created_at="2026-01-01", expires_at="2027-01-01 10:00:00")
        parsed = parse_store(text, "x").records[0]
        assert parsed.created_at == datetime(2026, 1, 1, tzinfo=UTC)
        assert parsed.expires_at == datetime(2027, 1, 1, 10, tzinfo=UTC)

    def test_change_can_refuse(self, tmp_path: Path) -> None:
        """An update that raises leaves the file untouched."""
        path = tmp_path / "keys.yaml"
        write_store(path, KeyTable((record(),)))
        before = path.read_bytes()

        def change(table: KeyTable) -> tuple[KeyTable, None]:
            raise KeyStoreError("no")

        with pytest.raises(KeyStoreError):
            update_store(path, change)
        assert path.read_bytes() == before


def _create_many(path: str, prefix: str, count: int) -> None:
    hasher = make_hasher(CHEAP)
    for i in range(count):
        create_key(Path(path), hasher, KeySpec(name=f"{prefix}-{i}"), now=NOW)


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    """Four processes creating keys at once: every key ends up in the store."""
    path = tmp_path / "keys.yaml"
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_create_many, args=(str(path), f"p{n}", 10))
        for n in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    names = {r.name for r in read_store(path).records}
    assert names == {f"p{n}-{i}" for n in range(4) for i in range(10)}


def test_hasher_uses_configured_parameters() -> None:
    """make_hasher builds argon2id with the configured cost."""
    hasher = make_hasher(CHEAP)
    digest = hasher.hash("x")
    assert digest.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert PasswordHasher().check_needs_rehash(digest)


async def test_concurrent_cli_and_api_writers_lose_nothing(
    stack: Stack, config_file: Path, keys_path: Path
) -> None:
    """10 CLI processes and 10 API calls creating keys at once: all 20 are kept."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "authproxy",
            "keys",
            "create",
            f"cli-{i}",
            "--json",
            "--config",
            str(config_file),
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(10)
    ]
    api_calls = [
        stack.api("POST", "/admin/keys", {"name": f"api-{i}"}) for i in range(10)
    ]
    results = await asyncio.gather(*api_calls, *(p.communicate() for p in procs))
    assert all(r[0] == 201 for r in results[:10])
    for out, _ in results[10:]:
        stack.secrets.add(json.loads(out)["token"])
    assert all(p.returncode == 0 for p in procs)
    names = set(read_store(keys_path).by_name)
    assert {f"cli-{i}" for i in range(10)} | {f"api-{i}" for i in range(10)} <= names
