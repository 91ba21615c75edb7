"""Percentiles, medians over repeats, and the result row every benchmark produces."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50": round(percentile(samples_ms, 50), 3),
        "p90": round(percentile(samples_ms, 90), 3),
        "p99": round(percentile(samples_ms, 99), 3),
        "max": round(max(samples_ms), 3) if samples_ms else math.nan,
    }


def median_of(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(statistics.median(vals)) if vals else math.nan


def merge_repeats(repeats: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Per key, the median over repeats (each repeat is one ``latency_summary`` or rate dict)."""
    keys = [k for k in (repeats[0] if repeats else {}) if k != "n"]
    merged: dict[str, Any] = {k: round(median_of(r[k] for r in repeats), 3) for k in keys}
    merged["repeats"] = len(repeats)
    if repeats and "n" in repeats[0]:
        merged["n_per_repeat"] = repeats[0]["n"]
    return merged


@dataclass
class Row:
    """One line of the table: a measured value against its target.

    ``better`` says which way is good; ``ratio`` is value/target, so a pass is ``ratio <= 1`` for
    ``lower`` and ``ratio >= 1`` for ``higher``. Reference rows (the raw ceiling) have no target.
    """

    id: str
    benchmark: str
    case: str
    value: float | None
    unit: str
    target: float | None = None
    target_text: str = ""
    better: str = "lower"
    status: str = ""  # pass | fail | ref | n/a | error
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.value is not None and (isinstance(self.value, float) and math.isnan(self.value)):
            self.value = None
        if self.status:
            return
        if self.target is None:
            self.status = "ref"
        elif self.value is None:
            self.status = "error"
        elif self.better == "lower":
            self.status = "pass" if self.value <= self.target else "fail"
        else:
            self.status = "pass" if self.value >= self.target else "fail"

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.target:
            return None
        return self.value / self.target

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else round(self.ratio, 3)
        return data


def na_row(id: str, benchmark: str, case: str, unit: str, target_text: str, note: str) -> Row:
    return Row(id, benchmark, case, None, unit, None, target_text, status="n/a", note=note)


def error_row(id: str, benchmark: str, case: str, unit: str, target_text: str, note: str) -> Row:
    return Row(id, benchmark, case, None, unit, None, target_text, status="error", note=note)
