#!/usr/bin/env python3
"""Run any entry point under cProfile and print where the time goes (latency budgeting).

The seed asks for one tool that profiles "any entrypoint": a module run as
``python -m`` (``tidegate.services.executor``) or a script path, either until it
exits or for a fixed duration. Long-running services never exit on their own,
so ``--duration`` stops them from inside with a SIGALRM that raises an exception
in the main thread; the exception unwinds the target (asyncio loops included)
and the profile collected so far is reported. Nothing is patched or mocked: the
target runs exactly as it would with ``python -m`` or ``python path``.

    python scripts/profile_service.py tidegate.services.executor --duration 60 -- --config config/app.yml
    python scripts/profile_service.py scripts/validate_config.py -- --config config/app.yml
    python scripts/profile_service.py MODULE --top 30 --sort tottime --json out.json --pstats out.prof

The report lists the top functions by cumulative (or own) time with calls and
time per call, which is what a per-service latency budget is built from.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import pstats
import re
import runpy
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

SORT_KEYS = {"cumulative": 3, "tottime": 2}   # index into pstats' (cc, nc, tt, ct, callers)


class DurationElapsed(BaseException):
    """Raised in the main thread when --duration is over (BaseException: targets rarely catch it)."""


@dataclass(frozen=True)
class FunctionCost:
    function: str       # file:line(name)
    calls: int
    own_s: float        # time in the function itself
    cumulative_s: float  # time including callees

    @property
    def per_call_ms(self) -> float:
        return 1000.0 * self.cumulative_s / self.calls if self.calls else 0.0


def _label(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":                       # built-ins
        return name
    return f"{_short_path(filename)}:{line}({name})"


def _short_path(filename: str) -> str:
    stdlib = re.search(r"/lib/python3\.\d+/(site-packages/)?", filename)
    if stdlib:
        return filename[stdlib.end():]
    try:
        return os.path.relpath(filename)
    except ValueError:
        return filename


def _is_harness(key: tuple[str, int, str]) -> bool:
    """Frames of this tool and of runpy wrap every target; they would top every report."""
    filename, _line, name = key
    return filename == __file__ or "runpy" in filename or name == "<built-in method builtins.exec>"


def top_functions(stats: pstats.Stats, n: int, sort: str = "cumulative") -> list[FunctionCost]:
    """The n costliest functions of a profile, most expensive first."""
    index = SORT_KEYS[sort]
    rows = sorted(((key, row) for key, row in stats.stats.items()  # type: ignore[attr-defined]
                   if not _is_harness(key)), key=lambda kv: kv[1][index], reverse=True)
    return [FunctionCost(_label(key), int(nc), float(tt), float(ct)) for key, (_cc, nc, tt, ct, _) in rows[:n]]


def format_table(costs: list[FunctionCost], total_s: float) -> str:
    lines = [f"{'cumulative s':>12} {'own s':>9} {'calls':>9} {'ms/call':>9}  function"]
    for c in costs:
        lines.append(f"{c.cumulative_s:12.4f} {c.own_s:9.4f} {c.calls:9d} {c.per_call_ms:9.4f}  {c.function}")
    lines.append(f"wall time profiled: {total_s:.3f} s")
    return "\n".join(lines)


def _is_path(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or Path(target).exists()


def target_problem(target: str) -> str | None:
    """Why the target cannot be run, or None (checked before profiling starts)."""
    if _is_path(target):
        return None if Path(target).is_file() else f"script {target} not found"
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError) as exc:
        return f"module {target} cannot be imported: {exc}"
    return None if found else f"module {target} not found (neither a script path nor an importable module)"


def run_target(target: str, args: list[str]) -> None:
    """Run a module (dotted name) or a script path as __main__ with the given argv."""
    path = Path(target)
    if _is_path(target):
        sys.argv = [str(path), *args]
        sys.path.insert(0, str(path.resolve().parent))
        runpy.run_path(str(path), run_name="__main__")
    else:
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise DurationElapsed


def profile(target: str, args: list[str], duration: float | None) -> tuple[pstats.Stats, float, str]:
    """Profile the target; returns the stats, the wall time and how it ended."""
    profiler = cProfile.Profile()
    outcome = "exited"
    if duration:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, duration)
    start = time.perf_counter()
    profiler.enable()
    try:
        run_target(target, args)
    except DurationElapsed:
        outcome = f"stopped after --duration {duration:g}s"
    except SystemExit as exc:
        outcome = f"exited with status {exc.code}" if exc.code not in (None, 0) else "exited"
    except KeyboardInterrupt:
        outcome = "interrupted"
    finally:
        profiler.disable()
        if duration:
            signal.setitimer(signal.ITIMER_REAL, 0)
    wall = time.perf_counter() - start
    return pstats.Stats(profiler), wall, outcome


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    target_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, target_args = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after -- are passed to the target.")
    parser.add_argument("target", help="module (tidegate.services.executor) or script path (scripts/x.py)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop the target after this many seconds (default: run until it exits)")
    parser.add_argument("--top", type=int, default=25, help="functions to print (default 25)")
    parser.add_argument("--sort", choices=sorted(SORT_KEYS), default="cumulative")
    parser.add_argument("--json", type=Path, help="also write the top functions as JSON")
    parser.add_argument("--pstats", type=Path, help="also write the raw profile (snakeviz, pstats)")
    opts = parser.parse_args(argv)
    if opts.duration is not None and opts.duration <= 0:
        parser.error("--duration must be positive")
    problem = target_problem(opts.target)
    if problem:
        parser.error(problem)

    out = os.fdopen(os.dup(1), "w")   # the target may close sys.stdout (json.tool does)
    stats, wall, outcome = profile(opts.target, target_args, opts.duration)
    costs = top_functions(stats, opts.top, opts.sort)
    print(f"\n== profile of {opts.target} ({outcome}), top {len(costs)} by {opts.sort} time", file=out)
    print(format_table(costs, wall), file=out)
    if opts.json:
        opts.json.write_text(json.dumps({"target": opts.target, "outcome": outcome, "wall_s": wall,
                                         "sort": opts.sort,
                                         "functions": [asdict(c) | {"per_call_ms": c.per_call_ms} for c in costs]},
                                        indent=2))
    if opts.pstats:
        stats.dump_stats(str(opts.pstats))
    out.close()
    return 0 if not outcome.startswith("exited with status") else 1


if __name__ == "__main__":
    raise SystemExit(main())
