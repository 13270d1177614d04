"""Real-mode decisions free of I/O: ccxt order/trade dicts → engine reports, reconciliation, error classes.

The executor's shell (tidegate.services.executor) talks to the venue through ccxt; everything
it must *decide* about what the venue said lives here, so it is unit-tested without a venue:

- ``order_report`` / ``trade_report``: a ccxt unified order (``watch_orders``, ``fetch_open_orders``,
  history) or trade (``watch_my_trades``, ``fetch_my_trades``) as the ``ExecReport`` the paper
  exchange would have produced, so the engine's one ``_apply`` handles paper and venue alike.
  Fills come from trades only (each carries the venue's execution id, the idempotency key of the
  fill); an order's ``closed`` status adds nothing. A PostOnly that would have crossed is accepted
  by Bybit and then cancelled with ``rejectReason=EC_PostOnlyWillTakeLiquidity``: that is a
  *rejected* order with reason ``post_only_would_cross``, exactly as on paper.
- ``parse_link_id`` / ``plan_reconcile``: after a restart, which venue orders are ours (by
  ``orderLinkId`` = client order id ``<signal_id>-e<n>`` / ``-x<n>``), which to adopt, and how much
  of a position no resting exit covers.
- ``classify_error``: what a ccxt exception means for the lifecycle (retry after a rate limit,
  "already placed" for a duplicate ``orderLinkId``, fail-safe on a lost venue, rejected otherwise).
- ``redact``: ccxt error texts quote the venue's response, and Bybit's ``10004`` quotes the signed
  origin string, which contains the API key; every venue text is redacted before it is logged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ccxt

from tidegate.execution.simulator import ExecReport

POST_ONLY_CROSS = "EC_PostOnlyWillTakeLiquidity"
DUPLICATE_LINK_ID = "110072"
_LINK = re.compile(r"^(?P<signal>.+)-(?P<kind>[ex])(?P<n>\d+)$")


def link_id(item: Mapping[str, Any]) -> str:
    """The client order id (Bybit ``orderLinkId``) of a ccxt order or trade."""
    info = item.get("info") or {}
    return str(item.get("clientOrderId") or info.get("orderLinkId") or "")


def _f(value: Any, default: float = 0.0) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(out) else out


def order_report(order: Mapping[str, Any], ts_ns: int) -> ExecReport | None:
    """The lifecycle event a ccxt order update stands for (None: nothing the engine acts on)."""
    coid = link_id(order)
    if not coid:
        return None
    status = order.get("status")
    info = order.get("info") or {}
    reject = str(info.get("rejectReason") or "")
    filled = _f(order.get("filled"))
    amount = _f(order.get("amount"))
    if status == "open":
        if filled > 0:
            return None                       # partially filled: the trades carry it
        return ExecReport("accepted", coid, ts_ns, ts_ns, price=_f(order.get("price")), qty=amount,
                          remaining=amount)
    if status == "canceled":
        if reject == POST_ONLY_CROSS and filled <= 0:
            return ExecReport("rejected", coid, ts_ns, ts_ns, reason="post_only_would_cross")
        return ExecReport("cancelled", coid, ts_ns, ts_ns, qty=amount, remaining=max(0.0, amount - filled))
    if status == "rejected":
        return ExecReport("rejected", coid, ts_ns, ts_ns, reason=f"venue_{reject or 'rejected'}")
    return None


def trade_report(trade: Mapping[str, Any], ts_ns: int, *, ordered_qty: float, filled_before: float,
                 maker_fee: float, taker_fee: float) -> tuple[str, ExecReport] | None:
    """(execution id, fill report) of a ccxt trade of one of our orders; None when it is not ours.

    ``remaining`` is the venue's ``leavesQty`` when it reports one (it knows about reduce-only
    clipping), else what the engine's own accounting leaves."""
    coid = link_id(trade)
    exec_id = str(trade.get("id") or "")
    qty = _f(trade.get("amount"))
    price = _f(trade.get("price"))
    if not coid or not exec_id or qty <= 0 or price <= 0:
        return None
    info = trade.get("info") or {}
    liquidity = "taker" if trade.get("takerOrMaker") == "taker" else "maker"
    fee = trade.get("fee") or {}
    rate = _f(fee.get("rate"), maker_fee if liquidity == "maker" else taker_fee)
    cost = _f(fee.get("cost"), qty * price * rate)
    leaves = info.get("leavesQty")
    remaining = _f(leaves) if leaves not in (None, "") else max(0.0, ordered_qty - filled_before - qty)
    return exec_id, ExecReport("fill", coid, ts_ns, ts_ns, price=price, qty=qty, remaining=remaining,
                               fee=cost, fee_rate=rate, liquidity=liquidity)  # type: ignore[arg-type]


def parse_link_id(coid: str) -> tuple[str, str, int] | None:
    """(signal id, "e" entry | "x" exit, n) of one of our client order ids; None for anything else."""
    m = _LINK.match(coid)
    return (m["signal"], m["kind"], int(m["n"])) if m else None


@dataclass
class Reconcile:
    """What to do after a restart: orders to adopt, and per symbol the exit a position still needs."""

    adopt: list[Mapping[str, Any]] = field(default_factory=list)
    cover: dict[str, tuple[str, float]] = field(default_factory=dict)   # venue symbol -> (exit side, qty)
    foreign: int = 0                                                   # open orders that are not ours


def plan_reconcile(open_orders: Iterable[Mapping[str, Any]], positions: Iterable[Mapping[str, Any]],
                   live: set[str], *, symbol_of: Mapping[str, str], lot_step: Mapping[str, float]) -> Reconcile:
    """Decide the reconciliation from the venue's open orders and positions.

    ``symbol_of`` maps ccxt symbols (BTC/USDT:USDT) to venue ids (BTCUSDT). Orders of ours not
    tracked (``live``) are adopted. A position's exit side is sell for a long; the part of it that
    no open reduce-only order on that side covers (floored to the lot step) gets a new exit."""
    out = Reconcile()
    covering: dict[tuple[str, str], float] = {}
    for o in open_orders:
        coid = link_id(o)
        sym = symbol_of.get(str(o.get("symbol")), "")
        if not sym or parse_link_id(coid) is None:
            out.foreign += 1
            continue
        if bool(o.get("reduceOnly")):
            key = (sym, str(o.get("side")))
            covering[key] = covering.get(key, 0.0) + max(0.0, _f(o.get("amount")) - _f(o.get("filled")))
        if coid not in live:
            out.adopt.append(o)
    out.cover = uncovered(positions, covering, symbol_of=symbol_of, lot_step=lot_step)
    return out


def unfinished_real(events: Iterable[Any]) -> dict[str, Any]:
    """Real orders whose last published event leaves them open (``new``/``accepted``), by id.

    ``events`` are OrderMsg in stream order; an order with a later ``rejected``, ``cancelled``
    or ``filled`` is finished. The executor announces ``new`` before its create call, so after
    a kill the ones the venue never saw are among these."""
    last: dict[str, Any] = {}
    for e in events:
        if e.venue == "real":
            last[e.client_order_id] = e
    return {c: e for c, e in last.items() if e.status in ("new", "accepted")}


def uncovered(positions: Iterable[Mapping[str, Any]], covering: Mapping[tuple[str, str], float], *,
              symbol_of: Mapping[str, str], lot_step: Mapping[str, float]) -> dict[str, tuple[str, float]]:
    """Per venue symbol, (exit side, qty) of an open position that resting reduce-only orders
    (``covering``: (symbol, side) -> remaining qty) do not cover, floored to the lot step.

    The venue nets one position per symbol (one-way mode) while the engine keeps an exit per
    entry: a buy and a sell entry filling in turn flatten the position and get their exits
    refused (110017) or cancelled (CancelByReduceOnly), so the position is re-checked against
    what actually rests, at restart and on every poll."""
    out: dict[str, tuple[str, float]] = {}
    for p in positions:
        sym = symbol_of.get(str(p.get("symbol")), "")
        size = abs(_f(p.get("contracts")))
        if not sym or size <= 0:
            continue
        side = "sell" if p.get("side") == "long" else "buy"
        step = lot_step.get(sym, 0.0)
        gap = size - covering.get((sym, side), 0.0)
        if step > 0:
            gap = math.floor(gap / step + 1e-9) * step
        if gap > 1e-12:
            out[sym] = (side, round(gap, 12))
    return out


def position_liq(positions: Iterable[Mapping[str, Any]], symbol_of: Mapping[str, str]
                 ) -> dict[tuple[str, str], float]:
    """(venue symbol, entry side adding to it) -> the venue's liquidation price of that open position."""
    out: dict[tuple[str, str], float] = {}
    for p in positions:
        sym = symbol_of.get(str(p.get("symbol")), "")
        liq = _f(p.get("liquidationPrice"))
        if sym and abs(_f(p.get("contracts"))) > 0 and liq > 0:
            out[(sym, "buy" if p.get("side") == "long" else "sell")] = liq
    return out


def free_usdt(balance: Mapping[str, Any]) -> float | None:
    """The venue's free (available) USDT from a ccxt ``fetch_balance`` / ``watch_balance``."""
    free = (balance.get("free") or {}).get("USDT")
    if free is None:
        free = (balance.get("USDT") or {}).get("free")
    return None if free is None else _f(free)


def classify_error(exc: BaseException) -> str:
    """rate_limit | duplicate | not_found | insufficient_balance | auth | network | rejected | error.

    Order matters: ccxt's RateLimitExceeded is a NetworkError, OrderNotFound an InvalidOrder."""
    if isinstance(exc, ccxt.RateLimitExceeded):
        return "rate_limit"
    if isinstance(exc, ccxt.OrderNotFound):
        return "not_found"
    if isinstance(exc, ccxt.InvalidOrder) and DUPLICATE_LINK_ID in str(exc):
        return "duplicate"
    if isinstance(exc, ccxt.InsufficientFunds):
        return "insufficient_balance"
    if isinstance(exc, ccxt.AuthenticationError):
        return "auth"
    if isinstance(exc, ccxt.NetworkError):
        return "network"
    if isinstance(exc, (ccxt.InvalidOrder, ccxt.BadRequest)):
        return "rejected"
    return "error"


def ret_code(exc: BaseException) -> str:
    """Bybit's ``retCode`` quoted in a ccxt error text ("" when none): the reason label of a refusal."""
    m = re.search(r'"retCode"\s*:\s*(\d+)', str(exc))
    return m.group(1) if m else ""


def backoff_s(attempt: int, *, base: float = 0.2, cap: float = 2.0) -> float:
    """Exponential backoff after the ``attempt``-th consecutive rate limit (0-based)."""
    return min(cap, base * (2 ** attempt))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (API key, secret) replaced: safe to log."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text
