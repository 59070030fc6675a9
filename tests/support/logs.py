"""What a test handled and what it logged: secrets to look for, JSON log lines."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Secrets:
    """Every secret a test handled; none may appear in any log line."""

    values: list[str] = field(default_factory=list)

    def add(self, *values: str | None) -> None:
        self.values.extend(v for v in values if v)


@dataclass
class LogCapture:
    """The JSON log lines written during a test."""

    stream: io.StringIO

    def lines(self) -> list[dict[str, Any]]:
        return [
            json.loads(line) for line in self.stream.getvalue().splitlines() if line
        ]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]
