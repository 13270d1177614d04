"""The ccxt bybit v5 venue adapter, with markets loaded offline.

Paper mode must never touch the network, yet the executor needs the venue's
real instrument rules (tick size, lot step, minimum quantity and notional,
maker/taker fee). So the markets are parsed *by ccxt itself* once, from a saved
raw ``/v5/market/instruments-info`` response with the HTTP call replaced
(``build_markets_file``), and the parsed markets are committed as
``config/markets/bybit_v5_linear.json``. At run time ``load_offline_exchange``
hands that file to ``set_markets``; ``load_markets`` then returns the cache and
makes no request. In paper mode the exchange object additionally has every
HTTP entry point disabled, so a stray call raises instead of connecting.

Real mode (``EXCHANGE_MODE=real``) needs API keys from the environment
(``BYBIT_API_KEY``/``BYBIT_API_SECRET``, which a Kubernetes Secret mounts as env);
keys are never logged or included in any repr this module produces.

Fees are computed as ``qty × price × rate``: ccxt's ``calculate_fee`` computes a
linear-swap *buy* fee on the base quantity (``feeSide='get'``), which is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt

REPO = Path(__file__).resolve().parents[2]
RAW_INSTRUMENTS = REPO / "config" / "markets" / "bybit_v5_linear_instruments.json"
MARKETS_FILE = REPO / "config" / "markets" / "bybit_v5_linear.json"
# the venue's own instruments-info response (bybit v5), kept beside the parsed markets file as the
# reference for lot sizes and ticks: a stale or mis-parsed markets file disagrees with it
INSTRUMENTS_NAME = "bybit_v5_linear_instruments.json"


class VenueError(RuntimeError):
    """Venue misconfiguration (missing keys, unknown symbol); the message names the problem."""


class OfflineNetworkError(ccxt.NetworkError):
    pass


@dataclass(frozen=True)
class MarketRules:
    """What sizing, gates and fees need from one instrument."""

    symbol: str          # venue id, e.g. BTCUSDT
    ccxt_symbol: str     # e.g. BTC/USDT:USDT
    tick_size: float
    lot_step: float
    min_qty: float
    max_qty: float
    min_notional: float
    maker_fee: float
    taker_fee: float
    max_leverage: float
    active: bool

    def fee(self, qty: float, price: float, liquidity: str = "maker") -> float:
        return fee_cost(qty, price, self.maker_fee if liquidity == "maker" else self.taker_fee)


def fee_cost(qty: float, price: float, rate: float) -> float:
    """Quote-currency fee of a linear-contract fill."""
    return qty * price * rate


def _no_network(*_: Any, **__: Any) -> Any:
    raise OfflineNetworkError("network access is disabled in paper mode (markets are loaded offline)")


def build_markets_file(raw_path: Path = RAW_INSTRUMENTS, out_path: Path = MARKETS_FILE) -> list[dict[str, Any]]:
    """Parse a saved raw instruments-info response with ccxt's own parser; write the markets JSON."""
    raw = json.loads(Path(raw_path).read_text())
    empty = {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [], "nextPageCursor": ""}}
    ex = ccxt.bybit({"options": {"fetchMarkets": {"types": ["linear"]}}})
    calls = iter([raw])
    ex.publicGetV5MarketInstrumentsInfo = lambda params=None: next(calls, empty)
    ex.fetch_currencies = lambda params=None: None  # a private endpoint on bybit
    ex.fetch = _no_network
    ex.load_markets()
    markets = sorted(ex.markets.values(), key=lambda m: m["symbol"])
    text = json.dumps(markets, indent=1, sort_keys=True, default=str)
    Path(out_path).write_text(text + "\n")
    return json.loads(text)


def load_offline_exchange(markets_file: Path = MARKETS_FILE, *, credentials: Mapping[str, str] | None = None
                          ) -> ccxt.bybit:
    """A ccxt bybit whose markets come from the saved file; no HTTP unless credentials are given."""
    path = Path(markets_file)
    if not path.is_file():
        raise VenueError(f"markets file {path} is missing (build it with build_markets_file)")
    config: dict[str, Any] = {"options": {"fetchMarkets": {"types": ["linear"]}, "defaultType": "swap"}}
    if credentials:
        config.update(credentials)
    ex = ccxt.bybit(config)
    ex.set_markets(json.loads(path.read_text()))
    if not credentials:
        ex.fetch = _no_network
    return ex


def market_rules(ex: ccxt.Exchange, symbol: str) -> MarketRules:
    """Rules of a venue id (BTCUSDT) or ccxt symbol (BTC/USDT:USDT)."""
    m = ex.markets.get(symbol)
    if m is None:
        listed = (getattr(ex, "markets_by_id", None) or {}).get(symbol)
        m = listed[0] if listed else None
    if m is None:
        raise VenueError(f"symbol {symbol!r} is not listed in the venue's markets")
    limits = m.get("limits", {})
    return MarketRules(
        symbol=m["id"], ccxt_symbol=m["symbol"], tick_size=float(m["precision"]["price"]),
        lot_step=float(m["precision"]["amount"]), min_qty=float(limits.get("amount", {}).get("min") or 0.0),
        max_qty=float(limits.get("amount", {}).get("max") or float("inf")),
        min_notional=float(limits.get("cost", {}).get("min") or 0.0), maker_fee=float(m.get("maker") or 0.0),
        taker_fee=float(m.get("taker") or 0.0),
        max_leverage=float(limits.get("leverage", {}).get("max") or 1.0), active=bool(m.get("active", True)))


def real_credentials(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """API keys for real mode from the environment (a Kubernetes Secret is mounted as env)."""
    env = os.environ if env is None else env
    key, secret = env.get("BYBIT_API_KEY", ""), env.get("BYBIT_API_SECRET", "")
    if not key or not secret:
        raise VenueError("EXCHANGE_MODE=real needs BYBIT_API_KEY and BYBIT_API_SECRET in the environment "
                         "(or from the Kubernetes Secret); refusing to start")
    return {"apiKey": key, "secret": secret}


@dataclass(frozen=True)
class ReferenceMismatch:
    symbol: str
    field: str
    expected: Any
    actual: Any


def load_instruments(path: Path) -> dict[str, dict[str, Any]]:
    """The raw bybit v5 instruments-info response, by symbol ({} when the file is absent)."""
    if not Path(path).is_file():
        return {}
    doc = json.loads(Path(path).read_text())
    rows = doc.get("result", {}).get("list", []) if isinstance(doc, dict) else doc
    return {str(r["symbol"]): r for r in rows}


def reference_mismatches(symbols: list[str], ex: ccxt.Exchange, *, maker_fee: float, taker_fee: float,
                         instruments: Mapping[str, Mapping[str, Any]] | None = None) -> list[ReferenceMismatch]:
    """Cross-check configured symbols against the venue: listed, active, maker/taker fees, lot sizes.

    Lot sizes: the step must be positive and no larger than the minimum quantity, and, when the
    venue's raw instruments response is given, lot step, minimum quantity and tick size must equal
    its ``lotSizeFilter.qtyStep``, ``lotSizeFilter.minOrderQty`` and ``priceFilter.tickSize``.
    Used by scripts/validate_symbols.py and by the risk service (exchange_reference_mismatch_total).
    """
    out: list[ReferenceMismatch] = []
    for s in symbols:
        try:
            r = market_rules(ex, s)
        except VenueError:
            out.append(ReferenceMismatch(s, "listed", True, False))
            continue
        raw = (instruments or {}).get(r.symbol)
        if instruments is not None and raw is None:
            out.append(ReferenceMismatch(s, "instrument", "present in the instruments reference", "absent"))
        if raw is not None:
            lot, price = raw.get("lotSizeFilter", {}), raw.get("priceFilter", {})
            for name, ref, actual in (("lot_step", lot.get("qtyStep"), r.lot_step),
                                      ("min_qty", lot.get("minOrderQty"), r.min_qty),
                                      ("tick_size", price.get("tickSize"), r.tick_size)):
                if ref is not None and abs(float(ref) - actual) > 1e-12:
                    out.append(ReferenceMismatch(s, name, float(ref), actual))
        if not r.active:
            out.append(ReferenceMismatch(s, "active", True, False))
        if abs(r.maker_fee - maker_fee) > 1e-12:
            out.append(ReferenceMismatch(s, "maker_fee", maker_fee, r.maker_fee))
        if abs(r.taker_fee - taker_fee) > 1e-12:
            out.append(ReferenceMismatch(s, "taker_fee", taker_fee, r.taker_fee))
        if not (r.lot_step > 0 and r.min_qty >= r.lot_step - 1e-12):
            out.append(ReferenceMismatch(s, "lot_step", f"0 < lot_step <= min_qty ({r.min_qty})", r.lot_step))
    return out


def venue_urls_from_env(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(REST base, WebSocket base) from ``EXCHANGE_REST_URL``/``EXCHANGE_WS_URL``; None: ccxt's own.

    Both or neither: pointing REST at one venue and the private stream at another would make
    the executor trade on one account and listen to another."""
    env = os.environ if env is None else env
    rest, ws = env.get("EXCHANGE_REST_URL", ""), env.get("EXCHANGE_WS_URL", "")
    if bool(rest) != bool(ws):
        raise VenueError("EXCHANGE_REST_URL and EXCHANGE_WS_URL must be set together (or neither)")
    return (rest, ws) if rest else None


def check_venue(venue: str) -> None:
    """Only bybit_v5 has an adapter; anything else is refused naming the key (exchange.venue)."""
    if venue != "bybit_v5":
        raise VenueError(f"exchange.venue: {venue!r} is not supported (only 'bybit_v5')")


def live_client(markets_file: Path, credentials: Mapping[str, str], *,
                urls: tuple[str, str] | None = None) -> Any:
    """An async ``ccxt.pro.bybit`` (REST and the private stream) with the offline markets set.

    The markets are the same parsed file paper mode uses, so sizing and precision agree between
    paper and real; ``urls`` (from ``venue_urls_from_env``) re-points every REST and WebSocket
    entry, the one knob ccxt has for a venue's address (testnet, demo, the emulator)."""
    import ccxt.pro as ccxt_pro

    from tidegate.venue.client import emulator_urls

    path = Path(markets_file)
    if not path.is_file():
        raise VenueError(f"markets file {path} is missing (build it with build_markets_file)")
    ex = ccxt_pro.bybit({**credentials, "options": {"fetchMarkets": {"types": ["linear"]}, "defaultType": "swap"},
                         "enableRateLimit": True})
    if urls is not None:
        ex.urls["api"] = emulator_urls(*urls)
    ex.set_markets(json.loads(path.read_text()))
    return ex
