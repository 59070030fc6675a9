"""Running the real CLI entry point in a test, in the loop's thread or off it."""

from __future__ import annotations

import asyncio

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
