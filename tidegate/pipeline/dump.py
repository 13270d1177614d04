"""Capture (or synthetic) -> hive-partitioned parquet of per-event market state and features.

Layout: ``<parquet_dir>/symbol=<SYM>/date=<YYYY-MM-DD>/hour=<HH>/<session>-<n>.parquet`` plus
``<parquet_dir>/_feature_schema.json``, the sidecar holding the feature schema and
its hash (the release checklist compares it with model.json). The hash is also
stored in every file's parquet key-value metadata, so a file separated from its
sidecar still says which schema produced it.

One row per event (depth diff, trade, ticker) in arrival order; a ``session`` column
names the source (capture file or synthetic run) so labelling never lets a
horizon cross from one recording into another.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from tidegate.atomic import atomic_write_json
from tidegate.features.batch import timeline_columns
from tidegate.features.schema import MARKET_FEATURES, SCHEMA
from tidegate.market.capture import list_captures, read_capture
from tidegate.market.frame import MarketFrame
from tidegate.market.synthetic import REGIMES, generate_days

SIDECAR = "_feature_schema.json"
SCHEMA_META_KEY = b"tidegate.feature_schema_hash"
STATE_COLUMNS = ("local_ns", "exch_ns", "kind", "book_update", "bid_px", "bid_qty", "ask_px", "ask_qty", "trade_px",
                 "trade_qty", "trade_aggressor")


class SchemaMismatch(ValueError):
    """Parquet written under a different feature schema than the live one."""


@dataclass(frozen=True)
class DumpReport:
    out_dir: Path
    sessions: list[str]
    events: int
    rows: int
    partitions: int
    seconds_read: float
    seconds_features: float
    seconds_write: float

    def as_dict(self) -> dict[str, object]:
        return {"out_dir": str(self.out_dir), "sessions": self.sessions, "events": self.events, "rows": self.rows,
                "partitions": self.partitions, "seconds_read": self.seconds_read,
                "seconds_features": self.seconds_features, "seconds_write": self.seconds_write}


def frame_table(frame: MarketFrame) -> pa.Table:
    """The parquet rows of one frame (state columns, market features, partition keys)."""
    cols = timeline_columns(frame)
    n = len(cols["local_ns"])
    when = cols["local_ns"].astype("datetime64[ns]")
    data: dict[str, pa.Array] = {name: pa.array(cols[name]) for name in STATE_COLUMNS}
    for name in MARKET_FEATURES:
        data[name] = pa.array(cols[name], pa.float32())
    data["session"] = pa.array(np.full(n, frame.source, object), pa.string())
    data["regime"] = pa.array(np.full(n, frame.regime, object), pa.string())
    data["symbol"] = pa.array(np.full(n, frame.symbol, object), pa.string())
    data["date"] = pa.array(np.datetime_as_string(when, unit="D"), pa.string())
    data["hour"] = pa.array((when.astype("datetime64[h]").astype(np.int64) % 24).astype(np.int8), pa.int8())
    return pa.table(data)


def write_parquet(tables: Iterable[pa.Table], out_dir: Path) -> int:
    """Replace ``out_dir`` with the hive-partitioned dataset and its sidecar; returns the partition count."""
    out_dir = Path(out_dir)
    table = pa.concat_tables(list(tables))
    meta = {SCHEMA_META_KEY: SCHEMA.hash.encode()}
    table = table.replace_schema_metadata(meta)
    staging = out_dir.with_name(out_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    part = ds.partitioning(pa.schema([("symbol", pa.string()), ("date", pa.string()), ("hour", pa.int8())]),
                           flavor="hive")
    ds.write_dataset(table, staging, format="parquet", partitioning=part, basename_template="part-{i}.parquet",
                     existing_data_behavior="overwrite_or_ignore", max_rows_per_group=1 << 20)
    atomic_write_json(staging / SIDECAR, SCHEMA.sidecar())
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return len({p.parent for p in out_dir.rglob("*.parquet")})


def read_sidecar(parquet_dir: Path) -> dict[str, object]:
    path = Path(parquet_dir) / SIDECAR
    if not path.is_file():
        raise SchemaMismatch(f"{path} missing: parquet archive has no feature-schema sidecar")
    return json.loads(path.read_text())


def check_schema(parquet_dir: Path, expected: str | None = None) -> str:
    """Raise SchemaMismatch unless the archive's sidecar hash equals the live (or given) schema hash."""
    expected = expected or SCHEMA.hash
    found = str(read_sidecar(parquet_dir).get("schema_hash", ""))
    if found != expected:
        raise SchemaMismatch(f"{parquet_dir}: feature schema_hash mismatch: sidecar has {found[:16]}..., "
                             f"live feature schema is {expected[:16]}... (regenerate with dump_market_to_parquet.py)")
    return found


def read_parquet(parquet_dir: Path) -> pa.Table:
    """The whole archive (after a schema check), ordered by session and arrival."""
    parquet_dir = Path(parquet_dir)
    check_schema(parquet_dir)
    part = ds.partitioning(pa.schema([("symbol", pa.string()), ("date", pa.string()), ("hour", pa.int8())]),
                           flavor="hive")
    table = ds.dataset(parquet_dir, format="parquet", partitioning=part).to_table()
    return table.sort_by([("session", "ascending"), ("local_ns", "ascending")])


def load_frames(capture_dir: Path | None, *, synthetic: bool = False, seed: int = 7,
                synthetic_seconds: float = 300.0) -> list[MarketFrame]:
    """Capture files when available (and not overridden), else one synthetic day per regime."""
    if not synthetic and capture_dir is not None and Path(capture_dir).is_dir():
        files = list_captures(capture_dir)
        if files:
            return [read_capture(p) for p in files]
    return generate_days(seed=seed, regimes=REGIMES, duration_s=synthetic_seconds)


def dump(out_dir: Path, frames: list[MarketFrame]) -> DumpReport:
    import time

    t0 = time.perf_counter()
    tables = [frame_table(f) for f in frames]
    t1 = time.perf_counter()
    partitions = write_parquet(tables, out_dir)
    t2 = time.perf_counter()
    return DumpReport(out_dir=Path(out_dir), sessions=[f.source for f in frames],
                      events=sum(f.n_events for f in frames), rows=sum(t.num_rows for t in tables),
                      partitions=partitions, seconds_read=0.0, seconds_features=t1 - t0, seconds_write=t2 - t1)


def utc(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")
