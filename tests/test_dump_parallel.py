"""The dump's worker processes write exactly what one process writes, and a failed dump loses nothing."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import pyarrow.compute as pc
import pytest

from tidegate.market.capture import CaptureError, read_capture
from tidegate.market.synthetic import day_specs, generate, generate_days
from tidegate.pipeline.dump import SIDECAR, default_workers, dump, frame_sources, read_parquet


def _sources(seconds: float = 20.0) -> list:
    return frame_sources(None, synthetic=True, seed=11, synthetic_seconds=seconds, cycles=1)


def test_day_specs_rebuild_generate_days_exactly() -> None:
    frames = generate_days(seed=5, duration_s=4, cycles=2)
    again = [generate(**spec) for spec in day_specs(seed=5, duration_s=4, cycles=2)]  # type: ignore[arg-type]
    assert [f.source for f in frames] == [f.source for f in again]
    assert all((a.tickers.bid_px == b.tickers.bid_px).all() and (a.depth.level_qty == b.depth.level_qty).all()
               for a, b in zip(frames, again, strict=True))


def test_two_workers_write_the_same_archive_as_one(tmp_path: Path) -> None:
    sources = _sources()
    serial = dump(tmp_path / "one", sources, workers=1)
    parallel = dump(tmp_path / "two", sources, workers=2)
    assert parallel.workers == 2 and serial.workers == 1
    assert parallel.sessions == serial.sessions == [f"synthetic-{s.keywords['regime']}-seed{s.keywords['seed']}"
                                                    for s in sources]
    assert (parallel.events, parallel.rows, parallel.partitions) == (serial.events, serial.rows, serial.partitions)
    a, b = read_parquet(tmp_path / "one"), read_parquet(tmp_path / "two")
    assert a.num_rows == serial.rows > 0
    assert a.schema.equals(b.schema)
    assert a.equals(b)
    # each session's rows are in files named after it, so sessions written concurrently never collide
    names = sorted(p.name for p in (tmp_path / "two").rglob("*.parquet"))
    assert all(any(n.startswith(s) for s in serial.sessions) for n in names)
    assert json.loads((tmp_path / "two" / SIDECAR).read_text())["schema_hash"]


def test_in_memory_frames_stay_in_process_and_recipes_use_the_cores() -> None:
    assert default_workers(generate_days(duration_s=2)) == 1
    assert default_workers(_sources()) == min(len(_sources()), len(os.sched_getaffinity(0)))
    assert default_workers(_sources()[:1]) == 1


def test_a_failing_session_leaves_the_previous_archive_untouched(tmp_path: Path) -> None:
    out = tmp_path / "pq"
    good = dump(out, _sources(10.0), workers=2)
    before = read_parquet(out)
    bad = tmp_path / "binance_usdm_btcusdt_20990101.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(CaptureError, match="not a readable gzip capture"):
        dump(out, [*_sources(10.0), partial(read_capture, bad)], workers=2)
    after = read_parquet(out)
    assert after.num_rows == good.rows and after.equals(before)
    assert not (tmp_path / "pq.staging").exists()
    assert pc.min(after["local_ns"]).as_py() > 0
