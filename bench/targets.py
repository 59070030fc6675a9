"""Issue 7's targets, checked against one run's results (ratios within the run)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Check:
    """One target: what was measured, what was asked, and whether it passed."""

    name: str
    measured: str
    target: str
    passed: bool | None  # None: could not be measured in this run
    note: str = ""

    @property
    def verdict(self) -> str:
        """Return PASS, FAIL or N/A."""
        return {True: "PASS", False: "FAIL", None: "N/A"}[self.passed]

    def as_dict(self) -> dict[str, Any]:
        """Return the check as a JSON-ready dict."""
        return {**asdict(self), "verdict": self.verdict}


def _row(
    rows: list[dict[str, Any]], target: str, auth: str, conns: int
) -> dict[str, Any] | None:
    for row in rows:
        if (
            row["target"] == target
            and row["auth"] == auth
            and row["connections"] == conns
        ):
            return row
    return None


def _by_target(items: list[dict[str, Any]], target: str) -> dict[str, Any] | None:
    return next((i for i in items if i["target"] == target), None)


def _peak(run: dict[str, Any]) -> float:
    hwm = run["hwm_mb"]
    return float(hwm if hwm is not None else run["rss_peak_sampled_mb"])


def evaluate(results: dict[str, Any]) -> list[Check]:
    """Return every target's check."""
    small = results["small_requests"]
    rows = small["rows"]
    checks = []

    ap32 = _row(rows, "authproxy", "bearer", 32)
    ng32 = _row(rows, "nginx", "bearer map", 32)
    if ap32 and ng32:
        ratio = ap32["rps"] / ng32["rps"]
        cpu_note = ""
        if "cpu_us_per_request" in ap32 and "cpu_us_per_request" in ng32:
            cpu_ratio = ng32["cpu_us_per_request"] / ap32["cpu_us_per_request"]
            cpu_note = (
                f"by CPU per request ({ap32['cpu_us_per_request']} vs "
                f"{ng32['cpu_us_per_request']} µs): {cpu_ratio:.2f}x"
            )
        checks.append(
            Check(
                "throughput vs nginx bearer map (32 conns)",
                f"{ratio:.2f}x ({ap32['rps']:.0f} vs {ng32['rps']:.0f} req/s)",
                ">= 0.25x",
                ratio >= 0.25,
                cpu_note,
            )
        )
    else:
        checks.append(
            Check("throughput vs nginx bearer map", "n/a", ">= 0.25x", None, "no nginx")
        )

    ap1 = _row(rows, "authproxy", "bearer", 1)
    direct1 = _row(rows, "direct", "", 1)
    if ap1 and direct1:
        added = ap1["p50_ms"] - direct1["p50_ms"]
        checks.append(
            Check(
                "added p50 latency, 1 connection",
                f"{added:.3f} ms "
                f"({ap1['p50_ms']:.3f} vs {direct1['p50_ms']:.3f} direct)",
                "<= 0.30 ms",
                added <= 0.30,
            )
        )

    fidelity = results["streams"]["fidelity"]
    ap_f, direct_f = _by_target(fidelity, "authproxy"), _by_target(fidelity, "direct")
    if ap_f and direct_f:
        added = ap_f["chunk_delay_ms"]["p99"] - direct_f["chunk_delay_ms"]["p99"]
        checks.append(
            Check(
                "added per-chunk delay p99 (gapped stream)",
                f"{added:.3f} ms ({ap_f['chunk_delay_ms']['p99']:.3f} vs "
                f"{direct_f['chunk_delay_ms']['p99']:.3f} direct)",
                "<= 2 ms",
                added <= 2.0,
            )
        )

    runs = [
        r
        for r in (
            _by_target(results["streams"]["many"], "authproxy"),
            _by_target(results["streams"].get("stress", []), "authproxy"),
        )
        if r
    ]
    if runs:
        streams = runs[0]["streams"]
        done = "; ".join(
            f"{r['completed']}/{r['streams']} at {1000 / r['gap_ms']:g}/s" for r in runs
        )
        checks.append(
            Check(
                f"{streams} slow streams complete",
                done,
                "all",
                all(r["completed"] == r["streams"] for r in runs),
            )
        )
        peaks = [_peak(r) for r in runs]
        checks.append(
            Check(
                f"proxy RSS with {streams} streams (peak)",
                " / ".join(f"{p:.1f} MB" for p in peaks),
                "<= 150 MB",
                max(peaks) <= 150,
                "VmHWM after reset; at "
                + " / ".join(f"{1000 / r['gap_ms']:g}" for r in runs)
                + " chunks/s",
            )
        )

    auth = results["auth"]
    cw = auth["cold_vs_warm"]
    bound = cw["argon2_per_warm_request_max"]
    checks.append(
        Check(
            "argon2 work per warm request",
            f"<= {bound} verifications "
            f"(warm {cw['warm_cpu_ms_per_request']} ms CPU/req vs "
            f"cold {cw['cold_cpu_ms_per_request']} ms; p50 {cw['warm_ms']['p50']} vs "
            f"{cw['cold_ms']['p50']} ms)",
            "0 (bound < 0.01)",
            bound is not None and bound < 0.01,
        )
    )
    for name, flood in auth["flood"].items():
        p99 = flood["valid"]["latency_ms"]["p99"]
        checks.append(
            Check(
                f"valid-key p99 during bogus flood ({name})",
                f"{p99:.2f} ms",
                "<= 20 ms",
                p99 <= 20.0,
                f"bogus answers {flood['bogus']['statuses']}",
            )
        )

    audit = small["audit"]
    measured = f"{audit['cost'] * 100:.1f} % (median of same-time on/off pairs)"
    if audit["audit_feature_active"]:
        checks.append(
            Check(
                "audit on: throughput cost", measured, "<= 10 %", audit["cost"] <= 0.10
            )
        )
    else:
        checks.append(
            Check(
                "audit on: throughput cost",
                measured,
                "<= 10 %",
                None,
                "no audit file written: this build has no audit feature, so both "
                "proxies are the same configuration and this is the noise floor",
            )
        )
    return checks
