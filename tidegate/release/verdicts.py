"""Four-valued gate verdicts: PASS, FAIL, INSUFFICIENT, UNAVAILABLE.

Two values are not enough (see the anchors note, §3): "no data" and "condition
false" must never be confused. INSUFFICIENT means the data is there but too small
to judge (the stage waits, up to its maxDuration); UNAVAILABLE means the data is
missing, stale, NaN or the query failed (the onUnavailable policy applies). Only
PASS lets a release advance, so an outage can never promote a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INSUFFICIENT = "INSUFFICIENT"
    UNAVAILABLE = "UNAVAILABLE"


CRITICAL_GATES = frozenset({"parity"})


@dataclass(frozen=True)
class GateVerdict:
    gate: str
    verdict: Verdict
    value: float | None = None
    sample: float | None = None
    threshold: float | None = None
    query: str = ""
    reason: str = ""
    evidence: dict[str, float] | None = None   # the win-rate gate's counts, rates, statistic, bound, alpha

    @property
    def critical(self) -> bool:
        return self.gate in CRITICAL_GATES

    def to_json(self) -> dict[str, object]:
        return {"gate": self.gate, "verdict": str(self.verdict), "value": self.value, "sample": self.sample,
                "threshold": self.threshold, "query": self.query, "reason": self.reason,
                "evidence": self.evidence}
