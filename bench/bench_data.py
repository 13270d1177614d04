"""Data pipeline benchmark: capture -> parquet events/s and labelling rows/s, with their targets.

Writes bench/results/data.json. Uses the real capture when ../shared/data/capture
exists, else a synthetic archive of similar size (and says which). Each figure is
the best of ``--repeat`` runs on this machine, next to the 2-core target from the
issue, with the ratio measured/target. The dump is timed end to end (gzip, JSON
parse, book rebuild, features, parquet write, atomic swap) with one worker
process per usable core, the figure the target is about, and with one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidegate.market.capture import list_captures  # noqa: E402
from tidegate.pipeline.dump import default_workers, dump, frame_sources, read_parquet  # noqa: E402
from tidegate.pipeline.labeling import label_table  # noqa: E402

TARGET_EVENTS_PER_S = 200_000
TARGET_LABEL_ROWS_PER_S = 1_000_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--capture-dir", default=str(REPO / ".." / "shared" / "data" / "capture"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "data.json"))
    args = ap.parse_args()
    cap = Path(args.capture_dir)
    files = list_captures(cap) if cap.is_dir() else []
    source = f"capture ({len(files)} files)" if files else "synthetic (capture absent)"
    # capture files, else six synthetic sessions of five minutes (two cycles of the three regimes)
    sources = frame_sources(cap if files else None, synthetic_seconds=300, cycles=2)
    workers = default_workers(sources)
    best: dict[int, tuple[float, Any]] = {}
    best_label = float("inf")
    rows = candidates = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for w in sorted({1, workers}):   # the serial figure is kept beside the parallel one
                t0 = time.perf_counter()
                report = dump(Path(tmp) / "pq", sources, workers=w)
                wall = time.perf_counter() - t0
                if wall < best.get(w, (float("inf"), None))[0]:
                    best[w] = (wall, report)
            table = read_parquet(Path(tmp) / "pq")
            t3 = time.perf_counter()
            labelled = label_table(table)
            best_label = min(best_label, time.perf_counter() - t3)
            rows, candidates = table.num_rows, labelled.num_rows
    wall, report = best[workers]
    serial_wall, serial = best[1]
    eps = report.events / wall
    lrs = rows / best_label
    result = {
        "source": source,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "capture_to_parquet": {"events": report.events, "seconds": wall, "events_per_s": eps, "workers": workers,
                               "target_events_per_s": TARGET_EVENTS_PER_S, "ratio_to_target": eps / TARGET_EVENTS_PER_S,
                               "serial": {"seconds": serial_wall, "events_per_s": serial.events / serial_wall},
                               "breakdown_s_serial": {"read_parse": serial.seconds_read,
                                                      "book_and_features": serial.seconds_features,
                                                      "write": serial.seconds_write}},
        "labelling": {"input_rows": rows, "candidates": candidates, "seconds": best_label,
                      "rows_per_s": lrs, "target_rows_per_s": TARGET_LABEL_ROWS_PER_S,
                      "ratio_to_target": lrs / TARGET_LABEL_ROWS_PER_S},
        "repeat": args.repeat,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
