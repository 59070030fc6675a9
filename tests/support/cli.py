"""Running the real CLI entry point in a test, in the loop's thread or off it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from authproxy.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``authproxy <args>``; return the exit code, stdout and stderr."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI off the loop (the server under test keeps serving); code, stdout."""
    code = await asyncio.to_thread(main, list(args))
    return code, capsys.readouterr().out


def shown_fields(out: str) -> dict[str, str]:
    """Read ``keys show`` output (``name:   value`` lines) into a mapping."""
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {name: value.strip() for name, value in pairs}


def run_process(
    cwd: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m authproxy <args>`` as a child process in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "authproxy", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # The test says what it sets: no AUTHPROXY_* from the outer shell.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AUTHPROXY_")},
            "PYTHONUNBUFFERED": "1",
        },
    )
