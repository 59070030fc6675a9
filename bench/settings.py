"""Run-wide settings: durations and sizes, with a quick mode for trying things out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How long and how big each scenario is."""

    duration: float = 10.0  # each wrk measurement
    warmup: float = 1.0  # a discarded wrk run before each measurement
    connections: tuple[int, ...] = (1, 32)
    audit_repeats: int = 3  # same-time on/off pairs at 32 connections
    fidelity_streams: int = 4
    fidelity_rounds: int = 25
    fidelity_chunks: int = 25
    fidelity_gap_ms: float = 10.0
    slow_streams: int = 2000
    slow_seconds: float = 10.0  # length of each slow stream
    slow_gap_ms: float = 100.0  # 10 chunks/s: what the one-core load side sustains
    stress_gap_ms: float = 50.0  # 20 chunks/s: the brief's example, proxies only
    cold_keys: int = 10
    warm_per_key: int = 200
    flood_rate: float = 200.0
    probe_rate: float = 50.0
    flood_duration: float = 10.0
    profile: bool = True

    @classmethod
    def quick(cls) -> Settings:
        """Return small settings that exercise every scenario in about a minute."""
        return cls(
            duration=2.0,
            warmup=1.0,
            audit_repeats=1,
            fidelity_rounds=4,
            slow_streams=300,
            slow_seconds=3.0,
            cold_keys=3,
            warm_per_key=50,
            flood_duration=3.0,
        )
