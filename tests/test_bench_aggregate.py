"""bench/run_all.py and bench/targets.py on small hand-made result files (the heavy benchmarks never run here).

Given result documents in the shapes the benchmark scripts write, the aggregator
must find each figure, convert its unit, compute the ratios against the same-run
reference and the target, say PASS / MISS honestly, and report a benchmark that
crashed or wrote nothing as FAILED without losing the others.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402
from targets import TARGETS, convert, evaluate_all, flatten, key_unit  # noqa: E402

DATA = {"source": "capture (5 files)", "machine": {"cpus": 2},
        "capture_to_parquet": {"events": 291911, "seconds": 2.0, "events_per_s": 145_000.0,
                               "target_events_per_s": 200000, "ratio_to_target": 0.725},
        "labelling": {"input_rows": 291911, "seconds": 0.07, "rows_per_s": 3_900_000.0}}
RELEASE = {"analysis_interval_s": 0.5, "target_s": 1.5,
           "visible_to_disabled_s": {"p50": 0.29, "max": 0.53, "min": 0.06},
           "samples": [{"visible_to_disabled_s": 0.53}], "within_target": True}
SERVICES = {"scoring": {"onnx_single": {"p50_us": 11.0, "p99_us": 24.0},
                        "predict_proba_single": {"p50_us": 400.0, "p99_us": 600.0},
                        "booster_predict_single": {"p99_us": 90.0}},
            "pipeline": {"tick_to_scored_ms": {"p50": 1.1, "p99": 6.5}, "rate_per_s": 500,
                         "max_sustained_candidates_per_s": 31_000.0},
            "simulator": {"events_per_s": 250_000.0},
            "executor": {"rss_max_bytes": 150 * 2**20}}


def _rows(results: dict, status: dict | None = None) -> dict:
    status = status or {name: "ok" for name in results}
    return {r.target.id: r for r in evaluate_all(results, status)}


def test_units_are_read_from_the_key_and_converted() -> None:
    assert key_unit("release:visible_to_disabled_s.max") == "s"
    assert key_unit("services:scoring.onnx_single.p99_us") == "us"
    assert key_unit("data:capture_to_parquet.events_per_s") is None
    assert convert(0.000024, "x:p99_s", "µs") == pytest.approx(24.0)
    assert convert(6.5, "x:tick_to_scored_ms.p99", "ms") == 6.5
    assert convert(150 * 2**20, "x:executor.rss_max_bytes", "MB") == pytest.approx(150.0)
    assert flatten({"a": {"b": 1, "ok": True, "xs": [1, 2]}, "c": float("nan")}) == {"a.b": 1.0}


def test_each_target_is_found_with_reference_and_target_ratios() -> None:
    rows = _rows({"data": DATA, "release": RELEASE, "services": SERVICES})
    p99 = rows["scoring_p99"]
    assert (p99.status, p99.value, p99.reference) == ("PASS", 24.0, 600.0)
    assert p99.reference_ratio == pytest.approx(25.0) and p99.target_ratio == pytest.approx(30 / 24)
    assert rows["scoring_vs_predict_proba"].value == pytest.approx(25.0)
    assert rows["scoring_vs_predict_proba"].status == "PASS"
    tick = rows["tick_to_scored_p99"]
    assert (tick.status, tick.value) == ("MISS", 6.5) and tick.target_ratio == pytest.approx(5 / 6.5)
    assert rows["candidates_per_s"].status == "PASS" and rows["candidates_per_s"].value == 31_000.0
    parquet = rows["capture_to_parquet"]
    assert parquet.status == "MISS" and parquet.target_ratio == pytest.approx(145_000 / 200_000)
    assert rows["labelling"].status == "PASS" and rows["labelling"].target_ratio == pytest.approx(3.9)
    assert rows["simulator"].status == "PASS"
    assert rows["executor_rss"].value == pytest.approx(150.0) and rows["executor_rss"].status == "PASS"
    breach = rows["breach_to_rollback"]
    assert breach.limit == pytest.approx(1.5) and breach.value == 0.53 and breach.status == "PASS"


def test_a_slow_scorer_misses_even_when_under_the_absolute_limit() -> None:
    services = json.loads(json.dumps(SERVICES))
    services["scoring"]["predict_proba_single"]["p99_us"] = 120.0      # only 5x slower than ONNX
    rows = _rows({"services": services})
    assert rows["scoring_p99"].status == "PASS"
    assert rows["scoring_vs_predict_proba"].status == "MISS"
    assert rows["scoring_vs_predict_proba"].value == pytest.approx(5.0)


def test_missing_and_failed_benchmarks_are_reported_not_guessed() -> None:
    rows = _rows({"data": DATA}, {"data": "ok", "services": "failed (exit 1)"})
    assert rows["scoring_p99"].status == "FAILED" and "exit 1" in rows["scoring_p99"].note
    assert rows["breach_to_rollback"].status == "NOT MEASURED"
    assert "bench_release.py not present" in rows["breach_to_rollback"].note
    assert {r.status for r in _rows({}, {}).values()} == {"NOT MEASURED"}
    assert len(TARGETS) == 14


def _write_bench(bench_dir: Path, name: str, body: str) -> None:
    (bench_dir / f"bench_{name}.py").write_text(body)


def test_run_all_survives_a_crashing_benchmark_and_writes_both_outputs(tmp_path: Path) -> None:
    bench, results = tmp_path / "bench", tmp_path / "bench" / "results"
    bench.mkdir()
    results.mkdir()
    _write_bench(bench, "data", "import json, pathlib, sys\n"
                 f"pathlib.Path({str(results / 'data.json')!r}).write_text(json.dumps({DATA!r}))\n")
    _write_bench(bench, "services", "raise SystemExit('no nats-server here')\n")
    # a stale result from an earlier run must not be mistaken for a fresh one
    (results / "services.json").write_text(json.dumps(SERVICES))
    _write_bench(bench, "release", "print('forgot to write my result')\n")
    out, doc = tmp_path / "results.json", tmp_path / "benchmarks.md"
    rc = run_all.main(["--bench-dir", str(bench), "--results-dir", str(results), "--out", str(out),
                       "--doc", str(doc), "--timeout", "60"])
    assert rc == 1
    written = json.loads(out.read_text())
    runs = {r["name"]: r["status"] for r in written["runs"]}
    assert runs["data"] == "ok" and runs["services"] == "failed (exit 1)"
    assert runs["release"].startswith("no result")
    targets = {t["id"]: t for t in written["targets"]}
    assert targets["labelling"]["status"] == "PASS" and targets["capture_to_parquet"]["status"] == "MISS"
    assert targets["scoring_p99"]["status"] == "FAILED"
    assert targets["breach_to_rollback"]["status"] == "FAILED"
    assert set(written["results"]) == {"data"}
    assert written["machine"]["cores"] >= 1 and written["machine"]["python"].startswith("3.")
    assert "onnxruntime" in written["machine"]["packages"]
    text = doc.read_text()
    assert "| capture → parquet | #3 | 145,000 events/s | — | — | ≥ 200,000 events/s | 0.72× | **MISS** |" in text
    assert "| labelling | #3 | 3,900,000 rows/s | — | — | ≥ 1,000,000 rows/s | 3.90× | **PASS** |" in text
    assert "no nats-server here" in text          # the failed run's output tail is shown
    assert "Benchmark scripts: 1 ok, 2 failed." in text and "cpu_model" in text


def test_markdown_shows_the_reference_beside_the_figure(tmp_path: Path) -> None:
    runs = [run_all.BenchRun("services", "bench/bench_services.py", "ok", 1.0, 0)]
    (tmp_path / "services.json").write_text(json.dumps(SERVICES))
    machine = {"cpu_model": "Test CPU", "cores": 2, "cores_usable": 2, "ram_mb": 1024, "python": "3.11",
               "platform": "linux", "packages": {"onnxruntime": "1.0"}}
    doc, text = run_all.aggregate(runs, tmp_path, machine, "2026-01-01T00:00:00+00:00")
    assert ("| single-candidate scoring p99 (ONNX Runtime, 1 thread) | #4 | 24.00 µs | "
            "LGBMClassifier.predict_proba p99: 600 µs | 25.00× | ≤ 30.00 µs | 1.25× | **PASS** |") in text
    assert "| tick → scored candidate p99 through NATS (at 500 ticks/s) | #4 | 6.50 ms |" in text
    assert doc["summary"] == {"PASS": 5, "MISS": 1, "NOT MEASURED": 8, "FAILED": 0}
