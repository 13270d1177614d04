"""Market data: typed events, the capture reader, the order book, the synthetic generator.

API summary (stable; the services read this):

Events (``tidegate.market.events``), frozen dataclasses, each with ``local_ns``
(our receive time, ns; the clock everything is ordered and windowed on) and
``exch_ns`` (venue time, ns, -1 if the venue sent none) and a ``kind`` string:
  DepthUpdate(local_ns, exch_ns, symbol, first_id, last_id, prev_id, bids, asks)   kind "depth"
      bids/asks: tuple of (price, qty); qty 0 deletes the level
  Trade(local_ns, exch_ns, symbol, trade_id, price, qty, aggressor)                kind "trade"
      aggressor: +1 buyer crossed (lifted the ask), -1 seller crossed (hit the bid)
  BookTicker(local_ns, exch_ns, symbol, update_id, bid_px, bid_qty, ask_px, ask_qty)  kind "ticker"

Sources -> ``MarketFrame`` (columnar; ``frame.n_events``, ``frame.symbol``, ``frame.regime``):
  read_capture(path)                       one Binance capture file (gzip ``<local_ns> <json>`` lines)
  list_captures(dir)                       capture files in a directory, sorted
  generate(seed=, regime=, duration_s=, symbol=, start_ns=)   synthetic, regimes REGIMES
  generate_days(seed=, regimes=REGIMES, duration_s=)          one frame per regime
  iter_events(frame)                       typed events in arrival order (replay)
  frame_from_events(events, symbol=)       the inverse (tests, hand-built books)
  feed_latency_ms(frame)                   offset-corrected local - exchange time

Book (``tidegate.market.book``):
  BookState()                              touch from bookTicker, ladder from diffs
    .on_ticker(ev) -> bool (False: stale update id, ignored)   .on_depth(ev)
    .touch() -> (bid_px, bid_qty, ask_px, ask_qty)   .ready   .mid()
    .depth(side, n) -> [(px, qty)] best-first (side +1 bids, -1 asks)
    .queue_at(side, price) -> qty resting at that price
    .depth_qty(levels=10) -> (bid_qty, ask_qty) of the best levels   .gaps (diff sequence gaps)
  OrderBook                                the bare L2 ladder (set_level, best_bid, levels, qty_between)

Features for these events live in ``tidegate.features`` (``OnlineFeatures``).
"""

from tidegate.market.book import BookState, OrderBook
from tidegate.market.capture import CaptureError, feed_latency_ms, list_captures, read_capture
from tidegate.market.events import BookTicker, DepthUpdate, MarketEvent, Trade
from tidegate.market.frame import MarketFrame, frame_from_events, iter_events
from tidegate.market.synthetic import REGIMES, generate, generate_days

__all__ = ["REGIMES", "BookState", "BookTicker", "CaptureError", "DepthUpdate", "MarketEvent", "MarketFrame",
           "OrderBook", "Trade", "feed_latency_ms", "frame_from_events", "generate", "generate_days",
           "iter_events", "list_captures", "read_capture"]
