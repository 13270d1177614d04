"""Market events → bus messages: the collector's one transformation, reusable by tests and benchmarks.

A ``MarketMessages`` keeps the book (tidegate.market.book.BookState) and turns
each typed market event into the message the collector publishes:

- a depth diff → ``BookMsg`` with the diff as ``*_changes`` and the top levels after it;
- a book ticker → ``BookMsg`` whose changes are the touch levels (the ticker is the
  freshest size at the touch, so the simulator's queue sees it);
- a trade → ``TradeMsg`` (aggressor from Binance's ``m`` flag, via the event).

Every event is published, even before the book has a valid touch (its top
levels are then partial or empty), so that a consumer rebuilding features from
the messages sees the same event stream as the training pipeline.
``ts_ns`` is the venue's time when it sent one, else the receive time.
"""

from __future__ import annotations

from tidegate.bus.messages import BookMsg, TradeMsg
from tidegate.market.book import BookState
from tidegate.market.events import BookTicker, DepthUpdate, MarketEvent, Trade


class MarketMessages:
    def __init__(self, symbol: str, levels: int = 10):
        self.symbol = symbol
        self.levels = levels
        self.book = BookState()
        self.seq = 0

    def _book_msg(self, ev: DepthUpdate | BookTicker, bid_changes: list[tuple[float, float]],
                  ask_changes: list[tuple[float, float]]) -> BookMsg:
        self.seq += 1
        if isinstance(ev, DepthUpdate):
            kind, first, last, prev = "depth", ev.first_id, ev.last_id, ev.prev_id
        else:
            kind, first, last, prev = "ticker", ev.update_id, ev.update_id, -1
        return BookMsg.model_construct(
            symbol=self.symbol, kind=kind, ts_ns=ev.exch_ns if ev.exch_ns > 0 else ev.local_ns,
            recv_ns=ev.local_ns, seq=self.seq, first_id=first, last_id=last, prev_id=prev,
            bids=self.book.depth(1, self.levels), asks=self.book.depth(-1, self.levels),
            bid_changes=bid_changes, ask_changes=ask_changes)

    def convert(self, ev: MarketEvent) -> BookMsg | TradeMsg | None:
        if isinstance(ev, Trade):
            return TradeMsg.model_construct(symbol=self.symbol, ts_ns=ev.exch_ns if ev.exch_ns > 0 else ev.local_ns,
                            recv_ns=ev.local_ns, price=ev.price, qty=ev.qty,
                            aggressor="buy" if ev.aggressor > 0 else "sell", trade_id=ev.trade_id)
        if isinstance(ev, DepthUpdate):
            self.book.on_depth(ev)
            return self._book_msg(ev, list(ev.bids), list(ev.asks))
        if self.book.on_ticker(ev):
            return self._book_msg(ev, [(ev.bid_px, ev.bid_qty)], [(ev.ask_px, ev.ask_qty)])
        return None
