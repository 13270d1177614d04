#!/usr/bin/env python3
"""Monte-Carlo latency and shock scenarios for the executor (seed: scripts/simulate_execution.py).

Each scenario replays a slice of market data through the executor's own decision
core (sizing, gates, post-only ladders, reduce-only exits, the paper exchange)
with a signal every ``--signal-every-ms``, under a latency model and an optional
instantaneous price shock, ``--runs`` times with different seeds (the latency
draws and the shock time change). The outcome is scored by the risk service's
book: fill rate, win rate, markouts at 100/500/1000 ms. The JSON report gives,
per scenario, the mean and the 5th/50th/95th percentiles over the runs.

    python scripts/simulate_execution.py --runs 20 --out execution_scenarios.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidegate.bus.market_messages import MarketMessages  # noqa: E402
from tidegate.config import load_config  # noqa: E402
from tidegate.execution.calibration import run_scenario, shocked, signal_schedule  # noqa: E402
from tidegate.execution.venue import load_offline_exchange, market_rules  # noqa: E402
from tidegate.market.frame import iter_events  # noqa: E402

# name -> (latency model settings, shock in bps or None)
SCENARIOS: dict[str, tuple[dict[str, Any], float | None]] = {
    "baseline": ({"latency_model": "constant", "entry_latency_ms": 5, "response_latency_ms": 5}, None),
    "lognormal_latency": ({"latency_model": "lognormal", "entry_latency_ms": 5, "latency_sigma": 0.6}, None),
    "slow_venue": ({"latency_model": "lognormal", "entry_latency_ms": 50, "latency_sigma": 1.0}, None),
    "shock_down_50bps": ({"latency_model": "lognormal", "entry_latency_ms": 5, "latency_sigma": 0.6}, -50.0),
    "shock_up_50bps": ({"latency_model": "lognormal", "entry_latency_ms": 5, "latency_sigma": 0.6}, 50.0),
}


def summary(values: list[float]) -> dict[str, float | None]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "p5": None, "p50": None, "p95": None, "runs": 0}
    return {"mean": float(v.mean()), "p5": float(np.percentile(v, 5)), "p50": float(np.percentile(v, 50)),
            "p95": float(np.percentile(v, 95)), "runs": int(v.size)}


def load_market(args: argparse.Namespace, symbol: str) -> tuple[str, list[Any]]:
    path = args.capture
    if path is not None and str(path) and path.is_file():
        from tidegate.market.capture import read_capture

        frame, source = read_capture(path), str(path)
    else:
        from tidegate.market.synthetic import generate

        frame, source = generate(symbol=symbol, duration_s=args.seconds + args.start_offset_s, regime="event"), \
            "synthetic (event regime)"
    t0 = frame.time_range_ns()[0] + int(args.start_offset_s * 1e9)
    t1 = t0 + int(args.seconds * 1e9)
    conv = MarketMessages(symbol)
    market = [m for m in (conv.convert(ev) for ev in iter_events(frame) if ev.local_ns < t1) if m is not None]
    return source, [m for m in market if m.recv_ns >= t0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "app.yml"))
    default_capture = REPO / ".." / "shared" / "data" / "capture" / "binance_usdm_btcusdt_20240808.gz"
    ap.add_argument("--capture", type=Path, default=default_capture if default_capture.is_file() else None,
                    help="capture file (default: the USD-M capture when present; '' or absent: synthetic)")
    ap.add_argument("--start-offset-s", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=120.0, help="market time per run")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--signal-every-ms", type=float, default=500.0)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("execution_scenarios.json"))
    args = ap.parse_args(argv)
    base = load_config(args.config)
    symbol = base.symbols[0]
    rules = {symbol: market_rules(load_offline_exchange(REPO / base.exchange.markets_file
                                                        if not Path(base.exchange.markets_file).is_absolute()
                                                        else Path(base.exchange.markets_file)), symbol)}
    source, market = load_market(args, symbol)
    if not market:
        raise SystemExit("no market data in the selected window")
    signals = signal_schedule(market, args.signal_every_ms, symbol)
    rng = random.Random(args.seed)
    t0, t1 = market[0].recv_ns, market[-1].recv_ns
    report: dict[str, Any] = {"source": source, "seconds": args.seconds, "runs": args.runs,
                              "signals_per_run": len(signals), "scenarios": {}}
    for name in args.scenario or list(SCENARIOS):
        latency, shock = SCENARIOS[name]
        runs: list[dict[str, float]] = []
        for _ in range(args.runs):
            seed = rng.randrange(1 << 30)
            sim = {**base.executor.simulator.model_dump(), **latency, "seed": seed}
            cfg = base.model_copy(update={"executor": base.executor.model_copy(update={
                "warmup_seconds": 0.0, "simulator": base.executor.simulator.model_validate(sim)})})
            mkt = market if shock is None else shocked(market, t0 + (seed % 1000) * (t1 - t0) // 1000 // 2 +
                                                       (t1 - t0) // 4, shock)
            runs.append(run_scenario(cfg, rules, mkt, signals))
        report["scenarios"][name] = {"latency": latency, "shock_bps": shock,
                                     **{k: summary([r[k] for r in runs]) for k in runs[0]}}
        s = report["scenarios"][name]
        print(f"{name:>20}: fill rate {s['fill_rate']['mean']}, win rate {s['win_rate']['mean']}, "
              f"markout 1s {s['avg_markout_1000ms']['mean']} bps")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
