"""The scenarios of issue 7, each returning a JSON-ready dict."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import authcost, authproxy, profile, streams
from bench.lab import FLOOR_PROXY, Lab, Target
from bench.loop import run_loop
from bench.machine import Snapshot
from bench.procs import Proc

AUDIT_ON = "authproxy-audit-on"
FLOOR_PAIR = "authproxy-floor-pair"


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def small_requests(lab: Lab) -> dict[str, Any]:
    """Throughput and latency of small authenticated POST /api/chat requests.

    Also the audit on/off pair, the access-log cost, and one py-spy profile.
    """
    settings = lab.settings
    proxy, port = lab.start_authproxy("authproxy", lab.origin_port, audit=True)
    rows = []
    for connections in settings.connections:
        for target in lab.small_targets(proxy, port):
            _say(f"small requests: {target.label}, {connections} connection(s)")
            rows.append(lab.load(target, connections))
    result: dict[str, Any] = {"rows": rows}
    result["audit"] = _audit(lab)
    result["floor_pairs"] = _floor_pairs(lab)
    result["log_level"] = _log_cost(lab)
    if settings.profile:
        result["profile"] = _profile(lab, proxy, port)
    lab.children.stop(proxy)
    return result


def _audit(lab: Lab) -> dict[str, Any]:
    """Audit on vs off, loaded at the same time on the same core, repeated.

    Both sides are fresh processes started together, so neither carries the
    heap, caches and audit file of the scenarios before (like for like).
    """
    on_proxy, on_port = lab.start_authproxy(AUDIT_ON, lab.origin_port, audit=True)
    off, off_port = lab.start_authproxy(
        "authproxy-audit-off", lab.origin_port, audit=False
    )
    key = lab.main_key
    on = Target("authproxy", "bearer, audit on", on_port, key.bearer, on_proxy)
    off_target = Target("authproxy", "bearer, audit off", off_port, key.bearer, off)
    runs, ratios = same_time_pairs(lab, on, off_target, "audit: on and off")
    lines = authproxy.audit_lines(lab.run_dir, AUDIT_ON)
    lab.children.stop(off)
    lab.children.stop(on_proxy)
    ratio = statistics.median(ratios)
    return {
        "method": "same-time pairs on one core (req/s ratio = inverse CPU cost)",
        "runs": runs,
        "ratios_on_over_off": [round(r, 3) for r in ratios],
        "rps_on": round(statistics.mean(float(r["rps"]) for r in runs[::2]), 1),
        "rps_off": round(statistics.mean(float(r["rps"]) for r in runs[1::2]), 1),
        "cost": round(1 - ratio, 4),
        "audit_file_lines": lines,
        "audit_feature_active": lines > 0,
    }


def same_time_pairs(
    lab: Lab, first: Target, second: Target, what: str
) -> tuple[list[dict[str, Any]], list[float]]:
    """Load both at once, ``audit_repeats`` times; rows and first/second req/s."""
    runs: list[dict[str, Any]] = []
    ratios: list[float] = []
    for _ in range(lab.settings.audit_repeats):
        _say(f"{what} at the same time, 32 connections each")
        pair = lab.same_time([first, second], 32)
        runs += pair
        ratios.append(pair[0]["rps"] / pair[1]["rps"])
    return runs, ratios


def _floor_pairs(lab: Lab) -> dict[str, Any] | None:
    """authproxy (fresh, audit on) and the bare aiohttp proxy loaded at once.

    A second reading of the CPU ratio to the floor, immune to the host's speed
    drifting between the sequential rows: sharing one core at the same moment,
    bare req/s over authproxy req/s is authproxy's CPU per request over bare's.
    """
    if not lab.floors:
        return None
    proxy, port = lab.start_authproxy(FLOOR_PAIR, lab.origin_port, audit=True)
    ours = Target("authproxy", "bearer, audit on", port, lab.main_key.bearer, proxy)
    bare = Target(FLOOR_PROXY, "", lab.floor_ports["proxy"], {}, lab.floors["proxy"])
    runs, ratios = same_time_pairs(
        lab, bare, ours, "floor: the bare aiohttp proxy and authproxy"
    )
    lab.children.stop(proxy)
    return {
        "method": "same-time pairs on one core (bare req/s over authproxy req/s)",
        "runs": runs,
        "cpu_ratios": [round(r, 3) for r in ratios],
        "cpu_ratio": round(statistics.median(ratios), 3),
    }


def _log_cost(lab: Lab) -> dict[str, Any]:
    quiet, port = lab.start_authproxy(
        "authproxy-log-warning", lab.origin_port, audit=True, log_level="warning"
    )
    target = Target(
        "authproxy", "bearer, log.level=warning", port, lab.main_key.bearer, quiet
    )
    _say(f"log cost: {target.label}, 32 connections")
    row = lab.load(target, 32)
    lab.children.stop(quiet)
    return row


def _profile(lab: Lab, proxy: Proc, port: int) -> dict[str, Any]:
    out = lab.run_dir / "profile.raw"
    seconds = max(2.0, lab.settings.duration)
    sampler = profile.start(proxy.pid, seconds, out)
    if sampler is None:
        return {"error": "py-spy not installed"}
    time.sleep(0.5)  # let py-spy attach before the load starts
    target = Target("authproxy", "bearer, under py-spy", port, lab.main_key.bearer)
    _say(f"profile: {target.label}, 32 connections")
    row = lab.load(target, 32)
    try:
        sampler.wait(timeout=seconds + 30)
    except Exception:
        sampler.kill()
    if sampler.returncode != 0 or not out.exists():
        err = out.with_suffix(".err")
        return {"error": err.read_text()[-500:] if err.exists() else "py-spy failed"}
    return {"load": row, **profile.summarise(out)}


def stream_scenarios(lab: Lab) -> dict[str, Any]:
    """Chunk delay and first byte for a gapped stream; then many slow streams."""
    settings = lab.settings
    proxy, port = lab.start_authproxy("authproxy-stream", lab.streamer_port, audit=True)
    fidelity = []
    for target in lab.stream_targets(port):
        _say(f"stream fidelity: {target.label}")
        result = lab.quietly(functools.partial(_fidelity, lab, target))
        fidelity.append({"target": target.name, "auth": target.auth, **result})
    watched = {"direct": lab.streamer, "nginx": lab.front, "authproxy": proxy}
    many, stress = [], []
    for target in lab.stream_targets(port):
        _say(f"{settings.slow_streams} slow streams: {target.label}")
        subject = watched[target.name]
        run = functools.partial(_many, lab, target, subject, settings.slow_gap_ms)
        many.append(lab.quietly(run))
        time.sleep(1)
    # The brief's example rate: only the proxies, as the one-core load side
    # itself falls behind at this rate (see the direct row of "many").
    for target in lab.stream_targets(port)[1:]:
        _say(f"{settings.slow_streams} streams at the stress rate: {target.label}")
        subject = watched[target.name]
        run = functools.partial(_many, lab, target, subject, settings.stress_gap_ms)
        stress.append(lab.quietly(run))
        time.sleep(1)
    lab.children.stop(proxy)
    return {"fidelity": fidelity, "many": many, "stress": stress}


def _many(
    lab: Lab, target: Target, subject: Proc | None, gap_ms: float
) -> dict[str, Any]:
    assert subject is not None
    settings = lab.settings
    chunks = round(settings.slow_seconds * 1000 / gap_ms)
    before = subject.status()
    reset = subject.reset_hwm()
    peak = {"rss_kib": 0, "threads": 0}

    def sample() -> None:
        status = subject.status()
        peak["rss_kib"] = max(peak["rss_kib"], status["VmRSS"])
        peak["threads"] = max(peak["threads"], status["Threads"])

    result = run_loop(
        streams.many_streams(
            target.port,
            target.headers,
            streams=settings.slow_streams,
            chunks=chunks,
            gap_ms=gap_ms,
            sample=sample,
        )
    )
    after = subject.status()
    return {
        "target": target.name,
        "auth": target.auth,
        **result,
        "process": subject.name,
        "rss_before_mb": _mb(before["VmRSS"]),
        "rss_peak_sampled_mb": _mb(peak["rss_kib"]),
        "hwm_mb": _mb(after["VmHWM"]) if reset else None,
        "rss_after_mb": _mb(after["VmRSS"]),
        "threads_peak": peak["threads"],
    }


def _fidelity(lab: Lab, target: Target) -> dict[str, Any]:
    settings = lab.settings
    return run_loop(
        streams.fidelity(
            target.port,
            target.headers,
            streams=settings.fidelity_streams,
            rounds=settings.fidelity_rounds,
            chunks=settings.fidelity_chunks,
            gap_ms=settings.fidelity_gap_ms,
        )
    )


def _flood(
    lab: Lab, proxy: Proc, port: int, make: Callable[[int], str]
) -> dict[str, Any]:
    settings = lab.settings
    proxy.reset_hwm()
    result = run_loop(
        authcost.flood(
            port,
            lab.main_key,
            make,
            bogus_rate=settings.flood_rate,
            probe_rate=settings.probe_rate,
            duration=settings.flood_duration,
        )
    )
    result["proxy_hwm_mb"] = _mb(proxy.status()["VmHWM"])
    return result


def _mb(kib: int) -> float:
    return round(kib * 1024 / 1e6, 1)


def auth_scenarios(lab: Lab) -> dict[str, Any]:
    """Cold vs warm verification, then valid-key latency under bogus floods."""
    settings = lab.settings
    proxy, port = lab.start_authproxy("authproxy-auth", lab.origin_port, audit=True)
    _say(f"auth: first vs cached verification, {len(lab.cold_keys)} keys")
    start = Snapshot.take()  # not repeatable: a key is cold only once
    cold = run_loop(
        authcost.cold_vs_warm(
            port, lab.cold_keys, proxy, warm_per_key=settings.warm_per_key
        )
    )
    cold["foreign_cores"] = start.foreign_cores()
    floods: dict[str, Any] = {}
    variants: dict[str, Callable[[int], str]] = {
        "unknown_key_id": authcost.unknown_id_token,
        "wrong_secret": authcost.wrong_secret_token(lab.main_key),
    }
    if lab.password_key is not None:
        variants["wrong_password"] = authcost.wrong_password(lab.password_key)
    for name, make in variants.items():
        _say(f"auth: valid key during {settings.flood_rate:g} req/s bogus ({name})")
        floods[name] = lab.quietly(functools.partial(_flood, lab, proxy, port, make))
    lab.children.stop(proxy)
    return {"cold_vs_warm": cold, "flood": floods}
