"""Data pipeline benchmark: capture -> parquet events/s and labelling rows/s, with their targets.

Writes bench/results/data.json. Uses the real capture when ../shared/data/capture
exists, else a synthetic archive of similar size (and says which). Each figure is
the best of ``--repeat`` runs on this machine, next to the 2-core target from the
issue, with the ratio measured/target.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidegate.market.capture import list_captures, read_capture  # noqa: E402
from tidegate.market.synthetic import generate_days  # noqa: E402
from tidegate.pipeline.dump import dump, read_parquet  # noqa: E402
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
    best_dump = best_read = best_feat = best_label = float("inf")
    events = rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            frames = [read_capture(p) for p in files] if files else generate_days(duration_s=300, cycles=2)
            t1 = time.perf_counter()
            report = dump(Path(tmp) / "pq", frames)
            t2 = time.perf_counter()
            events = report.events
            best_read = min(best_read, t1 - t0)
            best_feat = min(best_feat, report.seconds_features)
            best_dump = min(best_dump, t2 - t0 if files else t2 - t1)
            table = read_parquet(Path(tmp) / "pq")
            t3 = time.perf_counter()
            labelled = label_table(table)
            best_label = min(best_label, time.perf_counter() - t3)
            rows = table.num_rows
    eps = events / best_dump
    lrs = rows / best_label
    result = {
        "source": source,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "capture_to_parquet": {"events": events, "seconds": best_dump, "events_per_s": eps,
                               "target_events_per_s": TARGET_EVENTS_PER_S, "ratio_to_target": eps / TARGET_EVENTS_PER_S,
                               "breakdown_s": {"read_parse": best_read if files else 0.0,
                                               "book_and_features": best_feat,
                                               "write": best_dump - (best_read if files else 0.0) - best_feat}},
        "labelling": {"input_rows": rows, "candidates": labelled.num_rows, "seconds": best_label,
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
