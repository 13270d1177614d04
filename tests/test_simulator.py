"""The paper exchange on hand-built books: every rule of exchange.py, with numbers."""

from __future__ import annotations

import pytest

from tidegate.execution.simulator import (
    ConstantLatency,
    OptimisticQueue,
    OrderRequest,
    PaperExchange,
    ProbQueue,
    RiskAverseQueue,
)

MS = 1_000_000


def book(ex: PaperExchange, t: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]]):
    return ex.on_book(t, bids, asks, max(p for p, q in bids if q > 0) if any(q > 0 for _, q in bids) else None,
                      min(p for p, q in asks if q > 0) if any(q > 0 for _, q in asks) else None)


def make(queue=None, latency=None) -> PaperExchange:
    ex = PaperExchange(queue=queue or RiskAverseQueue(), latency=latency or ConstantLatency(0, 0),
                       maker_fee=0.0001, taker_fee=0.0006)
    book(ex, 0, [(100.0, 5.0), (99.9, 3.0)], [(100.1, 4.0), (100.2, 2.0)])
    return ex


def kinds(reports):
    return [r.kind for r in reports]


def test_post_only_buy_that_would_cross_is_rejected_not_filled():
    ex = make()
    ex.submit(OrderRequest("o1", "buy", 100.1, 1.0), 1)
    reps = ex.advance(1)
    assert kinds(reps) == ["rejected"] and reps[0].reason == "post_only_would_cross"
    assert ex.open_orders() == [] and ex.position == 0.0
    ex.submit(OrderRequest("o2", "sell", 100.0, 1.0), 2)
    assert ex.advance(2)[0].reason == "post_only_would_cross"


def test_non_post_only_crossing_order_takes_as_taker_with_taker_fee():
    ex = make()
    ex.submit(OrderRequest("t1", "buy", 100.2, 0.5, post_only=False), 1)
    reps = ex.advance(1)
    assert kinds(reps) == ["accepted", "fill"]
    fill = reps[1]
    assert fill.price == 100.1 and fill.liquidity == "taker"
    assert fill.fee == pytest.approx(0.5 * 100.1 * 0.0006)


def test_no_fill_before_the_quantity_ahead_is_consumed_then_partial_then_full():
    ex = make()
    ex.submit(OrderRequest("b1", "buy", 100.0, 2.0), 1)
    assert kinds(ex.advance(1)) == ["accepted"]
    assert ex.queue_ahead("b1") == 5.0
    assert ex.on_trade(2, 100.0, 3.0, "sell") == []        # 5 ahead -> 2 ahead, nothing reaches us
    assert ex.queue_ahead("b1") == 2.0
    assert ex.on_trade(3, 100.0, 2.0, "sell") == []        # exactly consumed, still nothing for us
    reps = ex.on_trade(4, 100.0, 0.5, "sell")              # partial fill, up to the trade size
    assert kinds(reps) == ["fill"] and reps[0].qty == 0.5 and reps[0].remaining == 1.5
    assert reps[0].fee == pytest.approx(0.5 * 100.0 * 0.0001) and reps[0].liquidity == "maker"
    reps = ex.on_trade(5, 100.0, 4.0, "sell")
    assert reps[0].qty == 1.5 and reps[0].remaining == 0.0
    assert ex.open_orders() == [] and ex.position == pytest.approx(2.0)


def test_buy_aggressor_trades_do_not_fill_resting_buys():
    ex = make()
    ex.submit(OrderRequest("b1", "buy", 100.0, 1.0), 1)
    ex.advance(1)
    assert ex.on_trade(2, 100.0, 50.0, "buy") == []
    assert ex.queue_ahead("b1") == 5.0


def test_trade_through_the_price_fills_the_remainder():
    ex = make()
    ex.submit(OrderRequest("b1", "buy", 100.0, 1.0), 1)
    ex.advance(1)
    reps = ex.on_trade(2, 99.9, 0.01, "sell")
    assert reps[0].qty == 1.0 and reps[0].price == 100.0


def test_opposite_best_moving_through_fills_the_order():
    ex = make()
    ex.submit(OrderRequest("s1", "sell", 100.2, 1.0), 1)
    ex.advance(1)
    reps = book(ex, 2, [(100.2, 1.0)], [(100.1, 0.0), (100.3, 1.0)])
    assert kinds(reps) == ["fill"] and reps[0].price == 100.2


def test_level_deletion_clears_the_queue():
    ex = make()
    ex.submit(OrderRequest("b1", "buy", 99.9, 1.0), 1)
    ex.advance(1)
    assert ex.queue_ahead("b1") == 3.0
    book(ex, 2, [(99.9, 0.0)], [])
    assert ex.queue_ahead("b1") == 0.0
    reps = ex.on_trade(3, 99.9, 0.4, "sell")
    assert reps[0].qty == 0.4


def test_level_shrink_risk_averse_clips_prob_advances_optimistic_has_no_queue():
    ra = make(RiskAverseQueue())
    ra.submit(OrderRequest("b", "buy", 100.0, 1.0), 1)
    ra.advance(1)
    book(ra, 2, [(100.0, 4.0)], [])                          # 1 cancelled: assumed behind us
    assert ra.queue_ahead("b") == 4.0
    book(ra, 3, [(100.0, 2.5)], [])                          # level smaller than our queue: clipped
    assert ra.queue_ahead("b") == 2.5

    pq = make(ProbQueue(power=1.0))
    pq.submit(OrderRequest("b", "buy", 100.0, 1.0), 1)
    pq.advance(1)
    book(pq, 2, [(100.0, 8.0)], [])                          # 3 joined behind: front 5, back 3
    book(pq, 3, [(100.0, 6.0)], [])                          # 2 cancelled; share ahead = front 5 / level 8
    assert pq.queue_ahead("b") == pytest.approx(5.0 - 2.0 * 5.0 / 8.0)
    p2 = make(ProbQueue(power=2.0))                          # the same with f(x) = x^2: ahead 25 / (25 + 9)
    p2.submit(OrderRequest("b", "buy", 100.0, 1.0), 1)
    p2.advance(1)
    book(p2, 2, [(100.0, 8.0)], [])
    book(p2, 3, [(100.0, 6.0)], [])
    assert p2.queue_ahead("b") == pytest.approx(5.0 - 2.0 * 25.0 / 34.0)
    book(p2, 4, [(100.0, 30.0)], [])                         # 24 join behind us
    book(p2, 5, [(100.0, 2.0)], [])                          # 28 cancelled, more than the ~26.5 behind us:
    assert p2.queue_ahead("b") == pytest.approx(2.0)         # the rest came from ahead (the level is left)

    op = make(OptimisticQueue())
    op.submit(OrderRequest("b", "buy", 100.0, 1.0), 1)
    op.advance(1)
    assert op.queue_ahead("b") == 0.0
    assert op.on_trade(2, 100.0, 0.3, "sell")[0].qty == 0.3


def test_trade_then_depth_update_is_not_counted_twice_by_the_prob_model():
    pq = make(ProbQueue(power=2.0))
    pq.submit(OrderRequest("b", "buy", 100.0, 1.0), 1)
    pq.advance(1)
    pq.on_trade(2, 100.0, 2.0, "sell")                       # ahead 5 -> 3
    book(pq, 3, [(100.0, 3.0)], [])                          # the same 2 leave the level: no cancel
    assert pq.queue_ahead("b") == 3.0


def test_modify_goes_to_the_back_of_the_queue():
    ex = make()
    ex.submit(OrderRequest("b1", "buy", 100.0, 1.0), 1)
    ex.advance(1)
    ex.on_trade(2, 100.0, 4.0, "sell")
    assert ex.queue_ahead("b1") == 1.0
    book(ex, 3, [(100.0, 6.0)], [])
    ex.modify("b1", 4, qty=2.0)
    reps = ex.advance(4)
    assert kinds(reps) == ["modified"]
    assert ex.queue_ahead("b1") == 6.0                       # back of the (now 6-deep) level


def test_latency_delays_arrival_and_responses():
    ex = make(latency=ConstantLatency(entry_ms=5, response_ms=3))
    ex.submit(OrderRequest("b1", "buy", 100.0, 1.0), 10 * MS)
    assert ex.advance(14 * MS) == []                         # still in flight
    book(ex, 14 * MS, [(100.0, 9.0)], [])                    # the level grew before we arrived
    reps = ex.advance(15 * MS)
    assert reps[0].kind == "accepted" and reps[0].ts_ns == 15 * MS and reps[0].visible_ns == 18 * MS
    assert ex.queue_ahead("b1") == 9.0
    ex.cancel("b1", 16 * MS)
    reps = ex.on_trade(21 * MS, 100.0, 20.0, "sell")         # cancel arrives at 21 ms, before the trade
    assert kinds(reps) == ["cancelled"]


def test_reduce_only_rejected_when_it_would_increase_and_clipped_to_position():
    ex = make()
    ex.submit(OrderRequest("x", "sell", 100.3, 1.0, reduce_only=True), 1)
    assert ex.advance(1)[0].reason == "reduce_only_would_increase"
    ex.submit(OrderRequest("b", "buy", 100.0, 0.4), 2)
    ex.advance(2)
    ex.on_trade(3, 99.9, 1.0, "sell")                        # through: long 0.4
    ex.submit(OrderRequest("x2", "sell", 100.3, 1.0, reduce_only=True), 4)
    reps = ex.advance(4)
    assert reps[0].kind == "accepted" and reps[0].qty == pytest.approx(0.4)


def test_duplicate_client_order_id_is_rejected():
    ex = make()
    ex.submit(OrderRequest("b1", "buy", 100.0, 1.0), 1)
    ex.submit(OrderRequest("b1", "buy", 99.9, 1.0), 1)
    assert kinds(ex.advance(1)) == ["accepted", "rejected"]
