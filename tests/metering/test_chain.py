"""metering.chain: sealing, tampering found at the first bad line, torn lines."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from authproxy.metering.chain import (
    GENESIS,
    ChainState,
    VerifyReport,
    check_line,
    seal,
    seal_many,
    split_chains,
    tail_state,
    verify_files,
)
from tests.metering.chainformat import RECORDS, reference_lines
from tests.support.audit import sealed_lines, write_n, writer_for


class TestChain:
    def test_seal_and_check(self) -> None:
        """A sealed line verifies and carries seq, prev_hash and hash last."""
        line, state = seal({"a": 1}, ChainState())
        record, after = check_line(line.rstrip(b"\n"), ChainState())
        assert after == state
        assert list(record) == ["a", "seq", "prev_hash"]
        assert record["prev_hash"] == GENESIS
        assert line.endswith(f',"hash":"{state.hash}"}}\n'.encode())
        assert line.isascii()

    @pytest.mark.parametrize(
        "record",
        [
            {},
            {"a": 1},
            {"seq": 7, "b": "x"},
            {"prev_hash": "p"},
            {"é": "\u2028", "n": None},
        ],
    )
    def test_seal_writes_the_record_with_its_chain_fields(
        self, record: dict[str, object]
    ) -> None:
        """The sealed body is the record, seq and prev_hash, hashed; no key twice."""
        state = ChainState(41, "ab" * 32)
        line, after = seal(record, state)
        body = orjson.dumps({**record, "seq": 42, "prev_hash": state.hash})
        digest = hashlib.sha256(body).hexdigest()
        assert line == body[:-1] + f',"hash":"{digest}"}}\n'.encode()
        assert after == ChainState(42, digest)

    @pytest.mark.parametrize(
        "state",
        [ChainState(), ChainState(41, "ab" * 32)],
        ids=["genesis", "mid-chain"],
    )
    def test_seal_many_writes_the_documented_lines(self, state: ChainState) -> None:
        """Sealed together, records give the docs' lines byte for byte, chained."""
        lines, after = seal_many(RECORDS, state)
        assert (lines, after) == reference_lines(RECORDS, state)

    def test_seal_many_is_seal_one_record_at_a_time(self) -> None:
        """A batch seals to the same lines and state as ``seal`` record by record."""
        state = ChainState(9, "cd" * 32)
        one_by_one = []
        for record in RECORDS:
            line, state = seal(record, state)
            one_by_one.append(line)
        assert seal_many(RECORDS, ChainState(9, "cd" * 32)) == (one_by_one, state)

    def test_seal_many_leaves_the_records_alone(self) -> None:
        """Sealing adds no field to the records, which other sinks still hold."""
        records = [dict(r) for r in RECORDS]
        seal_many(records, ChainState())
        assert records == RECORDS

    def test_seal_many_of_nothing(self) -> None:
        """No records: no lines, and the chain stays where it was."""
        state = ChainState(3, "ef" * 32)
        assert seal_many([], state) == ([], state)

    def test_sealed_batch_verifies(self, tmp_path: Path) -> None:
        """A batch's lines pass ``verify_files`` as one chain."""
        path = tmp_path / "a.jsonl"
        lines, _ = seal_many(RECORDS, ChainState())
        path.write_bytes(b"".join(lines))
        assert verify_files([path]) == VerifyReport(len(RECORDS), 1)

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (
                lambda ls: ls.__setitem__(2, ls[2].replace(b'"n":2', b'"n":3')),
                "3: edited",
            ),
            (lambda ls: ls.pop(2), "3: missing records: seq 4 follows seq 2"),
            (lambda ls: ls.insert(1, ls.pop(3)), "2: missing records"),
            (
                lambda ls: ls.__setitem__(2, ls[2][:-10]),
                "4: missing records: seq 4 follows seq 2 (after the torn line at ",
            ),
            (lambda ls: ls.__setitem__(0, b"garbage"), "1: not a sealed audit record"),
            (lambda ls: ls.append(b"garbage"), "6: not a sealed audit record"),
        ],
        ids=[
            "edited-byte",
            "deleted-line",
            "reordered",
            "truncated-middle",
            "garbage",
            "garbage-last",
        ],
    )
    def test_tampering_is_reported_at_the_first_bad_line(
        self, tmp_path: Path, mutate, message
    ) -> None:
        """Edits, deletions, reordering and truncation each name the first bad line."""
        path = tmp_path / "a.jsonl"
        write_n(writer_for(path), 5)
        assert verify_files([path]).ok
        lines = path.read_bytes().splitlines()
        mutate(lines)
        path.write_bytes(b"\n".join(lines) + b"\n")
        report = verify_files([path])
        assert not report.ok
        assert f"{path}:{message}" in str(report.error)


class TestTornLines:
    """A short write leaves the start of a record; the record follows whole."""

    def test_torn_then_written_whole_is_a_warning(self, tmp_path: Path) -> None:
        """A torn line that the next record completes is skipped with its location."""
        ls = sealed_lines(4)
        path = tmp_path / "a.jsonl"
        path.write_bytes(ls[0] + ls[1] + ls[2][:30] + b"\n" + ls[2] + ls[3])
        report = verify_files([path])
        assert (report.ok, report.records, report.files, report.torn) == (
            True,
            4,
            1,
            1,
        )
        assert report.warnings == (
            f"{path}:3: torn line skipped (a short write): its record, seq 3, "
            f"was written whole at {path}:4",
        )

    def test_torn_at_the_end_of_one_file_completed_in_the_next(
        self, tmp_path: Path
    ) -> None:
        """Rotated between a tear and its retry: the next file completes it."""
        ls = sealed_lines(4)
        old, new = tmp_path / "a.jsonl.1", tmp_path / "a.jsonl"
        old.write_bytes(ls[0] + ls[1] + ls[2][:-20])
        new.write_bytes(ls[2] + ls[3])
        report = verify_files([old, new])
        assert (report.ok, report.records, report.files) == (True, 4, 2)
        assert report.warnings == (
            f"{old}:3: torn line skipped (a short write): its record, seq 3, "
            f"was written whole at {new}:1",
        )

    def test_repeated_torn_writes_and_an_empty_line(self, tmp_path: Path) -> None:
        """Several failed retries of a record (one wrote only a newline) all pass."""
        ls = sealed_lines(3)
        path = tmp_path / "a.jsonl"
        path.write_bytes(
            ls[0] + ls[1][:10] + b"\n" + ls[1][:200] + b"\n" + b"\n" + ls[1] + ls[2]
        )
        report = verify_files([path])
        assert (report.ok, report.records, report.torn) == (True, 3, 3)
        assert [w.split(": ")[0] for w in report.warnings] == [
            f"{path}:2",
            f"{path}:3",
            f"{path}:4",
        ]

    def test_torn_line_of_a_lost_record_fails(self, tmp_path: Path) -> None:
        """A torn record that never came whole (a restart lost it) fails at the tear."""
        ls = sealed_lines(3)
        other = seal({"n": 99}, check_line(ls[1].rstrip(), None)[1])[0]
        path = tmp_path / "a.jsonl"
        path.write_bytes(ls[0] + ls[1] + other[:40] + b"\n" + ls[2])
        report = verify_files([path])
        assert report.records == 2
        assert report.error == (
            f"{path}:3: not a sealed audit record (no trailing hash), "
            f"nor a torn write of the record at {path}:4"
        )

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (
                lambda ls: ls[0] + ls[1][:25] + b"\n" + ls[2],
                "3: missing records: seq 3 follows seq 1 (after the torn line at ",
            ),
            (
                lambda ls: (
                    ls[0] + ls[1][:25] + b"\n" + ls[1].replace(b'"n":1', b'"n":7')
                ),
                "3: edited: its hash does not match its content",
            ),
        ],
        ids=["missing", "edited"],
    )
    def test_a_torn_line_hides_no_missing_or_edited_record(
        self, tmp_path: Path, content, message
    ) -> None:
        """After a torn line, a gap or an edited record still fails verification."""
        path = tmp_path / "a.jsonl"
        path.write_bytes(content(sealed_lines(3)))
        report = verify_files([path])
        assert not report.ok
        assert str(report.error).startswith(f"{path}:{message}")

    @pytest.mark.parametrize("ending", [b"", b"\n"], ids=["no-newline", "newline"])
    def test_torn_last_line_is_a_warning(self, tmp_path: Path, ending: bytes) -> None:
        """A torn line after the last record is an unfinished write: ok, warned."""
        ls = sealed_lines(3)
        path = tmp_path / "a.jsonl"
        path.write_bytes(ls[0] + ls[1] + ls[2][:-5] + ending)
        report = verify_files([path])
        assert (report.ok, report.records, report.torn) == (True, 2, 1)
        assert report.warnings[0] == (
            f"{path}:3: torn last line skipped: an unfinished write; its record "
            "is not in the log (still waiting to be written, or lost)"
        )

    def test_tail_state_passes_over_torn_lines(self, tmp_path: Path) -> None:
        """The chain resumes from the last sealed record, not from a torn line."""
        ls = sealed_lines(2)
        path = tmp_path / "a.jsonl"
        path.write_bytes(ls[0] + ls[1] + ls[1][:20] + b"\n\n" + ls[1][:7])
        assert tail_state(path) == check_line(ls[1].rstrip(), None)[1]


def test_split_chains_groups_each_file_with_its_backups() -> None:
    """a.jsonl and its backups are one chain, oldest first; b.jsonl is another."""
    a, b = Path("x/a.jsonl"), Path("y/b.jsonl")
    given = [a, b, a.with_name("a.jsonl.1"), a.with_name("a.jsonl.2"), a]
    assert split_chains(given) == [
        [a.with_name("a.jsonl.2"), a.with_name("a.jsonl.1"), a],
        [b],
    ]


def test_split_chains_keeps_names_that_are_no_backups_apart() -> None:
    """Only a numeric suffix marks a backup; a dated file is its own chain."""
    given = [Path("usage.jsonl.old"), Path("usage.jsonl-2026"), Path(".1")]
    assert split_chains(given) == [[p] for p in given]
