"""Is a change cheaper in CPU? Two authproxy processes loaded at the same time.

Instruction counts (``bench/instrserve.py``) said compiling the hot modules
with mypyc took 18 % of authproxy's instructions away; loaded side by side,
the compiled build cost the same CPU per request as the plain one (see
bench/results/issue14-levers.md). This tool gives the answer that counts: two
fresh authproxy processes, identical but for what ``--b-env`` and
``--b-pythonpath`` change in the second (B), share the proxy core at the same
moment (one wrk each, 32 connections), so their req/s ratio is their inverse
CPU cost ratio, whatever the host's speed does meanwhile. With ``--floor`` the
bare aiohttp proxy is paired with each of them too.

``python -m bench.abpair [--b-env K=V ...] [--b-pythonpath DIR] [--repeats 3]
[--floor] [--duration 10]``; prints one JSON line: per pair the ratios and
their median. ``B vs A`` above 1 means B costs more CPU per request than A.
A scratch copy for B: ``git worktree add /tmp/exp HEAD``, edit it, pass
``--b-pythonpath /tmp/exp`` (its ``authproxy`` package then shadows the
installed one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import machine
from bench.lab import FLOOR_PROXY, Lab, Target
from bench.procs import Pinning
from bench.scenarios import same_time_pairs
from bench.settings import Settings


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.abpair")
    parser.add_argument(
        "--b-env", action="append", default=[], metavar="K=V", help="B's settings"
    )
    parser.add_argument("--b-pythonpath", help="B imports authproxy from here")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--floor", action="store_true", help="also pair each with the bare proxy"
    )
    args = parser.parse_args(argv)
    if not args.b_env and not args.b_pythonpath:
        parser.error("B must differ from A: give --b-env or --b-pythonpath")
    if any("=" not in kv for kv in args.b_env):
        parser.error("--b-env takes KEY=VALUE")
    return args


def _b_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(kv.split("=", 1) for kv in args.b_env)
    if args.b_pythonpath:
        env["PYTHONPATH"] = str(Path(args.b_pythonpath).resolve())
    return env


def compare(lab: Lab, b_env: dict[str, str], floor: bool) -> dict[str, Any]:
    """Start A and B, load the pairs ``audit_repeats`` times; cost ratios per pair."""
    proc_a, port_a = lab.start_authproxy("authproxy-a", lab.origin_port)
    proc_b, port_b = lab.start_authproxy("authproxy-b", lab.origin_port, env=b_env)
    key = lab.main_key.bearer
    a = Target("authproxy", "A", port_a, key, proc_a)
    b = Target("authproxy", "B", port_b, key, proc_b)
    # (first, second): the first's req/s over the second's is the second's
    # CPU per request over the first's, as in bench/run's floor pairs.
    pairs = {"B vs A": (a, b)}
    if floor:
        bare = Target(
            FLOOR_PROXY, "", lab.floor_ports["proxy"], {}, lab.floors["proxy"]
        )
        pairs |= {"A vs bare": (bare, a), "B vs bare": (bare, b)}
    result: dict[str, Any] = {}
    for name, (first, second) in pairs.items():
        _, ratios = same_time_pairs(lab, first, second, name)
        rounded = [round(r, 3) for r in ratios]
        result[name] = {"ratios": rounded, "median": statistics.median(rounded)}
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the comparison in a fresh directory; print its JSON line."""
    args = _args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="authproxy-abpair-"))
    run_dir.chmod(0o755)  # nginx workers read the htpasswd file in it
    pin = Pinning.detect()
    os.sched_setaffinity(0, pin.load)
    settings = Settings(duration=args.duration, audit_repeats=args.repeats)
    lab = Lab(run_dir, settings, pin)
    b_env = _b_env(args)
    machine.wait_for_quiet(threshold=0.1, max_wait=60)
    try:
        lab.create_keys()
        lab.start_upstreams()
        result = compare(lab, b_env, args.floor)
    finally:
        lab.children.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps({"b_env": b_env, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
