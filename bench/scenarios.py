"""The scenarios of issue 7, each returning a JSON-ready dict."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench import authcost, authproxy, profile, streams
from bench.lab import Lab, Target
from bench.loop import run_loop
from bench.machine import Snapshot
from bench.procs import Proc


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
        for target in lab.small_targets(port):
            _say(f"small requests: {target.label}, {connections} connection(s)")
            rows.append(lab.load(target, connections))
    result: dict[str, Any] = {"rows": rows}
    result["audit"] = _audit(lab, port)
    result["log_level"] = _log_cost(lab)
    if settings.profile:
        result["profile"] = _profile(lab, proxy, port)
    lab.children.stop(proxy)
    return result


def _audit(lab: Lab, on_port: int) -> dict[str, Any]:
    off, off_port = lab.start_authproxy(
        "authproxy-audit-off", lab.origin_port, audit=False
    )
    key = lab.main_key
    on = Target("authproxy", "bearer, audit on", on_port, key.bearer)
    off_target = Target("authproxy", "bearer, audit off", off_port, key.bearer)
    runs: list[dict[str, Any]] = []
    for _ in range(lab.settings.audit_repeats):
        for target in (on, off_target):
            _say(f"audit: {target.label}, 32 connections")
            runs.append(lab.load(target, 32))
    _say("audit: audit off, 1 connection")
    single_off = lab.load(off_target, 1)
    lab.children.stop(off)

    def mean(auth: str) -> float:
        values = [float(r["rps"]) for r in runs if r["auth"] == auth]
        return sum(values) / len(values)

    on_rps, off_rps = mean(on.auth), mean(off_target.auth)
    lines = authproxy.audit_lines(lab.run_dir, "authproxy")
    return {
        "runs": runs,
        "off_1_connection": single_off,
        "rps_on": round(on_rps, 1),
        "rps_off": round(off_rps, 1),
        "cost": round((off_rps - on_rps) / off_rps, 4),
        "audit_file_lines": lines,
        "audit_feature_active": lines > 0,
    }


def _log_cost(lab: Lab) -> dict[str, Any]:
    quiet, port = lab.start_authproxy(
        "authproxy-log-warning", lab.origin_port, audit=True, log_level="warning"
    )
    target = Target("authproxy", "bearer, log.level=warning", port, lab.main_key.bearer)
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
        start = Snapshot.take()
        result = run_loop(
            streams.fidelity(
                target.port,
                target.headers,
                streams=settings.fidelity_streams,
                rounds=settings.fidelity_rounds,
                chunks=settings.fidelity_chunks,
                gap_ms=settings.fidelity_gap_ms,
            )
        )
        result["foreign_cores"] = start.foreign_cores()
        fidelity.append({"target": target.name, "auth": target.auth, **result})
    watched = {"direct": lab.streamer, "nginx": lab.front, "authproxy": proxy}
    many, stress = [], []
    for target in lab.stream_targets(port):
        _say(f"{settings.slow_streams} slow streams: {target.label}")
        many.append(_many(lab, target, watched[target.name], settings.slow_gap_ms))
        time.sleep(1)
    # The brief's example rate: only the proxies, as the one-core load side
    # itself falls behind at this rate (see the direct row of "many").
    for target in lab.stream_targets(port)[1:]:
        _say(f"{settings.slow_streams} streams at the stress rate: {target.label}")
        stress.append(_many(lab, target, watched[target.name], settings.stress_gap_ms))
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

    start = Snapshot.take()
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
        "foreign_cores": start.foreign_cores(),
    }


def _mb(kib: int) -> float:
    return round(kib * 1024 / 1e6, 1)


def auth_scenarios(lab: Lab) -> dict[str, Any]:
    """Cold vs warm verification, then valid-key latency under bogus floods."""
    settings = lab.settings
    proxy, port = lab.start_authproxy("authproxy-auth", lab.origin_port, audit=True)
    _say(f"auth: first vs cached verification, {len(lab.cold_keys)} keys")
    cold = run_loop(
        authcost.cold_vs_warm(
            port, lab.cold_keys, proxy, warm_per_key=settings.warm_per_key
        )
    )
    floods: dict[str, Any] = {}
    variants: dict[str, Callable[[int], str]] = {
        "unknown_key_id": authcost.unknown_id_token,
        "wrong_secret": authcost.wrong_secret_token(lab.main_key),
    }
    for name, make in variants.items():
        _say(f"auth: valid key during {settings.flood_rate:g} req/s bogus ({name})")
        proxy.reset_hwm()
        start = Snapshot.take()
        floods[name] = run_loop(
            authcost.flood(
                port,
                lab.main_key,
                make,
                bogus_rate=settings.flood_rate,
                probe_rate=settings.probe_rate,
                duration=settings.flood_duration,
            )
        )
        floods[name]["proxy_hwm_mb"] = _mb(proxy.status()["VmHWM"])
        floods[name]["foreign_cores"] = start.foreign_cores()
    lab.children.stop(proxy)
    return {"cold_vs_warm": cold, "flood": floods}
