"""Order book rebuild from diffs and the ticker-touch overlay, on hand-built books and the real capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidegate.market import BookState, OrderBook, iter_events, read_capture
from tidegate.market.events import BookTicker, DepthUpdate

CAPTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "capture"


def _diff(bids: list[tuple[float, float]], asks: list[tuple[float, float]], first: int, last: int,
          prev: int = -1, t: int = 0) -> DepthUpdate:
    return DepthUpdate(t, t, "X", first, last, prev, tuple(bids), tuple(asks))


def test_diffs_insert_replace_and_delete_levels() -> None:
    book = OrderBook()
    book.apply([1, 1, -1, -1], [100.0, 99.0, 101.0, 102.0], [1.0, 2.0, 3.0, 4.0])
    assert book.best_bid() == (100.0, 1.0) and book.best_ask() == (101.0, 3.0)
    book.apply([1, -1], [100.0, 101.0], [0.0, 5.0])  # delete best bid, replace best ask
    assert book.best_bid() == (99.0, 2.0) and book.best_ask() == (101.0, 5.0)
    assert book.levels(-1, 5) == [(101.0, 5.0), (102.0, 4.0)]
    assert book.qty_between(-1, 101.0, 101.5) == 5.0
    book.apply([1], [42.0], [0.0])  # deleting an unknown level is a no-op
    assert len(book) == 3


def test_ticker_is_the_touch_and_hides_stale_ladder_levels() -> None:
    st = BookState()
    st.on_depth(_diff([(100.0, 1.0), (99.9, 2.0), (99.8, 3.0)], [(100.1, 1.0), (100.2, 2.0)], 1, 5))
    assert st.touch() == (100.0, 1.0, 100.1, 1.0)  # ladder fallback before any ticker
    assert st.on_ticker(BookTicker(1, 1, "X", 10, 99.9, 7.0, 100.0, 0.5))
    assert st.touch() == (99.9, 7.0, 100.0, 0.5)
    # the ladder still holds the stale 100.0 bid: depth() must not show it above the ticker bid
    assert st.depth(1, 3) == [(99.9, 7.0), (99.8, 3.0)]
    assert st.depth(-1, 2) == [(100.0, 0.5), (100.1, 1.0)]
    assert st.queue_at(1, 99.9) == 7.0 and st.queue_at(1, 99.8) == 3.0 and st.queue_at(-1, 105.0) == 0.0
    # an older ticker update id is stale and ignored
    assert not st.on_ticker(BookTicker(2, 2, "X", 9, 50.0, 1.0, 51.0, 1.0))
    assert st.touch()[0] == 99.9


def test_depth_qty_sums_the_best_levels_behind_the_touch_only() -> None:
    st = BookState()
    st.on_ticker(BookTicker(0, 0, "X", 1, 100.0, 1.0, 100.02, 1.0))
    bids = [(100.05, 99.0)] + [(100.0 - 0.01 * k, 1.0 + k) for k in range(12)]  # 100.05 is stale (above the bid)
    asks = [(100.02 + 0.01 * k, 2.0) for k in range(12)]
    st.on_depth(_diff(bids, asks, 2, 3))
    assert st.bid_band_qty == pytest.approx(sum(1.0 + k for k in range(10)))
    assert st.ask_band_qty == pytest.approx(20.0)
    assert st.depth_qty(levels=2) == (pytest.approx(3.0), pytest.approx(4.0))


def test_sequence_gaps_are_counted_for_futures_and_spot_chains() -> None:
    fut = BookState()
    fut.on_depth(_diff([], [], 10, 12, prev=9))
    fut.on_depth(_diff([], [], 13, 15, prev=12))
    assert fut.gaps == 0
    fut.on_depth(_diff([], [], 20, 22, prev=18))
    assert fut.gaps == 1
    spot = BookState()
    spot.on_depth(_diff([], [], 10, 12))
    spot.on_depth(_diff([], [], 13, 15))
    spot.on_depth(_diff([], [], 17, 19))
    assert spot.gaps == 1


@pytest.mark.skipif(not (CAPTURE / "binance_usdm_btcusdt_20240808.gz").is_file(),
                    reason=f"real capture not present at {CAPTURE.resolve()}")
def test_rebuilt_book_on_the_real_capture_is_never_crossed_and_chains_its_diffs() -> None:
    frame = read_capture(CAPTURE / "binance_usdm_btcusdt_20240808.gz")
    st = BookState()
    crossed = 0
    for ev in iter_events(frame):
        if ev.kind == "ticker":
            st.on_ticker(ev)  # type: ignore[arg-type]
        elif ev.kind == "depth":
            st.on_depth(ev)  # type: ignore[arg-type]
            bids, asks = st.depth(1, 5), st.depth(-1, 5)
            if st.n_tickers and bids and asks and bids[0][0] >= asks[0][0]:
                crossed += 1
    assert crossed == 0
    assert st.gaps == 0  # USD-M diffs chain through pu
    assert len(st.book) > 200
