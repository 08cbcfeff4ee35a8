"""Figures, their targets, the table and the JSON file."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

Direction = Literal["min", "max", "info"]


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A bound on a figure's ratio (`min`: at least, `max`: at most), and optionally on its value."""

    direction: Direction
    ratio: float = 0.0
    value_max: float | None = None  # e.g. at most 40 KiB per waiting task

    def describe(self, unit: str) -> str:
        if self.direction == "info":
            return "(info)"
        text = f"{'>=' if self.direction == 'min' else '<='} {self.ratio:g}x"
        if self.value_max is not None:
            text += f", <= {self.value_max:g} {unit}"
        return text

    def met(self, value: float, ratio: float) -> bool | None:
        if self.direction == "info":
            return None
        ok = ratio >= self.ratio if self.direction == "min" else ratio <= self.ratio
        if self.value_max is not None:
            ok = ok and value <= self.value_max
        return ok


INFO = Target("info")


@dataclasses.dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure: ours (`value`) against the baseline of the same run."""

    benchmark: str  # unary, waiting, whole, scale
    name: str
    value: float
    baseline: float
    unit: str
    target: Target
    baseline_name: str
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def passed(self) -> bool | None:
        return self.target.met(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "figure": self.name,
            "value": self.value,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "unit": self.unit,
            "ratio": self.ratio,
            "target": self.target.describe(self.unit),
            "passed": self.passed,
            "detail": self.detail,
        }


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(figure: Figure) -> str:
    """The ratio to two decimals, or to more (up to four) where fewer would put it on the other
    side of its target: 0.7952 against >= 0.8x reads 0.795x, not a failing 0.80x."""
    for digits in (2, 3):
        if figure.target.met(figure.value, round(figure.ratio, digits)) == figure.passed:
            return f"{figure.ratio:.{digits}f}x"
    return f"{figure.ratio:.4f}x"


def table(figures: Sequence[Figure]) -> str:
    """A Markdown table: it reads as text in a terminal and renders in the README."""
    header = ("figure", "ours", "baseline", "ratio", "target", "result")
    rows = [header]
    for f in figures:
        verdict = {True: "pass", False: "FAIL", None: "info"}[f.passed]
        rows.append(
            (
                f.name,
                f"{_number(f.value)} {f.unit}",
                f"{_number(f.baseline)} {f.unit} ({f.baseline_name})",
                _ratio(f),
                f.target.describe(f.unit),
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(rows[0]), separator, *(line(row) for row in rows[1:])])


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
    }


def write_json(path: Path, figures: Sequence[Figure], *, mode: str, command: str, seconds: float) -> None:
    data = {
        "mode": mode,
        "command": command,
        "seconds": round(seconds, 1),
        "machine": machine(),
        "figures": [f.to_json() for f in figures],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
