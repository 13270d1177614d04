"""Fill-model calibration recovers a known queue parameter; the scenario script writes its report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tidegate.bus.market_messages import MarketMessages
from tidegate.bus.messages import BookMsg, FillMsg, OrderMsg
from tidegate.execution.calibration import PlacedOrder, calibrate, replay_orders
from tidegate.execution.simulator.queue import ProbQueue
from tidegate.market.frame import iter_events
from tidegate.market.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
TRUE_POWER = 3.0


def history(queue: object | None = None) -> tuple[list, list[OrderMsg], list[FillMsg]]:  # type: ignore[type-arg]
    """Synthetic market; touch quotes every 200 ms, cancelled after 2 s; fills from ``queue`` (ProbQueue(3))."""
    conv = MarketMessages("BTCUSDT")
    market = [m for m in (conv.convert(ev) for ev in iter_events(generate(duration_s=60, seed=3))) if m is not None]
    placed, last = [], 0
    for m in market:
        if isinstance(m, BookMsg) and m.bids and m.asks and m.recv_ns - last >= 200_000_000:
            last = m.recv_ns
            n = len(placed)
            side, px = ("buy", m.bids[0][0]) if n % 2 == 0 else ("sell", m.asks[0][0])
            placed.append(PlacedOrder(f"o{n}", side, px, 0.01, m.recv_ns, m.recv_ns + 2_000_000_000))
    delays = replay_orders(market, placed, queue or ProbQueue(TRUE_POWER))  # type: ignore[arg-type]
    orders, fills = [], []
    for p in placed:
        base = dict(client_order_id=p.coid, signal_id=p.coid, symbol="BTCUSDT", route="paper", venue="paper",
                    side=p.side, price=p.price, qty=p.qty)
        orders.append(OrderMsg(**base, status="new", ts_ns=p.placed_ns))
        if p.coid in delays:
            fills.append(FillMsg(fill_id=f"{p.coid}-f1", client_order_id=p.coid, signal_id=p.coid, symbol="BTCUSDT",
                                 route="paper", venue="paper", side=p.side, price=p.price, qty=p.qty, fee=0.0,
                                 fee_rate=0.0, liquidity="maker", ts_ns=p.placed_ns + int(delays[p.coid] * 1e9)))
        else:
            orders.append(OrderMsg(**base, status="cancelled", ts_ns=p.cancel_ns))
    return market, orders, fills


def test_calibration_reproduces_the_fill_curve_that_produced_the_fills() -> None:
    market, orders, fills = history()
    result = calibrate(market, orders, fills)
    assert result.orders == len([o for o in orders if o.status == "new"]) > 200
    assert 0.05 < result.empirical[-1] < 0.95
    # the power that generated the fills reproduces their curve exactly; on this market several
    # powers do (a new order starts at the back of its level, so little is ever behind it), and
    # the tie goes to the one nearest the default 2.0
    assert result.errors[f"prob:{TRUE_POWER:g}"] == 0.0
    assert result.errors[f"prob:{result.best_power:g}"] == 0.0
    assert result.curves[f"prob:{result.best_power:g}"] == result.empirical
    # the optimistic baseline fills at least as much, the risk-averse one at most as much, and differ
    for opt, ra, emp in zip(result.curves["optimistic"], result.curves["risk_averse"], result.empirical, strict=True):
        assert ra <= emp <= opt
    assert result.curves["optimistic"] != result.empirical != result.curves["risk_averse"]
    from tidegate.config.schema import AppConfig

    cfg = AppConfig.model_validate(result.config())
    assert (cfg.executor.simulator.queue_model, cfg.executor.simulator.prob_power) == ("prob", result.best_power)


def test_calibration_picks_the_power_with_the_least_error() -> None:
    from tidegate.execution.simulator.queue import OptimisticQueue

    market, orders, fills = history(OptimisticQueue())  # fills no prob power can reproduce exactly
    result = calibrate(market, orders, fills)
    assert min(result.errors.values()) > 0
    assert result.errors[f"prob:{result.best_power:g}"] == min(result.errors.values())
    assert result.empirical == result.curves["optimistic"]


def test_calibrate_fill_model_script_writes_report_and_config(tmp_path: Path) -> None:
    _market, orders, fills = history()
    (tmp_path / "orders.jsonl").write_text("\n".join(o.model_dump_json() for o in orders))
    (tmp_path / "fills.jsonl").write_text("\n".join(f.model_dump_json() for f in fills))
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "calibrate_fill_model.py"),
                          "--orders", str(tmp_path / "orders.jsonl"), "--fills", str(tmp_path / "fills.jsonl"),
                          "--synthetic", "60", "--synthetic-seed", "3", "--out", str(tmp_path / "fm.json"),
                          "--write-config", str(tmp_path / "fm.yml")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "fm.json").read_text())
    assert doc["squared_error"][f"prob:{TRUE_POWER:g}"] == 0.0
    best = doc["best"]["prob_power"]
    assert doc["best"]["queue_model"] == "prob" and doc["squared_error"][f"prob:{best:g}"] == 0.0
    assert f"prob_power: {best}" in (tmp_path / "fm.yml").read_text()


def test_simulate_execution_reports_every_scenario(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "simulate_execution.py"), "--capture", "",
                          "--seconds", "30", "--start-offset-s", "5", "--runs", "2", "--scenario", "baseline",
                          "--scenario", "shock_down_50bps", "--out", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert set(doc["scenarios"]) == {"baseline", "shock_down_50bps"}
    base, shock = doc["scenarios"]["baseline"], doc["scenarios"]["shock_down_50bps"]
    assert base["signals"]["mean"] == doc["signals_per_run"] > 0
    assert base["trades_opened"]["mean"] > 0 and 0 < base["fill_rate"]["mean"] <= 1
    # constant latency and no shock: every run is the same
    assert base["fill_rate"]["p5"] == base["fill_rate"]["p95"]
    # a 50 bps drop marks the longs that were filled into it far below their entry
    assert shock["avg_markout_1000ms"]["mean"] < base["avg_markout_1000ms"]["mean"]
