"""Read endpoints of the emulated venue: which records a query returns, in Bybit's order and limits.

Kept apart from the server so the filters (mandatory symbol-or-settleCoin,
default and maximum page sizes, newest first) are plain functions of the account
and the query, testable without sockets. Pagination cursors are not issued: a
query returns at most ``limit`` records and ``nextPageCursor`` is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidegate.venue import codes
from tidegate.venue.account import BybitAccount
from tidegate.venue.codes import VenueRejected
from tidegate.venue.records import VenueOrder


def _linear(q: Mapping[str, str]) -> None:
    if q.get("category") != "linear":
        raise VenueRejected(codes.PARAMS, "params error: the emulator serves category linear only")


def _limit(q: Mapping[str, str], default: int, maximum: int) -> int:
    try:
        n = int(q.get("limit") or default)
    except ValueError:
        raise VenueRejected(codes.PARAMS, "params error: limit invalid") from None
    if not 1 <= n <= maximum:
        raise VenueRejected(codes.PARAMS, f"params error: limit must be within [1, {maximum}]")
    return n


def _scope(acct: BybitAccount, q: Mapping[str, str], o_symbol: str) -> bool:
    if q.get("symbol"):
        return o_symbol == q["symbol"]
    if q.get("baseCoin"):
        return acct.instruments[o_symbol].base == q["baseCoin"]
    return acct.instruments[o_symbol].settle == q.get("settleCoin", "")


def _require_scope(q: Mapping[str, str]) -> None:
    if not (q.get("symbol") or q.get("baseCoin") or q.get("settleCoin")):
        raise VenueRejected(codes.PARAMS, "Missing some parameters that must be filled in, symbol or settleCoin")


def _by_id(acct: BybitAccount, q: Mapping[str, str]) -> list[VenueOrder] | None:
    if not (q.get("orderId") or q.get("orderLinkId")):
        return None
    o = acct.find(q)
    return [o] if o is not None else []


def _page(items: list[dict[str, Any]], cursor: str = "") -> dict[str, Any]:
    return {"category": "linear", "list": items, "nextPageCursor": cursor}


def _paged(q: Mapping[str, str], rows: list[Any], n: int) -> tuple[list[Any], str]:
    """One page of ``rows`` from ``q["cursor"]``, and the cursor of the next page ("" at the end).

    Bybit's list endpoints page with an opaque ``cursor``: a page holds at most ``limit`` rows
    and ``nextPageCursor`` names the next one. A client that reads only the first page (as a
    REST catch-up after a long outage would) misses the older rows, so the emulator pages too.
    """
    raw = q.get("cursor") or ""
    head, _, num = raw.partition(":")
    if raw and (head != "offset" or not num.isdigit()):
        raise VenueRejected(codes.PARAMS, "params error: cursor invalid")
    start = int(num) if raw else 0
    page = rows[start:start + n]
    return page, (f"offset:{start + n}" if start + n < len(rows) else "")


def open_orders(acct: BybitAccount, q: Mapping[str, str]) -> dict[str, Any]:
    """``/v5/order/realtime``: open orders; one order in any state by id; ``openOnly=1`` recent closed."""
    _linear(q)
    n = _limit(q, 20, 50)
    found = _by_id(acct, q)
    if found is None:
        _require_scope(q)
        closed = str(q.get("openOnly", "0")) == "1"
        found = [o for o in reversed(acct.orders.values())
                 if o.final == closed and _scope(acct, q, o.symbol)][:500 if closed else None]
    page, cursor = _paged(q, found, n)
    return _page([acct.order_v5(o) for o in page], cursor)


def order_history(acct: BybitAccount, q: Mapping[str, str]) -> dict[str, Any]:
    """``/v5/order/history``: orders in a final state, newest first, by update time."""
    _linear(q)
    n = _limit(q, 20, 50)
    found = _by_id(acct, q)
    orders = found if found is not None else list(reversed(acct.orders.values()))
    lo, hi = int(q.get("startTime") or 0), int(q.get("endTime") or 1 << 62)
    status = q.get("orderStatus")
    out = [o for o in orders if o.final and lo <= o.updated_ms <= hi and (not status or o.status == status)
           and (found is not None or not q.get("symbol") or o.symbol == q["symbol"])]
    page, cursor = _paged(q, out, n)
    return _page([acct.order_v5(o) for o in page], cursor)


def executions(acct: BybitAccount, q: Mapping[str, str]) -> dict[str, Any]:
    """``/v5/execution/list``: the account's fills, newest first."""
    _linear(q)
    n = _limit(q, 50, 100)
    lo, hi = int(q.get("startTime") or 0), int(q.get("endTime") or 1 << 62)
    out = []
    for e in reversed(acct.executions):
        o = e.order
        if q.get("execType") and q["execType"] != "Trade":
            continue
        if (q.get("symbol") and o.symbol != q["symbol"]) or (q.get("orderId") and o.order_id != q["orderId"]):
            continue
        if q.get("orderLinkId") and o.link_id != q["orderLinkId"]:
            continue
        if lo <= e.time_ms <= hi:
            out.append(e)
    page, cursor = _paged(q, out, n)
    return _page([e.v5(acct.instruments[e.order.symbol]) for e in page], cursor)


def positions(acct: BybitAccount, q: Mapping[str, str]) -> dict[str, Any]:
    """``/v5/position/list``: one symbol's position (even flat), or every open one of a settle coin."""
    if q.get("category") == "inverse":
        return {"category": "inverse", "list": [], "nextPageCursor": ""}
    _linear(q)
    n = _limit(q, 20, 200)
    _require_scope(q)
    if q.get("symbol"):
        acct.instrument(q["symbol"])
        return _page([acct.position_v5(q["symbol"])])
    rows = [acct.position_v5(s) for s, p in acct.positions.items() if p.size and _scope(acct, q, s)]
    return _page(rows[:n])


def wallet(acct: BybitAccount, q: Mapping[str, str]) -> dict[str, Any]:
    if q.get("accountType") != "UNIFIED":
        raise VenueRejected(codes.PARAMS, "accountType only support UNIFIED.")
    w = acct.wallet_v5()
    coins = [c.strip() for c in q.get("coin", "").split(",") if c.strip()]
    if coins:
        w = {**w, "coin": [c for c in w["coin"] if c["coin"] in coins]}
    return {"list": [w]}


def tickers(acct: BybitAccount, q: Mapping[str, str]) -> dict[str, Any]:
    if q.get("category") != "linear":
        return {"category": q.get("category", ""), "list": []}
    symbols = [q["symbol"]] if q.get("symbol") else list(acct.instruments)
    rows = []
    for s in symbols:
        inst = acct.instrument(s)
        b = acct.books.get(s)
        bid = b.bids[0] if b is not None and b.bids else None
        ask = b.asks[0] if b is not None and b.asks else None
        mark = acct.mark(s)
        last = acct.last_trade.get(s) or mark
        px = inst.px
        rows.append({
            "symbol": s, "lastPrice": px(last) if last else "", "indexPrice": px(mark) if mark else "",
            "markPrice": px(mark) if mark else "", "prevPrice24h": px(last) if last else "", "price24hPcnt": "0",
            "highPrice24h": px(last) if last else "", "lowPrice24h": px(last) if last else "",
            "prevPrice1h": px(last) if last else "", "openInterest": "0", "openInterestValue": "0",
            "turnover24h": "0", "volume24h": "0", "fundingRate": "0.0001", "nextFundingTime": "0",
            "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
            "bid1Price": px(bid[0]) if bid else "", "bid1Size": inst.qty(bid[1]) if bid else "",
            "ask1Price": px(ask[0]) if ask else "", "ask1Size": inst.qty(ask[1]) if ask else "", "basis": "",
        })
    return {"category": "linear", "list": rows}


def orderbook(acct: BybitAccount, q: Mapping[str, str], now_ms: int) -> dict[str, Any]:
    inst = acct.instrument(q.get("symbol"))
    n = _limit(q, 25, 500)
    b = acct.books.get(inst.symbol)
    bids = [[inst.px(p), inst.qty(v)] for p, v in (b.bids[:n] if b else [])]
    asks = [[inst.px(p), inst.qty(v)] for p, v in (b.asks[:n] if b else [])]
    seq = b.seq if b else 0
    return {"s": inst.symbol, "b": bids, "a": asks, "ts": now_ms, "u": seq, "seq": seq, "cts": now_ms}


def instruments(acct: BybitAccount, q: Mapping[str, str]) -> dict[str, Any]:
    category = q.get("category", "")
    if category != "linear" or (q.get("status") and q["status"] != "Trading"):
        return {"category": category, "list": [], "nextPageCursor": ""}
    rows = [dict(i.raw) for s, i in acct.instruments.items() if not q.get("symbol") or s == q["symbol"]]
    return {"category": "linear", "list": rows, "nextPageCursor": ""}
