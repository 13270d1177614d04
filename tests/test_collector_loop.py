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
