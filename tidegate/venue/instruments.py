"""Instrument rules of the emulated venue, read from Bybit's own instruments-info response.

The emulator serves the very response the markets file was built from
(``config/markets/bybit_v5_linear_instruments.json``), so ccxt parses the same tick
sizes, lot steps and minimums against the emulator as against Bybit, and the
emulator enforces them with exact decimals on the strings the client sent (a
float check would accept 0.30000000000000004 as a multiple of 0.1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tidegate.execution.venue import RAW_INSTRUMENTS
from tidegate.venue import codes
from tidegate.venue.codes import VenueRejected


def _dec(text: str, field: str) -> Decimal:
    try:
        d = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise VenueRejected(codes.PARAMS, f"params error: {field} invalid") from None
    if not d.is_finite():
        raise VenueRejected(codes.PARAMS, f"params error: {field} invalid")
    return d


@dataclass(frozen=True)
class Instrument:
    symbol: str
    base: str
    settle: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    min_price: Decimal
    max_price: Decimal
    price_scale: int
    raw: Mapping[str, Any]

    @classmethod
    def from_raw(cls, row: Mapping[str, Any]) -> Instrument:
        lot, px = row["lotSizeFilter"], row["priceFilter"]
        return cls(symbol=str(row["symbol"]), base=str(row["baseCoin"]), settle=str(row.get("settleCoin", "USDT")),
                   tick=Decimal(px["tickSize"]), step=Decimal(lot["qtyStep"]),
                   min_qty=Decimal(lot["minOrderQty"]), max_qty=Decimal(lot["maxOrderQty"]),
                   min_notional=Decimal(lot.get("minNotionalValue") or "0"), min_price=Decimal(px["minPrice"]),
                   max_price=Decimal(px["maxPrice"]), price_scale=int(row.get("priceScale", 2)), raw=row)

    # -- validation of the client's decimal strings ------------------------------------------------
    def check_qty(self, text: str) -> Decimal:
        q = _dec(text, "qty")
        if q <= 0 or q % self.step != 0:
            raise VenueRejected(codes.PARAMS, "Qty invalid")
        if q < self.min_qty:
            raise VenueRejected(codes.PARAMS, "The number of contracts exceeds minimum limit allowed")
        if q > self.max_qty:
            raise VenueRejected(codes.PARAMS, "The number of contracts exceeds maximum limit allowed")
        return q

    def check_price(self, text: str) -> Decimal:
        p = _dec(text, "price")
        if p <= 0 or p % self.tick != 0:
            raise VenueRejected(codes.PARAMS, "Price invalid")
        if p < self.min_price or p > self.max_price:
            raise VenueRejected(codes.PRICE_RANGE, "Order price is out of permissible range")
        return p

    def check_notional(self, qty: Decimal, price: Decimal) -> None:
        if qty * price < self.min_notional:
            raise VenueRejected(codes.MIN_NOTIONAL,
                                f"Order does not meet minimum order value {self.min_notional}USDT")

    # -- formatting as the venue prints numbers ----------------------------------------------------
    def px(self, x: float) -> str:
        return str(Decimal(repr(x)).quantize(Decimal(1).scaleb(-self.price_scale)))

    def qty(self, x: float) -> str:
        return str(Decimal(repr(round(x, 12))).quantize(self.step.normalize()))


def num(x: float) -> str:
    """A float as a plain decimal string (no exponent), the way the venue prints values."""
    d = Decimal(repr(round(x, 10))).normalize()
    return format(d, "f") if d != 0 else "0"


def load_instruments(path: Path = RAW_INSTRUMENTS) -> dict[str, Instrument]:
    doc = json.loads(Path(path).read_text())
    rows = doc["result"]["list"] if isinstance(doc, dict) else doc
    return {str(r["symbol"]): Instrument.from_raw(r) for r in rows}


__all__ = ["Instrument", "load_instruments", "num"]
