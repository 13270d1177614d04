"""The seeded synthetic market: reproducible, regime-dependent, consistent microstructure."""

from __future__ import annotations

import numpy as np
import pytest

from tidegate.market import REGIMES, BookState, generate, generate_days, iter_events


def test_same_seed_same_stream_different_seed_different_stream() -> None:
    a, b = generate(seed=5, duration_s=20), generate(seed=5, duration_s=20)
    c = generate(seed=6, duration_s=20)
    assert np.array_equal(a.tickers.bid_px, b.tickers.bid_px) and np.array_equal(a.trades.qty, b.trades.qty)
    assert np.array_equal(a.depth.level_px, b.depth.level_px)
    assert not (len(a.trades) == len(c.trades) and np.array_equal(a.trades.price, c.trades.price))


def test_books_are_never_crossed_and_trades_print_at_the_touch() -> None:
    frame = generate(seed=11, regime="high-vol", duration_s=30)
    tk, tr = frame.tickers, frame.trades
    assert (tk.ask_px > tk.bid_px).all()
    # in exchange order (seq), a buy aggressor prints at the ask of the last ticker before it, a sell at the bid
    last = np.searchsorted(tk.seq, tr.seq) - 1
    assert (last >= 0).all()
    touch = np.where(tr.aggressor > 0, tk.ask_px[last], tk.bid_px[last])
    assert np.array_equal(tr.price, touch)
    st = BookState()
    for ev in iter_events(frame):
        if ev.kind == "ticker":
            st.on_ticker(ev)  # type: ignore[arg-type]
        elif ev.kind == "depth":
            st.on_depth(ev)  # type: ignore[arg-type]
    assert st.gaps == 0


def _stats(regime: str) -> tuple[float, float, float]:
    f = generate(seed=21, regime=regime, duration_s=120)
    mid = (f.tickers.bid_px + f.tickers.ask_px) / 2
    rets = np.diff(np.log(mid)) * 1e4
    return len(f.trades) / 120.0, float(np.mean(f.tickers.bid_qty)), float(np.sum(np.abs(rets)))


def test_regimes_differ_in_the_documented_direction() -> None:
    normal, event, high = _stats("normal"), _stats("event"), _stats("high-vol")
    assert high[0] > 2 * normal[0]  # trade rate
    assert high[1] < normal[1] / 2  # thinner queues
    assert high[2] > normal[2]  # more mid movement
    assert event[0] > normal[0]  # bursts add trades


def test_latency_is_positive_and_stream_is_in_receive_order() -> None:
    f = generate(seed=2, duration_s=10)
    lat = (f.trades.local_ns - f.trades.exch_ns) / 1e6
    assert (lat > 0).all() and 1.0 < np.median(lat) < 10.0
    times = [e.local_ns for e in iter_events(f)]
    assert times == sorted(times)


def test_bad_arguments_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="regime"):
        generate(regime="calm")
    with pytest.raises(ValueError, match="duration_s"):
        generate(duration_s=0)
    assert [f.regime for f in generate_days(duration_s=5)] == list(REGIMES)
