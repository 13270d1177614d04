"""tau_hold: an entry is kept while its own model scores its side at or above tau_hold (issue 17, item 9).

The executor's core (ExecutionEngine) on hand-built books and trades, and the scorer's hold
marks (each live model's newest score per side); the services carry them over core NATS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tidegate.bus.messages import ApprovedMsg, BookMsg, CandidateMsg, HoldMark, HoldMsg, OrderMsg, TradeMsg
from tidegate.config.schema import AppConfig
from tidegate.execution.engine import Decision, ExecutionEngine
from tidegate.execution.venue import load_offline_exchange, market_rules
from tidegate.services.ai_scorer import hold_marks

REPO = Path(__file__).resolve().parents[1]
SYMBOL = "BTCUSDT"
T0 = 1_000_000_000_000
MS = 1_000_000
BID, ASK = 60000.0, 60000.1


def book(ts: int, seq: int) -> BookMsg:
    return BookMsg(symbol=SYMBOL, ts_ns=ts, recv_ns=ts, seq=seq,
                   bids=[(BID - 0.1 * i, 50.0) for i in range(10)], asks=[(ASK + 0.1 * i, 50.0) for i in range(10)])


def engine(*, entries: bool = True) -> ExecutionEngine:
    cfg = AppConfig.model_validate({"executor": {"warmup_seconds": 0, "hold": {"entries": entries}}})
    ex = load_offline_exchange(REPO / cfg.exchange.markets_file)
    eng = ExecutionEngine(cfg, {SYMBOL: market_rules(ex, SYMBOL)}, started_wall=0.0)
    eng.on_book(book(T0, 1))
    return eng


def signal(n: int, *, side: str = "buy", model: str = "m", ts: int = T0) -> ApprovedMsg:
    return ApprovedMsg(signal_id=f"sig-{n}", symbol=SYMBOL, side=side, ts_ns=ts, recv_ns=ts,  # type: ignore[arg-type]
                       emitted_ns=0, scored_ns=0, price=BID, route="paper", model_id=model, score=0.9,
                       tau_entry=0.5, bucket=1)


def mark(ts: int, score: float, *, side: str = "buy", model: str = "m", tau_hold: float = 0.3) -> HoldMsg:
    return HoldMsg(symbol=SYMBOL, marks=[HoldMark(model_id=model, side=side, ts_ns=ts,  # type: ignore[arg-type]
                                                  score=score, tau_hold=tau_hold)])


def counted(d: Decision, name: str) -> list[dict[str, str]]:
    return [labels for n, labels, _ in d.counts if n == name]


def statuses(d: Decision) -> list[tuple[str, str]]:
    return [(o.client_order_id, o.status) for o in d.orders]


def test_an_entry_rests_while_its_model_holds_and_is_cancelled_when_it_falls_below_tau_hold() -> None:
    eng = engine()
    placed = eng.on_approved(signal(1), now_wall=10.0)
    assert statuses(placed) == [("sig-1-e0", "new")]
    eng.on_book(book(T0 + 10 * MS, 2))          # accepted after the entry latency
    # none of these ends the hold: at tau_hold, another model, the other side, older than the signal
    for m in (mark(T0 + 20 * MS, 0.3), mark(T0 + 20 * MS, 0.1, model="other"),
              mark(T0 + 20 * MS, 0.1, side="sell"), mark(T0 - MS, 0.1)):
        assert not counted(eng.on_hold(m), "hold_exit_total")
    assert "sig-1-e0" in eng.live
    d = eng.on_hold(mark(T0 + 30 * MS, 0.29))
    assert counted(d, "hold_exit_total") == [{"route": "paper", "leg": "entry"}]
    gone = eng.on_book(book(T0 + 50 * MS, 3))   # the cancel lands after the response latency
    assert ("sig-1-e0", "cancelled") in statuses(gone) and "sig-1-e0" not in eng.live
    assert not eng.on_book(book(T0 + 60 * MS, 4)).orders          # and nothing is re-placed


def test_by_default_resting_entries_are_kept_and_only_positions_end_their_hold() -> None:
    assert AppConfig.model_validate({}).executor.hold.entries is False      # and so is config/app.yml
    assert AppConfig.model_validate({}).executor.hold.positions is True
    eng = engine(entries=False)
    eng.on_hold(mark(T0 + 5 * MS, 0.1, side="sell"))
    assert [o.status for o in eng.on_approved(signal(9, side="sell"), now_wall=10.0).orders] == ["new"]
    eng.on_book(book(T0 + 10 * MS, 2))
    assert not counted(eng.on_hold(mark(T0 + 20 * MS, 0.0, side="sell")), "hold_exit_total")
    assert "sig-9-e0" in eng.live
    exit_msg = _filled_long(eng)
    d = eng.on_hold(mark(T0 + 40 * MS, 0.05))
    assert counted(d, "hold_exit_total") == [{"route": "paper", "leg": "exit"}]
    assert eng.live[exit_msg.client_order_id].placed_ns == -1     # its cancel is in flight


def test_a_signal_its_model_has_since_scored_below_tau_hold_is_not_entered() -> None:
    eng = engine()
    eng.on_hold(mark(T0 + 5 * MS, 0.1))                            # the newer view arrived first
    d = eng.on_approved(signal(1, ts=T0), now_wall=10.0)
    assert not d.orders and counted(d, "orders_rejected_total") == [{"route": "paper", "reason": "below_tau_hold"}]
    later = eng.on_approved(signal(2, ts=T0 + 6 * MS), now_wall=10.0)   # a newer signal is entered
    assert [o.status for o in later.orders] == ["new"] and not counted(later, "orders_rejected_total")
    other_side = eng.on_approved(signal(3, side="sell", ts=T0), now_wall=10.0)
    assert [o.status for o in other_side.orders] == ["new"]


def _filled_long(eng: ExecutionEngine) -> OrderMsg:
    """A buy entry filled by a sell that clears the queue ahead of it; returns its resting exit."""
    eng.on_approved(signal(1), now_wall=10.0)
    eng.on_book(book(T0 + 10 * MS, 2))
    d = eng.on_trade(TradeMsg(symbol=SYMBOL, ts_ns=T0 + 20 * MS, recv_ns=T0 + 20 * MS, price=BID, qty=500.0,
                              aggressor="sell"))
    assert d.fills and d.fills[0].client_order_id == "sig-1-e0"
    [exit_msg] = [o for o in d.orders if o.reduce_only]
    return exit_msg


def test_a_position_whose_model_falls_below_tau_hold_moves_its_exit_to_the_touch_once() -> None:
    eng = engine()
    exit_msg = _filled_long(eng)
    assert exit_msg.side == "sell" and exit_msg.price > ASK        # take-profit exit_ticks above the entry
    assert not counted(eng.on_hold(mark(T0 + 30 * MS, 0.5)), "hold_exit_total")   # still held
    d = eng.on_hold(mark(T0 + 40 * MS, 0.05))
    assert counted(d, "hold_exit_total") == [{"route": "paper", "leg": "exit"}]
    moved = eng.on_book(book(T0 + 60 * MS, 3))
    assert (exit_msg.client_order_id, "cancelled") in statuses(moved)
    [requote] = [o for o in moved.orders if o.status == "new"]
    assert requote.reduce_only and requote.post_only and requote.side == "sell" and requote.price == ASK
    assert requote.bucket == "high"
    # a further low score does not chase the touch: the exit already rests there until exit_ttl
    assert not counted(eng.on_hold(mark(T0 + 70 * MS, 0.01)), "hold_exit_total")


def test_a_sell_entrys_hold_is_judged_on_the_sell_side_scores() -> None:
    eng = engine()
    eng.on_approved(signal(1, side="sell"), now_wall=10.0)
    eng.on_book(book(T0 + 10 * MS, 2))
    assert not counted(eng.on_hold(mark(T0 + 20 * MS, 0.0, side="buy")), "hold_exit_total")
    assert counted(eng.on_hold(mark(T0 + 20 * MS, 0.0, side="sell")), "hold_exit_total") == \
        [{"route": "paper", "leg": "entry"}]


def _candidate(n: int, side: str, ts: int, symbol: str = SYMBOL) -> CandidateMsg:
    return CandidateMsg(signal_id=f"c-{n}", symbol=symbol, side=side, ts_ns=ts, recv_ns=ts,  # type: ignore[arg-type]
                        emitted_ns=ts, price=BID, features=[0.0], schema_hash="h")


def test_hold_marks_carry_each_live_models_score_of_the_newest_candidate_per_side() -> None:
    batch = [_candidate(0, "buy", T0 + 3), _candidate(1, "buy", T0 + 1), _candidate(2, "sell", T0 + 2),
             _candidate(3, "buy", T0 + 5, symbol="ETHUSDT")]
    active = np.array([0.1, 0.2, 0.3, 0.4])
    cand = np.array([0.5, 0.6, 0.7, 0.8])
    out = {h.symbol: {(m.model_id, m.side): (m.ts_ns, m.score, m.tau_hold) for m in h.marks}
           for h in hold_marks(batch, [("a", active, 0.15), ("c", cand, 0.25)])}
    assert out == {
        SYMBOL: {("a", "buy"): (T0 + 3, 0.1, 0.15), ("c", "buy"): (T0 + 3, 0.5, 0.25),
                 ("a", "sell"): (T0 + 2, 0.3, 0.15), ("c", "sell"): (T0 + 2, 0.7, 0.25)},
        "ETHUSDT": {("a", "buy"): (T0 + 5, 0.4, 0.15), ("c", "buy"): (T0 + 5, 0.8, 0.25)},
    }
    for h in hold_marks(batch, [("a", active, 0.15)]):     # the wire format validates
        assert HoldMsg.model_validate_json(h.to_bytes()) == h
