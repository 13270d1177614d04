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
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from tidegate.atomic import atomic_write_json
from tidegate.features.batch import timeline_columns
from tidegate.features.schema import MARKET_FEATURES, SCHEMA
from tidegate.market.capture import list_captures, read_capture
from tidegate.market.frame import MarketFrame
from tidegate.market.synthetic import REGIMES, day_specs, generate

SIDECAR = "_feature_schema.json"
SCHEMA_META_KEY = b"tidegate.feature_schema_hash"
PARTITIONING = ds.partitioning(pa.schema([("symbol", pa.string()), ("date", pa.string()), ("hour", pa.int8())]),
                              flavor="hive")
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
    seconds_read: float      # summed over sessions (per-worker time, so it can exceed the wall time)
    seconds_features: float
    seconds_write: float
    seconds_wall: float = 0.0
    workers: int = 1

    def as_dict(self) -> dict[str, object]:
        return {"out_dir": str(self.out_dir), "sessions": self.sessions, "events": self.events, "rows": self.rows,
                "partitions": self.partitions, "workers": self.workers, "seconds_read": self.seconds_read,
                "seconds_features": self.seconds_features, "seconds_write": self.seconds_write,
                "seconds_wall": self.seconds_wall,
                "events_per_s": self.events / self.seconds_wall if self.seconds_wall > 0 else None}


@dataclass(frozen=True)
class _Piece:
    """What one session's worker reports back (the table itself goes straight to disk)."""

    source: str
    events: int
    rows: int
    seconds_read: float
    seconds_features: float
    seconds_write: float


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


def _write_session(table: pa.Table, staging: Path, source: str) -> None:
    """One session's rows into the hive layout; file names carry the session so sessions never collide."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", source)
    ds.write_dataset(table.replace_schema_metadata({SCHEMA_META_KEY: SCHEMA.hash.encode()}), staging,
                     format="parquet", partitioning=PARTITIONING, basename_template=stem + "-{i}.parquet",
                     existing_data_behavior="overwrite_or_ignore", max_rows_per_group=1 << 20)


def _swap_in(staging: Path, out_dir: Path) -> int:
    """Sidecar, then replace ``out_dir`` with ``staging``; returns the partition count."""
    atomic_write_json(staging / SIDECAR, SCHEMA.sidecar())
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return len({p.parent for p in out_dir.rglob("*.parquet")})


def _staging(out_dir: Path) -> Path:
    staging = out_dir.with_name(out_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


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
    table = ds.dataset(parquet_dir, format="parquet", partitioning=PARTITIONING).to_table()
    return table.sort_by([("session", "ascending"), ("local_ns", "ascending")])


FrameSource = MarketFrame | Callable[[], MarketFrame]
"""A frame in memory, or a picklable recipe for one (``partial(read_capture, path)``) that a worker process runs."""


def frame_sources(capture_dir: Path | None, *, synthetic: bool = False, seed: int = 7,
                  synthetic_seconds: float = 300.0, cycles: int = 1) -> list[FrameSource]:
    """Capture files when available (and not overridden), else synthetic sessions cycling through the regimes."""
    if not synthetic and capture_dir is not None and Path(capture_dir).is_dir():
        files = list_captures(capture_dir)
        if files:
            return [partial(read_capture, p) for p in files]
    return [partial(generate, **spec) for spec in day_specs(seed=seed, regimes=REGIMES,  # type: ignore[arg-type]
                                                            duration_s=synthetic_seconds, cycles=cycles)]


def _resolve(source: FrameSource) -> MarketFrame:
    return source if isinstance(source, MarketFrame) else source()


def _dump_session(source: FrameSource, staging: Path) -> _Piece:
    t0 = time.perf_counter()
    frame = _resolve(source)
    t1 = time.perf_counter()
    table = frame_table(frame)
    t2 = time.perf_counter()
    _write_session(table, staging, frame.source)
    return _Piece(frame.source, frame.n_events, table.num_rows, t1 - t0, t2 - t1, time.perf_counter() - t2)


def _cost(source: FrameSource) -> float:
    """Rough work of a source, so the biggest sessions start first and the workers finish together."""
    if isinstance(source, partial) and source.args and isinstance(source.args[0], Path):
        return float(source.args[0].stat().st_size)
    if isinstance(source, MarketFrame):
        return float(source.n_events)
    return 0.0


def default_workers(sources: Sequence[FrameSource]) -> int:
    """One process per usable core for recipes; in-memory frames stay in this process (pickling them costs more)."""
    if any(isinstance(s, MarketFrame) for s in sources):
        return 1
    return max(1, min(len(sources), len(os.sched_getaffinity(0))))


def dump(out_dir: Path, sources: Sequence[FrameSource], *, workers: int | None = None) -> DumpReport:
    """Write every session (read, book rebuild, features, parquet) and swap the archive in atomically.

    Sessions are independent (each has its own book), so with ``workers`` > 1 each
    one runs start to finish in a forked worker that writes its own files; only a
    few numbers come back. Fork, not spawn: a spawned worker would spend longer
    importing pyarrow than the dump takes.
    """
    out_dir = Path(out_dir)
    workers = default_workers(sources) if workers is None else max(1, workers)
    t0 = time.perf_counter()
    staging = _staging(out_dir)
    order = sorted(range(len(sources)), key=lambda i: -_cost(sources[i]))
    pieces: dict[int, _Piece] = {}
    try:
        if workers == 1 or len(sources) < 2:
            for i in order:
                pieces[i] = _dump_session(sources[i], staging)
        else:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=min(workers, len(sources)), mp_context=ctx) as pool:
                futures = {i: pool.submit(_dump_session, sources[i], staging) for i in order}
                pieces = {i: f.result() for i, f in futures.items()}
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)   # the previous archive stays in place, untouched
        raise
    done = [pieces[i] for i in range(len(sources))]
    partitions = _swap_in(staging, out_dir)
    return DumpReport(out_dir=out_dir, sessions=[p.source for p in done], events=sum(p.events for p in done),
                      rows=sum(p.rows for p in done), partitions=partitions,
                      seconds_read=sum(p.seconds_read for p in done),
                      seconds_features=sum(p.seconds_features for p in done),
                      seconds_write=sum(p.seconds_write for p in done), seconds_wall=time.perf_counter() - t0,
                      workers=workers)


def utc(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")
