"""The performance targets from the issues, and how to find each figure in the benchmarks' JSON.

Each ``bench/bench_<name>.py`` writes ``bench/results/<name>.json`` in its own
shape (the script's author knows best what to record). Rather than force one
schema on every script, the aggregator flattens each document to dotted keys
(``data:capture_to_parquet.events_per_s``) and each :class:`Target` says which
keys hold its figure (regular expressions, first match wins) and, where the
issue asks for one, which key holds the same-run reference it is compared with
(``LGBMClassifier.predict_proba`` beside ONNX Runtime). Units are read from the
key (``_us``, ``_ms``, ``_s``, ``_bytes``, ``_mb``) and converted to the target's.

Everything here is pure: it is unit-tested on small hand-made result documents.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Better = Literal["lower", "higher"]
Status = Literal["PASS", "MISS", "NOT MEASURED", "FAILED"]

_TIME = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_MEM = {"bytes": 1 / 2**20, "b": 1 / 2**20, "kb": 1 / 1024, "kib": 1 / 1024, "mb": 1.0, "mib": 1.0, "gb": 1024.0,
        "gib": 1024.0}
_SUFFIX = re.compile(r"(?:^|_)(ns|us|µs|ms|s|bytes|b|kb|kib|mb|mib|gb|gib|seconds)$")


@dataclass(frozen=True)
class Target:
    id: str
    title: str
    issue: str
    unit: str                          # µs, ms, s, MB, or a rate such as events/s (no conversion)
    better: Better
    limit: float
    bench: str                         # the result name expected to hold it (bench_<bench>.py)
    patterns: tuple[str, ...]          # regexes over "<bench>:<dotted.key>"
    reference_patterns: tuple[str, ...] = ()
    reference_label: str = ""
    limit_plus: tuple[str, ...] = ()   # a key whose value is added to the limit (e.g. the eval interval)
    derive: Literal["value", "ref_over_value"] = "value"
    condition: str = ""


TARGETS: tuple[Target, ...] = (
    Target("scoring_p99", "single-candidate scoring p99 (ONNX Runtime, 1 thread)", "#4", "µs", "lower", 30.0,
           "services", (r"services:.*(onnx|ort).*p99", r"services:.*scor.*p99"),
           (r"services:.*predict_proba.*p99",), "LGBMClassifier.predict_proba p99"),
    Target("scoring_vs_predict_proba", "scoring speed-up over predict_proba (p99)", "#4", "×", "higher", 10.0,
           "services", (r"services:.*(onnx|ort).*p99", r"services:.*scor.*p99"),
           (r"services:.*predict_proba.*p99",), "predict_proba p99 / ONNX p99", derive="ref_over_value"),
    Target("tick_to_scored_p99", "tick → scored candidate p99 through NATS", "#4", "ms", "lower", 5.0,
           "services", (r"services:.*tick.*p99",), condition="at 500 ticks/s"),
    Target("candidates_per_s", "max sustained candidates/s through the scorer (batching)", "#4", "candidates/s",
           "higher", 20_000.0, "services", (r"services:.*candidates_per_s", r"services:.*max_sustained.*per_s",
                                            r"services:.*throughput.*per_s")),
    Target("capture_to_parquet", "capture → parquet", "#3", "events/s", "higher", 200_000.0, "data",
           (r"data:capture_to_parquet\.events_per_s", r"data:.*parquet.*per_s")),
    Target("labelling", "labelling", "#3", "rows/s", "higher", 1_000_000.0, "data",
           (r"data:label\w*\.rows_per_s", r"data:.*label.*per_s")),
    Target("simulator", "paper simulator on the capture", "#5", "events/s", "higher", 200_000.0, "services",
           (r"\w+:.*simulat\w*\.events_per_s", r"\w+:.*simulat.*per_s")),
    Target("executor_rss", "executor RSS over the full capture", "#5", "MB", "lower", 300.0, "services",
           (r"\w+:.*executor.*rss.*(max|peak)", r"\w+:.*executor.*rss", r"\w+:.*rss.*(max|peak)")),
    Target("breach_to_rollback", "guard-rail breach visible → executor sees rollback (max)", "#6", "s", "lower",
           1.0, "release", (r"release:visible_to_disabled_s\.max", r"release:.*breach.*max"),
           limit_plus=(r"release:analysis_interval_s",), condition="limit = evaluation interval + 1 s"),
    Target("gates_equal_sequential", "equal canary ever rolled back: sequential win-rate gate", "#6", "", "lower",
           0.05, "gates", (r"gates:targets\.equal_rollback_sequential\.value",),
           condition="independent trades, 4 h stage, a look every 30 s"),
    Target("gates_equal_sequential_clustered", "equal canary ever rolled back: sequential gate with design effect",
           "#6", "", "lower", 0.05, "gates", (r"gates:targets\.equal_rollback_sequential_clustered\.value",),
           condition="clustered trades, mean cluster size 5, 4 h stage"),
    Target("gates_equal_other_rules", "equal canary ever rolled back: every other rule (min over rules)", "#6", "",
           "higher", 0.05, "gates", (r"gates:targets\.equal_rollback_other_rules_min\.value",),
           condition="threshold, Flagger-like, Argo-like; independent trades"),
    Target("gates_equal_other_rules_clustered", "equal canary ever rolled back: every other rule, clustered (min)",
           "#6", "", "higher", 0.05, "gates", (r"gates:targets\.equal_rollback_other_rules_min_clustered\.value",),
           condition="incl. sequential without design effect"),
    Target("gates_detect_8pp", "8-point win-rate drop: median canary trades to rollback (sequential)", "#6",
           "trades", "lower", 700.0, "gates", (r"gates:targets\.detect_8pp_median_canary_trades\.value",),
           condition="independent trades, 4 h stage"),
)


def flatten(doc: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves as dotted keys; lists are skipped (raw samples), booleans are not figures."""
    out: dict[str, float] = {}
    if isinstance(doc, Mapping):
        for key, value in doc.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        if math.isfinite(float(doc)):
            out[prefix] = float(doc)
    return out


def key_unit(key: str) -> str | None:
    """The unit a dotted key declares, innermost segment first (``visible_to_disabled_s.max`` → s)."""
    for segment in reversed(key.split(":")[-1].split(".")):
        seg = segment.lower()
        if seg.endswith("per_s") or "_per_" in seg:
            return None
        m = _SUFFIX.search(seg)
        if m:
            return "s" if m.group(1) == "seconds" else m.group(1)
    return None


def convert(value: float, key: str, unit: str) -> float:
    """``value`` read from ``key`` in the target ``unit`` (unchanged when the key declares no unit)."""
    src = key_unit(key)
    if src is None:
        return value
    want = unit.lower()
    if src in _TIME and want in _TIME:
        return value * _TIME[src] / _TIME[want]
    if src in _MEM and want in _MEM:
        return value * _MEM[src] / _MEM[want]
    return value


def find(figures: Mapping[str, float], patterns: tuple[str, ...]) -> tuple[str, float] | None:
    for pattern in patterns:
        rx = re.compile(pattern, re.IGNORECASE)
        for key in sorted(figures):
            if rx.search(key):
                return key, figures[key]
    return None


@dataclass(frozen=True)
class Row:
    """One target's line in the report."""

    target: Target
    status: Status
    value: float | None = None
    key: str = ""
    limit: float | None = None
    reference: float | None = None
    reference_key: str = ""
    reference_ratio: float | None = None   # how many times better than the reference (> 1: better)
    target_ratio: float | None = None      # how far past the target (>= 1: meets it)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        t = self.target
        return {"id": t.id, "title": t.title, "issue": t.issue, "unit": t.unit, "better": t.better,
                "condition": t.condition, "status": self.status, "value": self.value, "key": self.key,
                "limit": self.limit, "reference_label": t.reference_label, "reference": self.reference,
                "reference_key": self.reference_key, "reference_ratio": self.reference_ratio,
                "target_ratio": self.target_ratio, "note": self.note}


def _better_ratio(value: float, other: float, better: Better) -> float | None:
    if value <= 0 or other <= 0:
        return None
    return other / value if better == "lower" else value / other


def evaluate(target: Target, figures: Mapping[str, float], bench_status: Mapping[str, str]) -> Row:
    """The row of one target from all flattened figures and each benchmark's run status."""
    state = bench_status.get(target.bench)
    found = find(figures, target.patterns)
    ref = find(figures, target.reference_patterns) if target.reference_patterns else None
    if found is None:
        if state not in (None, "ok"):
            return Row(target, "FAILED", limit=target.limit, note=f"bench_{target.bench}.py {state}")
        why = f"bench_{target.bench}.py not present" if state is None else \
            f"no key matching {target.patterns[0]!r} in {target.bench}.json"
        return Row(target, "NOT MEASURED", limit=target.limit, note=why)
    key, raw = found
    limit = target.limit
    for pattern in target.limit_plus:
        extra = find(figures, (pattern,))
        if extra is not None:
            limit += convert(extra[1], extra[0], target.unit)
    ref_value = convert(ref[1], ref[0], target.unit) if ref else None
    if target.derive == "ref_over_value":
        base = convert(raw, key, "µs")
        ref_us = convert(ref[1], ref[0], "µs") if ref else None
        if not ref_us or base <= 0:
            return Row(target, "NOT MEASURED", key=key, note="the reference figure is missing")
        value = ref_us / base
        ref_value, ref_ratio = None, None
    else:
        value = convert(raw, key, target.unit)
        ref_ratio = _better_ratio(value, ref_value, target.better) if ref_value is not None else None
    meets = value <= limit if target.better == "lower" else value >= limit
    note = f"bench_{target.bench}.py {state}; figure from an earlier result" if state not in (None, "ok") else ""
    return Row(target, "PASS" if meets else "MISS", value=value, key=key, limit=limit, reference=ref_value,
               reference_key=ref[0] if ref else "", reference_ratio=ref_ratio,
               target_ratio=_better_ratio(value, limit, target.better), note=note)


def evaluate_all(results: Mapping[str, Any], bench_status: Mapping[str, str]) -> list[Row]:
    """``results``: {bench name: parsed JSON}; ``bench_status``: {bench name: ok | failed ... }."""
    figures: dict[str, float] = {}
    for name, doc in results.items():
        figures.update({f"{name}:{k}": v for k, v in flatten(doc).items()})
    return [evaluate(t, figures, bench_status) for t in TARGETS]
