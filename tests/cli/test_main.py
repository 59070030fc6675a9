"""cli.main: the parser, --help everywhere, config errors and exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from authproxy.cli.main import build_parser, main, overrides_from
from authproxy.keys.store import read_store
from tests.support.cli import run


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["healthcheck"],
        ["keys", "check"],
        ["check-config"],
    ],
    ids=lambda c: "-".join(c) or "top",
)
def test_every_command_has_help(capsys, command) -> None:
    """--help works on every command and exits 0."""
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: authproxy" in capsys.readouterr().out


def test_keys_flag_overrides_config(
    capsys, tmp_path: Path, config_file: Path, secrets_seen
) -> None:
    """--keys FILE wins over keys.file from the config."""
    other = tmp_path / "elsewhere" / "store.yaml"
    code, out, _ = run(
        capsys,
        "keys",
        "create",
        "x",
        "--json",
        "--config",
        str(config_file),
        "--keys",
        str(other),
    )
    secrets_seen.add(json.loads(out)["token"])
    assert code == 0
    assert read_store(other).by_name["x"].name == "x"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("listen:\n  port: abc\n", "listen.port: expected an integer, got 'abc'"),
        (
            "listen:\n  port: 70000\n",
            "listen.port: expected int in 0..65535, got 70000",
        ),
        ("upstream:\n  url: ftp://x\n", "upstream.url: expected an http(s) URL"),
        ("bogus: 1\n", "bogus: unknown key"),
        ("keys:\n  argon2:\n    memory: 1\n", "keys.argon2.memory: unknown key"),
        ("- a\n", "expected a mapping at the top"),
        ("a: [\n", "is not valid YAML at line 2"),
    ],
    ids=["type", "range", "url", "unknown", "unknown-nested", "not-mapping", "yaml"],
)
def test_config_errors_name_the_key(capsys, tmp_path: Path, yaml_text, message) -> None:
    """An invalid config stops the command with exit 2 and names the key."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    code, out, err = run(capsys, "keys", "list", "--config", str(path))
    assert code == 2
    assert out == ""
    assert message in err


class TestSources:
    def test_flags_map_to_keys(self) -> None:
        """serve's flags become dotted overrides."""
        args = build_parser().parse_args(
            [
                "serve",
                "--listen",
                "0.0.0.0:8080",
                "--upstream",
                "http://o:1",
                "--keys",
                "k.yaml",
            ]
        )
        assert overrides_from(args) == {
            "listen.host": "0.0.0.0",
            "listen.port": 8080,
            "upstream.url": "http://o:1",
            "keys.file": "k.yaml",
        }

    @pytest.mark.parametrize(
        ("flag", "expected"),
        [(":8080", "0.0.0.0"), ("[::1]:8080", "::1"), ("localhost:1", "localhost")],
        ids=["port-only", "ipv6", "name"],
    )
    def test_listen_flag_forms(self, flag: str, expected: str) -> None:
        """--listen accepts HOST:PORT, [v6]:PORT and :PORT."""
        args = build_parser().parse_args(["serve", "--listen", flag])
        assert overrides_from(args)["listen.host"] == expected


def _options(*command: str) -> set[str]:
    """Return the option strings of a subcommand's parser."""
    parser = build_parser()
    for name in command:
        (sub,) = [
            a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
        ]
        parser = sub.choices[name]
    return {o for action in parser._actions for o in action.option_strings}


def test_check_config_accepts_every_flag_of_serve() -> None:
    """check-config takes exactly serve's flags, so it can check a serve command."""
    serve = _options("serve")
    assert {"--upstream", "--listen", "--admin-listen", "--tls-cert"} <= serve
    assert _options("check-config") == serve


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["usage", "--since", "inf"], 2, "authproxy: invalid time 'inf'"),
        (["usage", "--until", "9999999999d"], 2, "duration '9999999999d' is too"),
        (["keys", "create", "x", "--expires", "9999999999d"], 1, "--expires: dur"),
        (["keys", "rotate", "alice", "--grace", "inf"], 1, "invalid duration 'inf'"),
        (["admin-token", "--ttl", "1e400"], 1, "invalid duration '1e400'"),
    ],
    ids=["since", "until", "expires", "grace", "ttl"],
)
def test_cli_reports_out_of_range_times(
    capsys, config_file: Path, key, args: list[str], code: int, message: str
) -> None:
    """The CLI turns out-of-range times into an error line, not a traceback."""
    assert main([*args, "--config", str(config_file)]) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
