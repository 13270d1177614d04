#!/usr/bin/env python3
"""Build empirical fill curves from historical fills and fit the simulator's queue model (seed script).

Inputs: the order and fill events of past trading (JSON lines in the ORDERS/FILLS
stream schemas, e.g. dumped from JetStream) and the market data of the same
period (a capture file, replayed exactly as the collector does). The real
placements are replayed through the paper exchange with each prob-queue power;
the power whose fill curve (share of orders first filled within 0.1 ... 5 s)
is closest to the real one is written, with every curve, to the JSON report.
Its ``config`` fragment (``executor.simulator.queue_model: prob``,
``prob_power``) goes into config/app.yml; ``--write-config`` writes it as YAML.

    python scripts/calibrate_fill_model.py --orders orders.jsonl --fills fills.jsonl \\
        --capture ../shared/data/capture/binance_usdm_btcusdt_20240808.gz --out fill_model.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidegate.bus.market_messages import MarketMessages  # noqa: E402
from tidegate.bus.messages import FillMsg, OrderMsg  # noqa: E402
from tidegate.execution.calibration import POWERS, calibrate  # noqa: E402
from tidegate.market.capture import read_capture  # noqa: E402
from tidegate.market.frame import iter_events  # noqa: E402


def read_jsonl(path: Path, schema: type[OrderMsg] | type[FillMsg]) -> list:  # type: ignore[type-arg]
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(schema.model_validate_json(line))
            except ValueError as exc:
                raise SystemExit(f"{path}:{n}: not a {schema.__name__}: {exc}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=Path, required=True, help="JSON lines of order events (OrderMsg)")
    ap.add_argument("--fills", type=Path, required=True, help="JSON lines of fills (FillMsg)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--capture", type=Path, help="market data of the same period (capture file)")
    src.add_argument("--synthetic", type=float, metavar="SECONDS", help="the synthetic generator instead (tests)")
    ap.add_argument("--synthetic-seed", type=int, default=7)
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument("--entry-latency-ms", type=float, default=0.0,
                    help="order entry latency added in the replay (the history's own ts are decision times)")
    ap.add_argument("--powers", default=",".join(f"{p:g}" for p in POWERS))
    ap.add_argument("--out", type=Path, default=Path("fill_model.json"))
    ap.add_argument("--write-config", type=Path, help="also write the config fragment as YAML here")
    args = ap.parse_args(argv)
    orders = read_jsonl(args.orders, OrderMsg)
    fills = read_jsonl(args.fills, FillMsg)
    conv = MarketMessages(args.symbol)
    if args.capture is not None:
        frame = read_capture(args.capture)
    else:
        from tidegate.market.synthetic import generate

        frame = generate(symbol=args.symbol, duration_s=args.synthetic, seed=args.synthetic_seed)
    market = [m for m in (conv.convert(ev) for ev in iter_events(frame)) if m is not None]
    result = calibrate(market, orders, fills, powers=[float(p) for p in args.powers.split(",")],
                       entry_latency_ms=args.entry_latency_ms)
    doc = result.to_json()
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.write_config:
        args.write_config.write_text(yaml.safe_dump(result.config(), sort_keys=False))
    print(f"{result.orders} orders; empirical fill curve {[round(v, 3) for v in result.empirical]} at "
          f"{list(result.horizons_s)} s; best prob_power {result.best_power:g} "
          f"(squared error {result.errors[f'prob:{result.best_power:g}']:.4g}); report {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
