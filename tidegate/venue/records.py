"""The account's state as plain records, and their Bybit v5 JSON shapes.

One shape per record serves both REST and the private stream: Bybit's ``order``
topic carries the same fields as ``/v5/order/realtime``, ``execution`` the same as
``/v5/execution/list``, ``position`` as ``/v5/position/list``. Building each shape
once keeps the two paths from drifting apart, which is what the executor's
catch-up after a reconnect relies on (REST must agree with what the stream said).

Fields ccxt reads are filled with real values; the rest are present with the
venue's neutral values ("" / "0") so that a client that indexes them does not break.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tidegate.venue.codes import NO_ERROR
from tidegate.venue.instruments import Instrument, num

FINAL = frozenset({"Filled", "Cancelled", "Rejected", "PartiallyFilledCanceled", "Deactivated"})
MMR = 0.005  # maintenance-margin rate of the first risk tier, for liqPrice and positionMM


@dataclass
class VenueOrder:
    order_id: str
    link_id: str
    symbol: str
    side: str            # "Buy" | "Sell"
    order_type: str      # "Limit" | "Market"
    tif: str             # "GTC" | "PostOnly" | "IOC"
    price: float
    qty: float
    reduce_only: bool
    created_ms: int
    updated_ms: int
    status: str = "New"
    cum_qty: float = 0.0
    cum_value: float = 0.0
    cum_fee: float = 0.0
    reject_reason: str = NO_ERROR
    cancel_type: str = "UNKNOWN"

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def leaves(self) -> float:
        return 0.0 if self.final else max(0.0, self.qty - self.cum_qty)

    def v5(self, inst: Instrument) -> dict[str, Any]:
        leaves = self.leaves
        avg = self.cum_value / self.cum_qty if self.cum_qty > 0 else 0.0
        return {
            "orderId": self.order_id, "orderLinkId": self.link_id, "blockTradeId": "", "symbol": self.symbol,
            "price": inst.px(self.price), "qty": inst.qty(self.qty), "side": self.side, "isLeverage": "",
            "positionIdx": 0, "orderStatus": self.status, "createType": "CreateByUser",
            "cancelType": self.cancel_type, "rejectReason": self.reject_reason,
            "avgPrice": inst.px(avg) if self.cum_qty > 0 else "", "leavesQty": inst.qty(leaves),
            "leavesValue": num(leaves * self.price), "cumExecQty": inst.qty(self.cum_qty),
            "cumExecValue": num(self.cum_value), "cumExecFee": num(self.cum_fee),
            "cumFeeDetail": {inst.settle: num(self.cum_fee)} if self.cum_qty > 0 else {},
            "timeInForce": self.tif, "orderType": self.order_type, "stopOrderType": "", "orderIv": "",
            "marketUnit": "", "triggerPrice": "", "takeProfit": "", "stopLoss": "", "tpslMode": "",
            "ocoTriggerBy": "", "tpLimitPrice": "", "slLimitPrice": "", "tpTriggerBy": "", "slTriggerBy": "",
            "triggerDirection": 0, "triggerBy": "", "lastPriceOnCreated": "", "reduceOnly": self.reduce_only,
            "closeOnTrigger": False, "placeType": "", "smpType": "None", "smpGroup": 0, "smpOrderId": "",
            "createdTime": str(self.created_ms), "updatedTime": str(self.updated_ms), "category": "linear",
        }


@dataclass
class PositionState:
    symbol: str
    size: float = 0.0          # signed: > 0 long, < 0 short
    avg: float = 0.0
    cum_realised: float = 0.0  # fees included, as Bybit counts them
    cur_realised: float = 0.0  # since the position was opened
    created_ms: int = 0
    updated_ms: int = 0
    seq: int = 0

    def apply_fill(self, signed_qty: float, price: float, fee: float, now_ms: int) -> float:
        """Book a fill; return the realised PnL of the part that closed (fees excluded)."""
        realised = 0.0
        s = self.size
        if abs(s) < 1e-12 or (s > 0) == (signed_qty > 0):
            total = abs(s) + abs(signed_qty)
            self.avg = (abs(s) * self.avg + abs(signed_qty) * price) / total
            if abs(s) < 1e-12:
                self.created_ms, self.cur_realised = now_ms, 0.0
            self.size = s + signed_qty
        else:
            closed = min(abs(signed_qty), abs(s))
            realised = closed * (price - self.avg) * (1.0 if s > 0 else -1.0)
            self.size = s + signed_qty
            if abs(self.size) < 1e-12:
                self.size, self.avg = 0.0, 0.0
            elif (self.size > 0) != (s > 0):   # flipped: the rest opens at the fill price
                self.avg, self.created_ms, self.cur_realised = price, now_ms, 0.0
        self.cum_realised += realised - fee
        self.cur_realised += realised - fee
        self.updated_ms, self.seq = now_ms, self.seq + 1
        return realised

    def v5(self, inst: Instrument, *, mark: float, leverage: float, wallet: float) -> dict[str, Any]:
        size = abs(self.size)
        value = size * self.avg
        upnl = self.size * (mark - self.avg) if size else 0.0
        liq = ""
        if size:   # cross margin, this position alone: equity meets maintenance margin
            if self.size > 0:
                p = (size * self.avg - wallet) / (size * (1.0 - MMR))
            else:
                p = (wallet + size * self.avg) / (size * (1.0 + MMR))
            liq = inst.px(max(p, 0.0)) if p > 0 else ""
        return {
            "positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": self.symbol,
            "side": ("Buy" if self.size > 0 else "Sell") if size else "", "size": inst.qty(size),
            "avgPrice": inst.px(self.avg) if size else "0", "positionValue": num(value) if size else "",
            "tradeMode": 0, "positionStatus": "Normal", "autoAddMargin": 0, "adlRankIndicator": 1 if size else 0,
            "leverage": num(leverage), "positionBalance": num(value / leverage) if size else "0",
            "markPrice": inst.px(mark) if mark > 0 else "", "liqPrice": liq, "bustPrice": "",
            "positionMM": num(value * MMR), "positionIM": num(value / leverage), "tpslMode": "Full",
            "takeProfit": "0", "stopLoss": "0", "trailingStop": "0", "unrealisedPnl": num(upnl),
            "curRealisedPnl": num(self.cur_realised), "cumRealisedPnl": num(self.cum_realised),
            "sessionAvgPrice": "", "isReduceOnly": False, "mmrSysUpdatedTime": "", "leverageSysUpdatedTime": "",
            "createdTime": str(self.created_ms), "updatedTime": str(self.updated_ms), "seq": self.seq,
            "category": "linear",
        }


@dataclass
class Execution:
    exec_id: str
    order: VenueOrder
    price: float
    qty: float
    fee: float
    fee_rate: float
    is_maker: bool
    leaves: float
    closed: float
    mark: float
    time_ms: int
    seq: int
    extra: dict[str, Any] = field(default_factory=dict)

    def v5(self, inst: Instrument) -> dict[str, Any]:
        o = self.order
        return {
            "symbol": o.symbol, "orderType": o.order_type, "underlyingPrice": "", "orderLinkId": o.link_id,
            "side": o.side, "indexPrice": inst.px(self.mark), "orderId": o.order_id, "stopOrderType": "UNKNOWN",
            "leavesQty": inst.qty(self.leaves), "execTime": str(self.time_ms), "feeCurrency": "",
            "isMaker": self.is_maker, "execFee": num(self.fee), "feeRate": num(self.fee_rate),
            "execId": self.exec_id, "tradeIv": "", "blockTradeId": "", "markPrice": inst.px(self.mark),
            "execPrice": inst.px(self.price), "markIv": "", "orderQty": inst.qty(o.qty),
            "orderPrice": inst.px(o.price), "execValue": num(self.qty * self.price), "execType": "Trade",
            "execQty": inst.qty(self.qty), "closedSize": inst.qty(self.closed), "seq": self.seq,
            "isLeverage": "", "createType": "CreateByUser", "category": "linear",
        }
