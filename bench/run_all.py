#!/usr/bin/env python3
"""``make bench``: run every bench/bench_*.py, then write bench/results.json and docs/benchmarks.md.

Each benchmark runs in its own process (a crash, a hang or a missing server in
one cannot take the others down, and each gets a clean heap for its memory
figures) with a timeout. A benchmark that exits non-zero, times out or writes no
result is recorded as failed, with the tail of its output, and the run goes on;
its old result file is *not* used, so a stale number can never pass for a fresh
one. The exit code is 1 when any benchmark failed, after everything is written.

Figures are matched to the issues' targets by bench/targets.py; every figure is
shown beside its same-run reference (where the issue names one) and its target,
as ratios, with PASS / MISS / NOT MEASURED / FAILED said plainly.

    python bench/run_all.py                 # run everything (make bench)
    python bench/run_all.py --only data     # just bench_data.py
    python bench/run_all.py --no-run        # re-aggregate the existing results
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from targets import Row, evaluate_all, flatten  # noqa: E402

PACKAGES = ("onnxruntime", "lightgbm", "scikit-learn", "numpy", "pyarrow", "nats-py", "prometheus-client",
            "prometheus-api-client", "pydantic", "ccxt", "kopf", "onnxmltools")


@dataclass(frozen=True)
class BenchRun:
    name: str
    script: str
    status: str          # ok | failed (exit N) | timeout | no result
    seconds: float
    returncode: int | None
    output_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "script": self.script, "status": self.status, "seconds": round(self.seconds, 2),
                "returncode": self.returncode, "output_tail": self.output_tail}


def discover(bench_dir: Path, only: Sequence[str] = ()) -> list[Path]:
    scripts = sorted(bench_dir.glob("bench_*.py"))
    return [s for s in scripts if not only or s.stem.removeprefix("bench_") in only]


def run_one(script: Path, results_dir: Path, timeout: float) -> BenchRun:
    name = script.stem.removeprefix("bench_")
    result = results_dir / f"{name}.json"
    log = results_dir / f"{name}.log"
    start_wall, t0 = time.time(), time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, check=False)
        output, rc = proc.stdout + proc.stderr, proc.returncode
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired as exc:
        output = f"{exc.stdout or ''}{exc.stderr or ''}"
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        rc, status = None, f"timeout after {timeout:g}s"
    seconds = time.monotonic() - t0
    results_dir.mkdir(parents=True, exist_ok=True)
    log.write_text(output)
    if status == "ok" and (not result.is_file() or result.stat().st_mtime < start_wall - 1):
        status = f"no result (bench/results/{name}.json not written)"
    if status == "ok":
        try:
            json.loads(result.read_text())
        except ValueError as exc:
            status = f"unreadable result: {exc}"
    tail = "\n".join(output.strip().splitlines()[-15:])
    return BenchRun(name, str(script.relative_to(REPO)) if script.is_relative_to(REPO) else str(script),
                    status, seconds, rc, tail)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    mem_mb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_mb = round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": cpu or "unknown", "cores": os.cpu_count(), "cores_usable": affinity, "ram_mb": mem_mb,
            "python": platform.python_version(), "platform": platform.platform(), "packages": versions}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if abs(value) >= 10_000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip() if unit and unit != "×" else (f"{text}×" if unit == "×" else text)


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def render_markdown(rows: Sequence[Row], runs: Sequence[BenchRun], machine: Mapping[str, Any],
                    results: Mapping[str, Any], generated_at: str) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in ("PASS", "MISS", "NOT MEASURED", "FAILED")}
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by `make bench` (bench/run_all.py); the figures are in bench/results.json. -->",
        "",
        f"Run {generated_at} on **{machine['cpu_model']}**, {machine['cores']} cores "
        f"({machine['cores_usable']} usable), {machine['ram_mb']} MB RAM, Python {machine['python']}.",
        f"Targets: {counts['PASS']} PASS, {counts['MISS']} MISS, {counts['NOT MEASURED']} not measured, "
        f"{counts['FAILED']} failed. Benchmark scripts: {sum(r.status == 'ok' for r in runs)} ok, "
        f"{sum(r.status != 'ok' for r in runs)} failed.",
        "",
        "Each figure is measured in the run beside its reference (where the issue names one) and compared with",
        "its target from the issues. *vs reference* and *vs target* are ratios where **> 1 is better** (for a",
        "latency: reference / measured; for a throughput: measured / reference); a target is met at ≥ 1.00×.",
        "Performance is only ever judged here, never by timed assertions in the test suite.",
        "",
        "| figure | issue | measured | reference | vs reference | target | vs target | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r.target
        cond = f" ({t.condition})" if t.condition else ""
        op = "≤" if t.better == "lower" else "≥"
        ref = f"{t.reference_label}: {_fmt(r.reference, t.unit)}" if r.reference is not None else "—"
        status = f"**{r.status}**" + (f" — {r.note}" if r.note else "")
        lines.append(f"| {t.title}{cond} | {t.issue} | {_fmt(r.value, t.unit)} | {ref} | {_ratio(r.reference_ratio)} "
                     f"| {op} {_fmt(r.limit if r.limit is not None else t.limit, t.unit)} | {_ratio(r.target_ratio)} "
                     f"| {status} |")
    lines += ["", "## Benchmark runs", "", "| script | status | wall time |", "|---|---|---|"]
    for run in runs:
        lines.append(f"| `{run.script}` | {run.status} | {run.seconds:.1f} s |")
    for run in runs:
        if run.status != "ok" and run.output_tail:
            lines += ["", f"<details><summary>{run.script}: last output lines</summary>", "", "```",
                      run.output_tail, "```", "", "</details>"]
    lines += ["", "## All figures", ""]
    for name, doc in sorted(results.items()):
        flat = flatten(doc)
        lines += [f"### `{name}`", "", "| key | value |", "|---|---|"]
        lines += [f"| `{k}` | {v:.6g} |" for k, v in flat.items()]
        lines.append("")
    lines += ["## Machine", "", "| | |", "|---|---|"]
    for key in ("cpu_model", "cores", "cores_usable", "ram_mb", "python", "platform"):
        lines.append(f"| {key} | {machine[key]} |")
    lines.append("| packages | " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()) + " |")
    return "\n".join(lines).rstrip() + "\n"


def aggregate(runs: Sequence[BenchRun], results_dir: Path, machine: Mapping[str, Any],
              generated_at: str) -> tuple[dict[str, Any], str]:
    """results.json document and benchmarks.md text from the runs' result files (ok runs only)."""
    results: dict[str, Any] = {}
    for run in runs:
        path = results_dir / f"{run.name}.json"
        if run.status == "ok" and path.is_file():
            results[run.name] = json.loads(path.read_text())
    status = {run.name: run.status for run in runs}
    rows = evaluate_all(results, status)
    doc = {"generated_at": generated_at, "machine": dict(machine), "targets": [r.to_json() for r in rows],
           "runs": [r.to_json() for r in runs], "results": results,
           "summary": {s: sum(r.status == s for r in rows) for s in ("PASS", "MISS", "NOT MEASURED", "FAILED")}}
    return doc, render_markdown(rows, runs, machine, results, generated_at)


def existing_runs(results_dir: Path, scripts: Sequence[Path]) -> list[BenchRun]:
    """--no-run: treat every present result file as a successful run."""
    out = []
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        ok = (results_dir / f"{name}.json").is_file()
        out.append(BenchRun(name, f"bench/{script.name}", "ok" if ok else "no result (not run)", 0.0, None))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench-dir", type=Path, default=HERE)
    ap.add_argument("--results-dir", type=Path, default=HERE / "results")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--only", action="append", default=[], help="bench name (bench_<name>.py); repeatable")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per benchmark")
    ap.add_argument("--no-run", action="store_true", help="aggregate existing result files only")
    args = ap.parse_args(argv)

    scripts = discover(args.bench_dir, args.only)
    if args.no_run:
        runs = existing_runs(args.results_dir, scripts)
    else:
        runs = []
        for script in scripts:
            print(f"== {script.name}", flush=True)
            run = run_one(script, args.results_dir, args.timeout)
            print(f"   {run.status} in {run.seconds:.1f} s", flush=True)
            runs.append(run)
    generated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc, markdown = aggregate(runs, args.results_dir, machine_info(), generated_at)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(markdown)
    for t in doc["targets"]:
        limit = _fmt(t["limit"], t["unit"]) if t["limit"] is not None else "—"
        print(f"{t['status']:<13} {t['title']}: {_fmt(t['value'], t['unit'])} (target {limit})")
    print(f"wrote {args.out} and {args.doc}")
    failed = [r for r in runs if r.status != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
