"""One feature module: online (incremental) and batch (vectorised) agree bit for bit; values are right."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tidegate.features import FEATURE_NAMES, MARKET_FEATURES, SCHEMA, OnlineFeatures, model_matrix, timeline_columns
from tidegate.features.schema import FeatureSchema
from tidegate.market import REGIMES, frame_from_events, generate, iter_events, read_capture
from tidegate.market.events import BookTicker, DepthUpdate, Trade
from tidegate.market.frame import MarketFrame

CAPTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "capture"
SPOT = CAPTURE / "binance_spot_btcusdt_20240809.gz"
MS = 1_000_000


def _online_vs_batch(frame: MarketFrame) -> tuple[int, int]:
    cols = timeline_columns(frame)
    batch = np.stack([cols[n] for n in MARKET_FEATURES], 1)
    state = OnlineFeatures()
    rows = 0
    for i, ev in enumerate(iter_events(frame)):
        state.on_event(ev)
        online = state.market_vector()
        assert online.dtype == np.float32
        if not np.array_equal(online, batch[i]):
            diff = {n: (float(online[j]), float(batch[i, j])) for j, n in enumerate(MARKET_FEATURES)
                    if online[j] != batch[i, j]}
            pytest.fail(f"row {i} ({ev.kind}) differs: {diff}")
        for side in (1, -1):
            assert np.array_equal(state.vector(side), model_matrix(batch[i:i + 1], side)[0])
        rows += 1
    return rows, int(np.count_nonzero(batch[:, MARKET_FEATURES.index("trade_count_1s")]))


@pytest.mark.parametrize("regime", REGIMES)
def test_online_equals_batch_on_synthetic_streams(regime: str) -> None:
    rows, with_trades = _online_vs_batch(generate(seed=4, regime=regime, duration_s=40))
    assert rows > 1000 and with_trades > 100  # the windows were exercised, not just zeros compared


@pytest.mark.skipif(not SPOT.is_file(), reason=f"real capture not present at {CAPTURE.resolve()}")
def test_online_equals_batch_on_the_real_capture() -> None:
    rows, with_trades = _online_vs_batch(read_capture(SPOT))
    assert rows == 58325 and with_trades > 10000


def test_hand_computed_values_on_a_tiny_stream() -> None:
    t0 = 1_000 * MS
    events = [
        BookTicker(t0, -1, "X", 1, 100.0, 3.0, 100.2, 1.0),
        Trade(t0 + 10 * MS, -1, "X", 1, 100.2, 0.5, 1),
        Trade(t0 + 20 * MS, -1, "X", 2, 100.0, 1.5, -1),
        DepthUpdate(t0 + 30 * MS, -1, "X", 2, 3, -1, ((100.0, 3.0), (99.95, 1.0)), ((100.2, 1.0), (100.3, 1.0))),
        BookTicker(t0 + 1_500 * MS, -1, "X", 4, 100.1, 1.0, 100.2, 1.0),
    ]
    cols = timeline_columns(frame_from_events(events, symbol="X"))
    f = {n: float(cols[n][-1]) for n in MARKET_FEATURES}
    mid = 100.15
    # rounded to the 0.05 bps grid (9.985 bps -> 10.0): a price-level proxy must not leak in
    assert f["spread_bps"] == pytest.approx(round(0.1 / mid * 1e4 / 0.05) * 0.05, rel=1e-6)
    assert f["spread_bps"] == pytest.approx(10.0)
    assert f["imbalance_l1"] == 0.0 and f["microprice_offset_bps"] == pytest.approx(0.0, abs=1e-6)
    # 10 best ladder levels behind the touch at the diff: bids 100.0 + 99.95 = 4, asks 100.2 + 100.3 = 2
    assert f["depth_imbalance_l10"] == pytest.approx((4 - 2) / 6)
    # both trades are older than 1 s at t0+1.5 s but inside 5 s: buy 0.5 vs sell 1.5
    assert f["trade_count_1s"] == 0.0 and f["trade_flow_imb_1s"] == 0.0
    assert f["trade_flow_imb_5s"] == pytest.approx((0.5 - 1.5) / 2.0)
    # mid 1 s ago was the first ticker's 100.1; 5 s ago there was no mid yet
    assert f["ret_1s_bps"] == pytest.approx((100.15 - 100.1) / 100.1 * 1e4, rel=1e-6)
    assert f["ret_5s_bps"] == 0.0
    assert f["vol_5s_bps"] == pytest.approx(0.05 / 100.15 * 1e4, rel=1e-6)
    assert f["time_since_trade_ms"] == pytest.approx(1480.0)
    assert f["bid_queue_share"] == pytest.approx(1.0 / (1.0 + 2.0))
    # at the first row (ticker 3 vs 1 at the touch), imbalance and microprice lean to the bid side
    assert float(cols["imbalance_l1"][0]) == pytest.approx(0.5)
    assert float(cols["microprice_offset_bps"][0]) == pytest.approx((100.15 - 100.1) / 100.1 * 1e4, rel=1e-5)


def test_model_matrix_orients_directional_features_by_side() -> None:
    frame = generate(seed=9, duration_s=20)
    cols = timeline_columns(frame)
    buy, sell = model_matrix(cols, 1), model_matrix(cols, -1)
    assert buy.dtype == np.float32 and buy.shape == (len(cols["local_ns"]), len(FEATURE_NAMES))
    j = FEATURE_NAMES.index
    assert np.array_equal(buy[:, j("ret_1s_bps")], -sell[:, j("ret_1s_bps")])
    assert np.array_equal(buy[:, j("spread_bps")], sell[:, j("spread_bps")])
    assert np.array_equal(buy[:, j("queue_same_share")], sell[:, j("queue_opp_share")])
    assert set(np.unique(buy[:, j("side")])) == {1.0}
    with pytest.raises(ValueError, match="side"):
        OnlineFeatures().vector(0)


def test_schema_hash_covers_names_order_dtypes_and_parameters() -> None:
    h = SCHEMA.hash
    assert len(h) == 64 and h == FeatureSchema(SCHEMA.names, SCHEMA.dtypes, SCHEMA.params).hash
    swapped = (SCHEMA.names[1], SCHEMA.names[0], *SCHEMA.names[2:])
    assert FeatureSchema(swapped, SCHEMA.dtypes, SCHEMA.params).hash != h
    assert FeatureSchema(SCHEMA.names, ("float64", *SCHEMA.dtypes[1:]), SCHEMA.params).hash != h
    assert FeatureSchema(SCHEMA.names, SCHEMA.dtypes, replace(SCHEMA.params, long_ms=6000)).hash != h
    assert SCHEMA.sidecar()["schema_hash"] == h
