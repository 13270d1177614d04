#!/usr/bin/env python3
"""Cross-check the configured symbols against the venue reference (seed: scripts/validate_symbols.py).

For every symbol in ``symbols`` of the config: listed and active in the saved
markets file (``exchange.markets_file``, parsed offline by ccxt, no network),
maker/taker fees equal to ``exchange.reference_maker_fee``/``reference_taker_fee``,
and lot sizes sane and equal to the venue's own instruments response saved
beside the markets file (``bybit_v5_linear_instruments.json``: qtyStep,
minOrderQty, tickSize). The check is ``tidegate.execution.venue.reference_mismatches``,
the same function behind the risk service's ``exchange_reference_mismatch_total``;
this script only reports (it increments nothing).

Prints one line per symbol and per mismatch; exits 1 on any mismatch, 2 on a bad config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidegate.config import ConfigError, load_config  # noqa: E402
from tidegate.execution.venue import (  # noqa: E402
    INSTRUMENTS_NAME,
    VenueError,
    load_instruments,
    load_offline_exchange,
    market_rules,
    reference_mismatches,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "app.yml"))
    ap.add_argument("--markets-file", help="override exchange.markets_file")
    ap.add_argument("--instruments-file",
                    help=f"raw venue instruments (default: {INSTRUMENTS_NAME} beside the markets)")
    ap.add_argument("--symbol", action="append", help="check these symbols instead of the configured ones")
    ap.add_argument("--json", action="store_true", help="print the mismatches as JSON")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    markets = Path(args.markets_file or cfg.exchange.markets_file)
    markets = markets if markets.is_absolute() else REPO / markets
    try:
        ex = load_offline_exchange(markets)
    except VenueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    inst_path = Path(args.instruments_file) if args.instruments_file else markets.with_name(INSTRUMENTS_NAME)
    instruments = load_instruments(inst_path) or None
    symbols = args.symbol or cfg.symbols
    found = reference_mismatches(symbols, ex, maker_fee=cfg.exchange.reference_maker_fee,
                                 taker_fee=cfg.exchange.reference_taker_fee, instruments=instruments)
    if args.json:
        print(json.dumps([m.__dict__ for m in found], default=str, indent=2))
    else:
        for s in symbols:
            bad = [m for m in found if m.symbol == s]
            try:
                r = market_rules(ex, s)
                desc = (f"lot_step={r.lot_step:g} min_qty={r.min_qty:g} tick={r.tick_size:g} "
                        f"maker={r.maker_fee:g} taker={r.taker_fee:g}")
            except VenueError:
                desc = "not listed"
            print(f"{s}: {'MISMATCH' if bad else 'ok'} ({desc})")
            for m in bad:
                print(f"  {m.field}: expected {m.expected}, venue has {m.actual}")
        if instruments is None:
            print(f"note: no instruments reference at {inst_path}; lot sizes checked for sanity only")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
