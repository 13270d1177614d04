"""Gap scan of a parquet archive: missing hour partitions and silent stretches inside a session.

A gap is a stretch longer than ``max_gap_ms`` between consecutive events of one
session (the recorder or the feed was down) or an hour partition missing between
a symbol's first and last hour. The risk service reports the largest gap as
``parquet_gap_detected_ms``; the script exits non-zero past the threshold.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds


@dataclass(frozen=True)
class Gap:
    session: str
    start: str
    end: str
    gap_ms: float


@dataclass(frozen=True)
class GapReport:
    partitions: int
    missing_partitions: list[str]
    gaps: list[Gap] = field(default_factory=list)
    max_gap_ms: float = 0.0
    threshold_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing_partitions and not self.gaps

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")


def scan(parquet_dir: str | Path, *, max_gap_ms: float = 5_000.0) -> GapReport:
    parquet_dir = Path(parquet_dir)
    if not parquet_dir.is_dir():
        raise FileNotFoundError(f"parquet directory {parquet_dir} does not exist")
    files = sorted(parquet_dir.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet files under {parquet_dir}")
    part = ds.partitioning(pa.schema([("symbol", pa.string()), ("date", pa.string()), ("hour", pa.int8())]),
                           flavor="hive")
    table = ds.dataset(parquet_dir, format="parquet", partitioning=part).to_table(
        columns=["symbol", "date", "hour", "session", "local_ns"])
    present: dict[str, set[dt.datetime]] = {}
    for sym, date, hour in set(zip(table.column("symbol").to_pylist(), table.column("date").to_pylist(),
                                   table.column("hour").to_pylist(), strict=True)):
        present.setdefault(sym, set()).add(dt.datetime.fromisoformat(date).replace(hour=int(hour)))
    missing: list[str] = []
    for sym, hours in sorted(present.items()):
        h, last = min(hours), max(hours)
        while h <= last:
            if h not in hours:
                missing.append(f"symbol={sym}/date={h:%Y-%m-%d}/hour={h.hour}")
            h += dt.timedelta(hours=1)
    table = table.sort_by([("session", "ascending"), ("local_ns", "ascending")])
    sessions = table.column("session").to_numpy(zero_copy_only=False)
    t = table.column("local_ns").to_numpy()
    same = sessions[1:] == sessions[:-1]
    d = np.diff(t)
    idx = np.flatnonzero(same & (d > max_gap_ms * 1e6))
    gaps = [Gap(str(sessions[i]), _iso(int(t[i])), _iso(int(t[i + 1])), float(d[i] / 1e6)) for i in idx]
    max_gap = float(d[same].max() / 1e6) if same.any() else 0.0
    return GapReport(partitions=len({f.parent for f in files}), missing_partitions=missing, gaps=gaps,
                     max_gap_ms=max_gap, threshold_ms=max_gap_ms)
