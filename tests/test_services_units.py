"""Pure pieces of the signal engine and the scorer that the latency work made faster: same results, fewer calls."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from tidegate.bus.market_messages import MarketMessages
from tidegate.features import OnlineFeatures
from tidegate.market.frame import iter_events
from tidegate.market.synthetic import generate
from tidegate.services.ai_scorer import observe_many, shadow_msg_id
from tidegate.services.signal_engine import candidate_pair_rows


def test_candidate_pair_rows_are_the_per_side_vectors_bit_for_bit():
    state, conv, compared = OnlineFeatures(), MarketMessages("BTCUSDT"), 0
    for ev in iter_events(generate(symbol="BTCUSDT", duration_s=40, seed=5)):
        msg = conv.convert(ev)
        if msg is None:
            continue
        state.on_event(msg.to_event())
        if state.ready and compared < 2000:
            buy, sell = candidate_pair_rows(state)
            assert np.asarray(buy, np.float32).tobytes() == state.vector(1).tobytes()
            assert np.asarray(sell, np.float32).tobytes() == state.vector(-1).tobytes()
            compared += 1
    assert compared == 2000


def test_observe_many_equals_that_many_observations():
    reg = CollectorRegistry()
    one = Histogram("one_by_one", "h", ["model"], buckets=(1e-5, 1e-4, 1e-3), registry=reg).labels(model="m")
    many = Histogram("at_once", "h", ["model"], buckets=(1e-5, 1e-4, 1e-3), registry=reg).labels(model="m")
    for value, n in ((5e-6, 3), (5e-5, 7), (2e-3, 2), (1e-4, 1), (1e-4, 0)):
        for _ in range(n):
            one.observe(value)
        observe_many(many, value, n)
    samples = {m.name: {(s.name[len(m.name):], s.labels.get("le")): s.value for s in m.samples
                        if not s.name.endswith("_created")} for m in reg.collect()}
    assert samples["one_by_one"] == samples["at_once"]
    assert reg.get_sample_value("at_once_count", {"model": "m"}) == 13


def test_shadow_record_id_names_the_batch_by_its_content():
    from tidegate.bus.messages import ShadowBatchMsg

    def record(ids: list[str], model: str = "m-b") -> ShadowBatchMsg:
        n = len(ids)
        return ShadowBatchMsg(symbol="BTCUSDT", model_id=model, live_model_id="m-a", tau_entry=0.5, signal_ids=ids,
                              ts_ns=[0] * n, scores=[0.5] * n, approved=[True] * n, live_scores=[0.5] * n)

    assert shadow_msg_id(record(["a", "b"])) == shadow_msg_id(record(["a", "b"]))   # redelivered whole: one copy
    assert shadow_msg_id(record(["a", "b"])) != shadow_msg_id(record(["a", "c"]))
    assert shadow_msg_id(record(["a", "b"])) != shadow_msg_id(record(["a", "b"], model="m-c"))


def test_shadow_thresholds_come_from_meta_unless_overridden_in_config() -> None:
    """ai_scorer.shadow: use_threshold_from_meta true (shipped) takes model.json's; false with a
    number takes the number; false with null (the shipped tau_entry) still falls back to model.json."""
    from types import SimpleNamespace

    from tidegate.config.schema import AiScorerConfig
    from tidegate.registry.metadata import Thresholds
    from tidegate.services.scorer_models import shadow_thresholds

    model = SimpleNamespace(meta=SimpleNamespace(thresholds=Thresholds(tau_entry=0.62, tau_hold=0.41)))

    def got(**shadow: object) -> tuple[float, float]:
        th = shadow_thresholds(model, AiScorerConfig.model_validate({"shadow": shadow}))  # type: ignore[arg-type]
        return th.tau_entry, th.tau_hold

    assert got() == (0.62, 0.41)                                                   # as shipped
    assert got(use_threshold_from_meta=True, tau_entry=0.9, tau_hold=0.8) == (0.62, 0.41)   # meta wins
    assert got(use_threshold_from_meta=False, tau_entry=0.7) == (0.7, 0.41)
    assert got(use_threshold_from_meta=False, tau_entry=0.7, tau_hold=0.5) == (0.7, 0.5)
    assert got(use_threshold_from_meta=False) == (0.62, 0.41)                      # null: model.json


def test_risk_parquet_scan_reports_the_largest_gap_in_any_archive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The risk service's data-health scan behind ``parquet_gap_detected_ms``: real parquet files,
    unsorted rows, a file without the time column skipped, a missing directory is 0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tidegate.services.risk import scan_parquet_gaps

    ms = 1_000_000
    (tmp_path / "day=1").mkdir()
    pq.write_table(pa.table({"local_ns": [0, 100 * ms, 2_600 * ms, 2_700 * ms]}), tmp_path / "day=1" / "a.parquet")
    pq.write_table(pa.table({"local_ns": [5_000 * ms, 0, 4_000 * ms]}), tmp_path / "b.parquet")     # unsorted
    pq.write_table(pa.table({"price": [1.0, 2.0]}), tmp_path / "no_time.parquet")
    assert scan_parquet_gaps(tmp_path) == 4_000.0           # b.parquet: 0 -> 4000 ms once sorted
    (tmp_path / "b.parquet").unlink()
    assert scan_parquet_gaps(tmp_path) == 2_500.0
    assert scan_parquet_gaps(tmp_path / "absent") == 0.0
