"""Render one run's results as markdown."""

from __future__ import annotations

from typing import Any

from bench import redisrow


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _label(item: dict[str, Any]) -> str:
    return f"{item['target']} ({item['auth']})" if item["auth"] else item["target"]


def _f(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def render(results: dict[str, Any]) -> str:
    """Return the markdown report."""
    meta = results["meta"]
    out = [f"# authproxy benchmark, {meta['finished_at']}", ""]
    out += [
        f"- machine: {meta['nproc']} CPUs, {meta['cpu_model']}, "
        f"kernel {meta['kernel']}",
        f"- versions: Python {meta['python']}, aiohttp {meta['aiohttp']}, "
        f"argon2-cffi {meta['argon2_cffi']}, {meta['nginx']}, {meta['wrk']}, "
        f"authproxy {meta['authproxy']} at {meta['git']}",
        f"- pinning: {meta['pinning']}",
        f"- load generator: {meta['load_generator']}; run took {meta['wall_s']} s",
        f"- other processes on the machine used {meta['foreign_cores_mean']} cores "
        f"on average during the run ({meta['foreign_cores_at_start']} at the start); "
        "the `others` columns give it per measurement, in cores",
        "",
    ]
    if results["targets"]:  # none with --only
        out += ["## Targets", ""]
        out += _table(
            ["Target", "Measured", "Goal", "Result", "Note"],
            [
                [c["name"], c["measured"], c["target"], c["verdict"], c["note"]]
                for c in results["targets"]
            ],
        )
    if "small_requests" in results:  # not with --only
        out += _small(results["small_requests"])
        out += _streams(results["streams"])
        out += _auth(results["auth"])
    if "redis_backend" in results:
        out += redisrow.render(results["redis_backend"])
    if "small_requests" in results:
        out += _profile(results["small_requests"].get("profile"))
    return "\n".join(out)


def _small(small: dict[str, Any]) -> list[str]:
    out = ["## Small authenticated requests (POST /api/chat, non-streamed)", ""]
    rows = [
        *small["rows"],
        *small["audit"]["runs"],
        *(small.get("floor_pairs") or {}).get("runs", []),
        small["log_level"],
    ]
    out += _table(
        [
            "Path",
            "Conns",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "CPU µs/req",
            "others",
        ],
        [
            [
                _label(r),
                r["connections"],
                _f(r["rps"], 0),
                _f(r["p50_ms"]),
                _f(r["p90_ms"]),
                _f(r["p99_ms"]),
                _f(r["max_ms"]),
                r["errors"],
                r.get("cpu_us_per_request", "-"),
                r.get("foreign_cores", "-"),
            ]
            for r in rows
        ],
    )
    audit = small["audit"]
    ratios = ", ".join(f"{r:.3f}" for r in audit["ratios_on_over_off"])
    out += [
        "Audit on vs off: both proxies loaded at the same time on the proxy core "
        "(32 connections each), so they share one CPU and the host's speed drift "
        f"cancels. req/s ratios on/off: {ratios}; median cost "
        f"{audit['cost'] * 100:.2f} %. Audit file lines written: "
        f"{audit['audit_file_lines']}"
        + (
            "."
            if audit["audit_feature_active"]
            else " (this build has no audit feature; both runs are the same setup)."
        ),
        "",
    ]
    pairs = small.get("floor_pairs")
    if pairs:
        ratios = ", ".join(f"{r:.3f}" for r in pairs["cpu_ratios"])
        out += [
            "authproxy vs the bare aiohttp proxy, the same way (fresh authproxy, "
            "audit and access log on): CPU per request ratios (bare req/s over "
            f"authproxy req/s) {ratios}; median {pairs['cpu_ratio']:.2f}x.",
            "",
        ]
    return out


def _streams(streams: dict[str, Any]) -> list[str]:
    fid = streams["fidelity"]
    first = fid[0]
    direct = next((f for f in fid if f["target"] == "direct"), first)
    out = [
        "## Streaming fidelity",
        "",
        f"{first['concurrent']} concurrent connections x "
        f"{first['streams'] // first['concurrent']} streams each, "
        f"{first['chunks_per_stream']} chunks {first['gap_ms']:g} ms apart. "
        "Chunk delay = arrival - upstream write time; added = minus direct.",
        "",
    ]
    out += _table(
        [
            "Path",
            "streams ok",
            "TTFB p50 ms",
            "TTFB p99 ms",
            "chunk p50 ms",
            "chunk p99 ms",
            "chunk max ms",
            "added p50 ms",
            "added p99 ms",
            "others",
        ],
        [
            [
                _label(f),
                f"{f['completed']}/{f['streams']}",
                _f(f["ttfb_ms"]["p50"]),
                _f(f["ttfb_ms"]["p99"]),
                _f(f["chunk_delay_ms"]["p50"]),
                _f(f["chunk_delay_ms"]["p99"]),
                _f(f["chunk_delay_ms"]["max"]),
                _f(f["chunk_delay_ms"]["p50"] - direct["chunk_delay_ms"]["p50"]),
                _f(f["chunk_delay_ms"]["p99"] - direct["chunk_delay_ms"]["p99"]),
                f.get("foreign_cores", "-"),
            ]
            for f in fid
        ],
    )
    out += _many(streams["many"], "")
    if streams.get("stress"):
        out += _many(
            streams["stress"],
            "The brief's example rate, through the proxies only: the one-core load "
            "side cannot carry it cleanly on its own (compare the direct row above), "
            "so delays here are an upper bound; completion and RSS are what count.",
        )
    return out


def _many(many: list[dict[str, Any]], note: str) -> list[str]:
    m0 = many[0]
    rate = 1000 / m0["gap_ms"]
    out = [
        f"## {m0['streams']} concurrent slow streams at {rate:g} chunks/s",
        "",
        f"{m0['chunks_per_stream']} chunks each, one every {m0['gap_ms']:g} ms "
        f"(expected stream length {m0['expected_stream_s']:g} s), started evenly "
        "over 2 s. RSS is of the process in the path (nginx: master + worker; "
        "direct: the streamer); peak = VmHWM after resetting it. Chunk delay "
        "is over the whole run, steady from 1 s after the last stream started. " + note,
        "",
    ]
    out += _table(
        [
            "Path",
            "completed",
            "stream s p50 / max",
            "chunk p50 / p99 ms",
            "steady p50 / p99 ms",
            "RSS before MB",
            "peak RSS MB",
            "threads",
            "others",
        ],
        [
            [
                _label(m),
                f"{m['completed']}/{m['streams']}",
                f"{m['stream_duration_s']['p50']:.2f} / "
                f"{m['stream_duration_s']['max']:.2f}",
                f"{m['chunk_delay_ms']['p50']:.2f} / {m['chunk_delay_ms']['p99']:.2f}",
                f"{m['steady_chunk_delay_ms']['p50']:.2f} / "
                f"{m['steady_chunk_delay_ms']['p99']:.2f}",
                m["rss_before_mb"],
                m["hwm_mb"] if m["hwm_mb"] is not None else m["rss_peak_sampled_mb"],
                m["threads_peak"],
                m.get("foreign_cores", "-"),
            ]
            for m in many
        ],
    )
    return out


def _auth(auth: dict[str, Any]) -> list[str]:
    cw = auth["cold_vs_warm"]
    out = ["## Auth cost", ""]
    out += _table(
        ["Request", "count", "p50 ms", "p99 ms", "max ms", "proxy CPU ms / request"],
        [
            [
                "first use of a key (argon2)",
                cw["cold_ms"]["count"],
                cw["cold_ms"]["p50"],
                cw["cold_ms"]["p99"],
                cw["cold_ms"]["max"],
                cw["cold_cpu_ms_per_request"],
            ],
            [
                "cached",
                cw["warm_ms"]["count"],
                cw["warm_ms"]["p50"],
                cw["warm_ms"]["p99"],
                cw["warm_ms"]["max"],
                cw["warm_cpu_ms_per_request"],
            ],
        ],
    )
    out += _table(
        [
            "Bogus flood",
            "bogus sent",
            "bogus answers",
            "valid sent",
            "valid p50 ms",
            "valid p99 ms",
            "valid max ms",
            "valid statuses",
            "proxy peak MB",
            "others",
        ],
        [
            [
                name,
                f["bogus"]["sent"],
                f["bogus"]["statuses"],
                f["valid"]["sent"],
                f["valid"]["latency_ms"]["p50"],
                f["valid"]["latency_ms"]["p99"],
                f["valid"]["latency_ms"]["max"],
                f["valid"]["statuses"],
                f["proxy_hwm_mb"],
                f.get("foreign_cores", "-"),
            ]
            for name, f in auth["flood"].items()
        ],
    )
    return out


def _profile(prof: dict[str, Any] | None) -> list[str]:
    if not prof:
        return []
    if "error" in prof:
        return ["## Profile", "", f"py-spy failed: {prof['error']}", ""]
    out = [
        "## Profile (py-spy, authproxy under 32 connections)",
        "",
        f"{prof['samples']} samples at 200 Hz while serving "
        f"{prof['load']['rps']:.0f} req/s.",
        "",
    ]
    out += _table(
        ["Package (self time)", "%"],
        [[p["frame"], p["pct"]] for p in prof["by_package"][:10]],
    )
    out += _table(
        ["Function (self time)", "%"],
        [[p["frame"], p["pct"]] for p in prof["self"][:15]],
    )
    out += _table(
        ["Function (inclusive)", "%"],
        [[p["frame"], p["pct"]] for p in prof["inclusive"][:20]],
    )
    return out
