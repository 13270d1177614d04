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
