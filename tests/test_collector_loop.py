"""A looped replay must look like one continuous market to every consumer that keeps a book."""

from __future__ import annotations

from tidegate.bus.market_messages import MarketMessages
from tidegate.bus.messages import BookMsg
from tidegate.market.book import BookState
from tidegate.market.events import BookTicker, DepthUpdate
from tidegate.market.frame import iter_events
from tidegate.market.synthetic import generate
from tidegate.services.collector import clearing_message, loop_shift, max_update_id


def _consume(book: BookState, msgs: list[BookMsg]) -> None:
    for m in msgs:
        ev = m.to_event()
        if isinstance(ev, BookTicker):
            book.on_ticker(ev)
        elif isinstance(ev, DepthUpdate):
            book.on_depth(ev)


def _loop(frame, offset_ns: int, id_offset: int) -> tuple[list[BookMsg], MarketMessages]:  # type: ignore[no-untyped-def]
    conv = MarketMessages("BTCUSDT", 10)
    out = []
    for ev in iter_events(frame):
        msg = conv.convert(ev)
        if isinstance(msg, BookMsg):
            out.append(loop_shift(msg, offset_ns, id_offset) if offset_ns or id_offset else msg)
    return out, conv


def test_second_loop_moves_the_consumers_touch_and_starts_from_an_empty_ladder() -> None:
    frame = generate(symbol="BTCUSDT", duration_s=20.0, seed=5)
    first, conv1 = _loop(frame, 0, 0)
    span = frame.time_range_ns()[1] - frame.time_range_ns()[0] + 1_000_000_000
    ids = max_update_id(frame) + 1
    second, _ = _loop(frame, span, ids)
    consumer = BookState()
    _consume(consumer, first)
    end_of_first = consumer.touch()
    _consume(consumer, [clearing_message(conv1, second[0].recv_ns - 1)])
    assert not consumer.book.bids and not consumer.book.asks          # no stale level of the old loop
    head = second[: len(second) // 2]
    _consume(consumer, head)
    fresh = BookState()
    _consume(fresh, [m.model_copy() for m in _loop(frame, 0, 0)[0][: len(head)]])
    # the consumer now holds exactly what a fresh consumer of the first half of the recording holds
    assert consumer.touch() == fresh.touch() != end_of_first
    assert consumer.book.bids == fresh.book.bids and consumer.book.asks == fresh.book.asks
    # without the id shift every ticker of the second loop is refused: the touch would freeze
    frozen = BookState()
    _consume(frozen, first)
    _consume(frozen, _loop(frame, span, 0)[0][: len(head)])
    assert frozen.touch() == end_of_first


def test_a_looped_replay_continues_at_the_price_where_the_last_loop_ended() -> None:
    """Without the price shift every loop began with the recording's whole drift as one jump (23 bps on
    the capture): resting paper orders on the wrong side filled at once and open trades' markouts moved
    together. With it, loop 2 starts within a tick of loop 1's last mid, on the tick grid, and the
    clearing message still empties a consumer that saw shifted prices."""
    from tidegate.services.collector import first_mid, loop_price_offset, touch_mid

    tick = 0.1
    frame = generate(symbol="BTCUSDT", duration_s=120.0, seed=11, regime="high-vol")
    span = frame.time_range_ns()[1] - frame.time_range_ns()[0] + 1_000_000_000
    ids = max_update_id(frame) + 1
    first, conv1 = _loop(frame, 0, 0)
    start, end = first_mid(frame, "BTCUSDT", 10, start_offset_s=0.0), touch_mid(conv1)
    assert start is not None and end is not None and abs(end - start) > 5 * tick   # the recording drifts
    offset = loop_price_offset(end, start, tick)
    assert abs(offset - (end - start)) <= tick / 2 + 1e-9
    conv2 = MarketMessages("BTCUSDT", 10)
    second = [loop_shift(m, span, ids, offset) for ev in iter_events(frame)
              if isinstance(m := conv2.convert(ev), BookMsg)]
    consumer = BookState()
    _consume(consumer, first)
    _consume(consumer, [clearing_message(conv1, second[0].recv_ns - 1)])
    # the touch is the old loop's last ticker until loop 2's first one
    first_ticker = next(i for i, m in enumerate(second) if m.kind == "ticker")
    _consume(consumer, second[: first_ticker + 1])
    bid, _, ask, _ = consumer.touch()
    assert abs((bid + ask) / 2 - end) <= tick / 2 + 1e-6   # no jump: loop 2 opens where loop 1 closed
    _consume(consumer, second[first_ticker + 1: 50])
    for price in (*consumer.book.bids, *consumer.book.asks):
        assert abs(price / tick - round(price / tick)) < 1e-6                # still on the tick grid
    # loop 3 after loop 2: the clearing message names loop 2's shifted prices
    _consume(consumer, second[50:])
    _consume(consumer, [clearing_message(conv2, second[-1].recv_ns + 1, offset)])
    assert not consumer.book.bids and not consumer.book.asks
