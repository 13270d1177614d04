"""collector → signal_engine → ai_scorer → executor (paper) → risk as real processes, read back from Prometheus.

Every service runs as ``python -m tidegate.services.<name> --config FILE`` against
the session's nats-server, serving /metrics on a port the session's Prometheus
scrapes. The assertions read Prometheus, not the services' memory, and check:

- counts equal to the messages sent, at every hop (and the executor's accounting
  identity: approved = warm-up skips + trades opened + signal-level rejections);
- the scorer's decisions, recomputed here with ONNX Runtime from the candidates in
  the SIGNALS stream and the deterministic routing hash;
- markouts, fill rate and win rate recomputed here, with numpy and no tidegate
  maths, from the fills in the FILLS stream, the orders in the ORDERS stream and
  the mid prices of the replayed market data, equal to the risk service's gauges;
- a malformed message counted by every consumer, with the services alive;
- shadow counters present only with shadow enabled; a schema-mismatched model
  refused while the old one keeps serving; a NATS restart survived with no
  JetStream message lost (second test).

The market data is a one-minute slice of the capture at 10x (the synthetic
generator when the capture is absent).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from services_harness import CAPTURE_DIR, CAPTURE_FILE, Services, unique_names, write_config

SYMBOL = "BTCUSDT"
HORIZONS_MS = (100, 500, 1000)
SLICE = {"speed": 10.0, "start_offset_s": 30.0, "max_events": 15000, "synthetic_seconds": 90.0}
FRACTION = 0.3


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real LightGBM → ONNX models, and a copy of the first declaring another feature schema."""
    from tidegate.pipeline import train_end_to_end

    root = tmp_path_factory.mktemp("models")
    a = train_end_to_end(root / "m-a", model_id="m-a", seed=7)
    b = train_end_to_end(root / "m-b", model_id="m-b", seed=8, degrade=True)
    bad = root / "m-bad"
    shutil.copytree(a, bad)
    meta = json.loads((bad / "model.json").read_text())
    meta.update(id="m-bad", schema_hash="0" * 64)  # same ONNX bytes (sha256 still matches), other schema
    (bad / "model.json").write_text(json.dumps(meta))
    return {"m-a": a, "m-b": b, "m-bad": bad}


def registry_with(root: Path, trained: dict[str, Path], *, shadow: str | None = "m-b") -> Any:
    from tidegate.registry import Registry

    reg = Registry(root)
    for path in trained.values():
        reg.register(path)
    reg.set_slot("active", "m-a", reason="test")
    if shadow:
        reg.set_slot("shadow", shadow, reason="test")
    return reg


@pytest.fixture
def slots(prometheus):  # type: ignore[no-untyped-def]
    claimed: list[int] = []

    def claim() -> int:
        claimed.append(prometheus.claim_slot())
        return claimed[-1]

    yield claim
    for port in claimed:  # let Prometheus mark our series stale before the slot serves another test
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not prometheus.query(f'up{{instance="127.0.0.1:{port}"}} == 0'):
            time.sleep(0.1)
        prometheus.release_slot(port)


# -- reading back -------------------------------------------------------------------------------------
class Prom:
    """Instant queries scoped to one target (its slot port), as {labels-without-job/instance: value}."""

    def __init__(self, prometheus: Any, ports: dict[str, int]):
        self.p = prometheus
        self.ports = ports

    def get(self, service: str, metric: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
        sel = ",".join([f'instance="127.0.0.1:{self.ports[service]}"'] + [f'{k}="{v}"' for k, v in labels.items()])
        out = {}
        for row in self.p.query(f"{metric}{{{sel}}}"):
            key = tuple(sorted((k, v) for k, v in row["metric"].items() if k not in ("__name__", "job", "instance")))
            out[key] = float(row["value"][1])
        return out

    def one(self, service: str, metric: str, **labels: str) -> float | None:
        """The value of one series; None when absent; the sum when several match."""
        rows = self.get(service, metric, **labels)
        return sum(rows.values()) if rows else None


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns a truthy value (returned) or raise naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout:g}s; last: {last}")


async def read_stream(url: str, stream: str, subject: str) -> list[tuple[str, bytes]]:
    """Every message of ``stream`` on ``subject`` (wildcards allowed), in stream order."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream, subjects_filter=subject)
        total = sum((info.state.subjects or {}).values())
        out: list[tuple[str, bytes]] = []
        if not total:
            return out
        sub = await js.pull_subscribe(subject, stream=stream, config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, filter_subject=subject))
        while len(out) < total:
            for msg in await sub.fetch(1000, timeout=5):
                out.append((msg.subject, msg.data))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def backlogs(url: str, pairs: list[tuple[str, str]]) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        total = 0
        for stream, durable in pairs:
            info = await js.consumer_info(stream, durable)
            total += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return total
    finally:
        await nc.close()


async def write_rollout(url: str, bucket: str, **state: Any) -> None:
    import nats

    from tidegate.rollout import RolloutKV, RolloutState

    nc = await nats.connect(url)
    try:
        await (await RolloutKV.open(nc.jetstream(), bucket)).put(RolloutState(**state))
    finally:
        await nc.close()


# -- the replayed slice, as the collector sends it --------------------------------------------------
def replayed_slice(source: str) -> list[Any]:
    """The BookMsg/TradeMsg sequence the collector publishes for the test's slice."""
    from tidegate.bus.market_messages import MarketMessages
    from tidegate.market.capture import read_capture
    from tidegate.market.synthetic import generate
    from tidegate.services.collector import select_events

    frame = (read_capture(CAPTURE_DIR / CAPTURE_FILE) if source == "capture"
             else generate(symbol=SYMBOL, duration_s=SLICE["synthetic_seconds"]))
    conv = MarketMessages(SYMBOL, 10)
    out = []
    for ev in select_events(frame, start_offset_s=SLICE["start_offset_s"], max_events=SLICE["max_events"]):
        msg = conv.convert(ev)
        if msg is not None:
            out.append(msg)
    return out


def onnx_scores(model_dir: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(["probabilities"], {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    return np.asarray(out)[:, 1]


def median_score(messages: list[Any], model_dir: Path) -> float:
    """The active model's median score on this market slice: a threshold approving about half."""
    from tidegate.bus.messages import BookMsg
    from tidegate.features import OnlineFeatures

    state = OnlineFeatures()
    rows, last = [], 0
    for msg in messages:
        state.on_event(msg.to_event())
        if isinstance(msg, BookMsg) and state.ready and msg.recv_ns - last >= 100_000_000:
            last = msg.recv_ns
            rows += [state.vector(1), state.vector(-1)]
    return float(np.median(onnx_scores(model_dir, np.asarray(rows))))


# -- the independent recomputation ------------------------------------------------------------------
def recompute(fills: list[dict[str, Any]], orders: list[dict[str, Any]],
              mids: tuple[np.ndarray, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per route: closed trades, wins, mean fee-adjusted markouts, win rate, fill rate, cancel-to-fill.

    Written from the definitions in docs/trading-metrics.md, with numpy only:
    markout_h = s * (mid(t+h) - p) / p * 1e4 - fee_rate * 1e4, mid(t+h) the last mid at or before
    t+h; a trade is one filled entry order (its markout the qty-weighted mean of its fills') with a
    mid later than its last fill + 1000 ms, won when markout_1000 > 0;
    fill rate = finished (filled or cancelled) accepted orders with any fill / finished orders.
    """
    t, m = mids
    out: dict[str, dict[str, float]] = {}
    by_route: dict[str, list[dict[int, float]]] = defaultdict(list)
    per_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in fills:
        if not f["reduce_only"]:
            per_order[f["client_order_id"]].append(f)
    for group in per_order.values():   # a trade is one filled entry order: qty-weighted markouts of its fills
        if not all(t[-1] > f["ts_ns"] + 1000 * 1_000_000 for f in group):
            continue
        qty = sum(f["qty"] for f in group)
        row = dict.fromkeys(HORIZONS_MS, 0.0)
        for f in group:
            s = 1.0 if f["side"] == "buy" else -1.0
            for h in HORIZONS_MS:
                i = int(np.searchsorted(t, f["ts_ns"] + h * 1_000_000, side="right")) - 1
                assert i >= 0, "a fill before the first mid"
                row[h] += (s * (m[i] - f["price"]) / f["price"] * 1e4 - f["fee_rate"] * 1e4) * f["qty"] / qty
        by_route[group[0]["route"]].append(row)
    statuses: dict[str, set[str]] = defaultdict(set)
    route_of: dict[str, str] = {}
    for o in orders:
        statuses[o["client_order_id"]].add(o["status"])
        route_of[o["client_order_id"]] = o["route"]
    filled_coids = {f["client_order_id"] for f in fills}
    for route in ("paper", "canary"):
        rows = by_route[route]
        done = [c for c, st in statuses.items() if route_of[c] == route and "accepted" in st
                and st & {"filled", "cancelled"}]
        with_fill = sum(1 for c in done if c in filled_coids)
        cancelled = sum(1 for c in done if "cancelled" in statuses[c])
        wins = sum(1 for r in rows if r[1000] > 0)
        out[route] = {
            "trades_closed_total": float(len(rows)), "trades_won_total": float(wins),
            "winrate_rolling": wins / len(rows) if rows else math.nan,
            "fill_rate_rolling": with_fill / len(done) if done else math.nan,
            "cancel_to_fill_ratio": cancelled / with_fill if with_fill else math.nan,
            **{f"avg_markout_{h}ms": float(np.mean([r[h] for r in rows])) if rows else math.nan
               for h in HORIZONS_MS},
        }
    return out


# -- the tests ----------------------------------------------------------------------------------------
def test_pipeline_counts_decisions_and_trading_metrics_match_an_independent_recomputation(
        nats_server, prometheus, slots, trained, tmp_path):  # type: ignore[no-untyped-def]
    from tidegate.bus.messages import ApprovedMsg, BookMsg, CandidateMsg, FillMsg, OrderMsg, TradeMsg, shadow_decisions
    from tidegate.rollout import RolloutState, route

    source = "capture" if (CAPTURE_DIR / CAPTURE_FILE).is_file() else "synthetic"
    messages = replayed_slice(source)
    tau = median_score(messages, trained["m-a"])
    registry_with(tmp_path / "registry", trained)
    ns, bucket = unique_names("pipe")
    cfg = write_config(tmp_path / "app.yml", nats_url=nats_server.url, namespace=ns, kv_bucket=bucket,
                       registry_root=tmp_path / "registry", overrides={
                           "collector": {**SLICE, "source": source},
                           "executor": {"warmup_seconds": 1.0},
                           "risk": {"window_trades": 1_000_000, "window_orders": 1_000_000},
                           "ai_scorer": {"shadow": {"enabled": True}, "parity_sample_rate": 0.2}})
    state = dict(mode="canary", canary_fraction=FRACTION, rng_seed=1337, active_model_id="m-a",
                 candidate_model_id="m-b", tau_entry=round(tau, 6))
    asyncio.run(write_rollout(nats_server.url, bucket, **state))

    names = ("signal_engine", "ai_scorer", "executor", "risk", "collector")
    ports = {n: slots() for n in names}
    svc = Services(tmp_path, cfg)
    prom = Prom(prometheus, ports)
    try:
        for n in names[:-1]:
            svc.start(n, ports[n])
        svc.wait_healthy(names[:-1])

        # malformed messages before the market opens: a garbage book (three core consumers) and a
        # garbage candidate (the scorer's durable consumer, and risk's core drift subscription)
        async def garbage() -> None:
            import nats

            nc = await nats.connect(nats_server.url)
            await nc.publish(f"{ns}.md.book.{SYMBOL}", b'{"v":1,"symbol":"BTCUSDT","bids":"nope"}')
            await nc.jetstream().publish(f"{ns}.sig.candidates.{SYMBOL}", b"\x00not json")
            await nc.flush()
            await nc.close()

        asyncio.run(garbage())
        svc.start("collector", ports["collector"])
        svc.wait_healthy(["collector"])
        wait_for("collector done", lambda: (svc.health("collector") or {}).get("done"), timeout=60)

        async def quiet() -> bool:
            pairs = [(f"{ns}_SIGNALS", "ai_scorer"), (f"{ns}_SIGNALS", "executor"),
                     (f"{ns}_ORDERS", "risk_orders"), (f"{ns}_FILLS", "risk_fills")]
            return await backlogs(nats_server.url, pairs) == 0

        wait_for("every durable consumer drained", lambda: asyncio.run(quiet()), timeout=30)
        for n in names:
            assert svc.alive(n), f"{n} died:\n{svc.log(n)[-2000:]}"

        stream = lambda s, subj: asyncio.run(read_stream(nats_server.url, f"{ns}_{s}", f"{ns}.{subj}"))  # noqa: E731
        cands = [CandidateMsg.model_validate_json(d) for _, d in stream("SIGNALS", "sig.candidates.>")
                 if d.startswith(b"{")]
        approved = [ApprovedMsg.model_validate_json(d) for _, d in stream("SIGNALS", "sig.approved.>")]
        shadow = stream("SIGNALS", "sig.shadow.>")
        orders = [OrderMsg.model_validate_json(d).model_dump() for _, d in stream("ORDERS", "orders.>")]
        fills = [FillMsg.model_validate_json(d).model_dump() for _, d in stream("FILLS", "fills.>")]
        books = [m for m in messages if isinstance(m, BookMsg)]
        trades = [m for m in messages if isinstance(m, TradeMsg)]
        book_subj, trade_subj = f"{ns}.md.book.{SYMBOL}", f"{ns}.md.trade.{SYMBOL}"
        cand_subj = f"{ns}.sig.candidates.{SYMBOL}"
        assert len(cands) > 500 and len(approved) > 100 and len(fills) > 100, (len(cands), len(approved), len(fills))

        # -- counts equal to the messages sent, hop by hop (read from Prometheus) ------------------
        def counts_settled() -> bool:
            assert prom.one("collector", "md_events_published_total", kind="book") == len(books)
            assert prom.one("collector", "md_events_published_total", kind="trade") == len(trades)
            for n in ("signal_engine", "executor", "risk"):
                assert prom.one(n, "messages_processed_total", subject=book_subj) == len(books), n
                assert prom.one(n, "bad_message_total", subject=book_subj) == 1, n
            for n in ("signal_engine", "executor"):
                assert prom.one(n, "messages_processed_total", subject=trade_subj) == len(trades), n
            assert prom.one("signal_engine", "candidates_emitted_total") == len(cands)
            assert prom.one("ai_scorer", "messages_processed_total", subject=cand_subj) == len(cands)
            assert prom.one("ai_scorer", "bad_message_total", subject=cand_subj) == 1
            assert prom.one("risk", "messages_processed_total", subject=cand_subj) == len(cands)
            assert prom.one("risk", "bad_message_total", subject=cand_subj) == 1
            assert prom.one("ai_scorer", "signals_scored_total") == len(cands)
            assert prom.one("ai_scorer", "signals_approved_total") == len(approved)
            assert prom.one("executor", "messages_processed_total", subject=f"{ns}.sig.approved.{SYMBOL}") \
                == len(approved)
            assert prom.one("risk", "messages_processed_total", subject=f"{ns}.orders.{SYMBOL}") == len(orders)
            assert prom.one("risk", "messages_processed_total", subject=f"{ns}.fills.{SYMBOL}") == len(fills)
            return True

        wait_for("Prometheus counts equal to the messages sent", counts_settled)

        # shadow: every candidate scored by the shadow model too, one recorded decision each (v2 records
        # carry a scored batch each), each decision the shadow model's score against its own threshold
        decisions = [d for _, data in shadow for d in shadow_decisions(data)]
        assert prom.one("ai_scorer", "shadow_signals_evaluated_total") == len(cands) == len(decisions)
        assert sorted(d.signal_id for d in decisions) == sorted(c.signal_id for c in cands)
        assert {d.model_id for d in decisions} == {"m-b"} and {d.live_model_id for d in decisions} == {"m-a"}
        assert {json.loads(data)["v"] for _, data in shadow} == {2}
        # the shadow model decides on its own threshold (ai_scorer.shadow.use_threshold_from_meta)
        from tidegate.registry.metadata import ModelMetadata

        shadow_tau = ModelMetadata.model_validate_json((trained["m-b"] / "model.json").read_text()).thresholds.tau_entry
        assert shadow_tau != pytest.approx(state["tau_entry"])      # distinguishable from the live threshold
        undecided = [d for d in decisions if abs(d.score - shadow_tau) < 1e-7]
        assert all(d.approved == (d.score >= shadow_tau) for d in decisions if d not in undecided)
        assert 0 < sum(d.approved for d in decisions) < len(decisions)
        assert prom.one("ai_scorer", "shadow_signals_approved_total") == sum(d.approved for d in decisions)
        assert prom.get("ai_scorer", "model_active_id") == {(("model_id", "m-a"),): 1.0}
        assert prom.get("ai_scorer", "model_shadow_id") == {(("model_id", "m-b"),): 1.0}
        assert prom.one("ai_scorer", "onnx_parity_fail_total") == 0
        assert prom.one("ai_scorer", "tau_entry_current", model="m-a") == pytest.approx(state["tau_entry"])

        # -- the scorer's decisions, recomputed: routing hash, model per route, threshold ---------
        rs = RolloutState(**state)
        x = np.asarray([c.features for c in cands], dtype=np.float32)
        p = {m: onnx_scores(trained[m], x) for m in ("m-a", "m-b")}
        by_id = {d.signal_id: d for d in decisions}
        np.testing.assert_allclose([by_id[c.signal_id].score for c in cands], np.clip(p["m-b"], 0, 1), atol=1e-6)
        np.testing.assert_allclose([by_id[c.signal_id].live_score for c in cands], np.clip(p["m-a"], 0, 1), atol=1e-6)
        expect: dict[str, str] = {}
        at_threshold: set[str] = set()  # float32 ties: either decision is right
        for i, c in enumerate(cands):
            r = route(rs, c.signal_id)
            score = p["m-b" if r == "canary" else "m-a"][i]
            if abs(score - rs.tau_entry) < 1e-7:
                at_threshold.add(c.signal_id)
            elif score >= rs.tau_entry:
                expect[c.signal_id] = r
        got = {a.signal_id: a.route for a in approved if a.signal_id not in at_threshold}
        assert got == expect
        routes = {r for r in got.values()}
        assert routes == {"paper", "canary"}
        assert {a.model_id for a in approved if a.route == "canary"} == {"m-b"}
        # the online score distributions: the deciding model's score per candidate (candidate on the
        # canary bucket, active elsewhere) and the shadow model's, over the scorer's last 2000
        deciding = np.where([route(rs, c.signal_id) == "canary" for c in cands], p["m-b"], p["m-a"])[-2000:]
        shadow_scores = p["m-b"][-2000:]

        def distributions_settled() -> bool:
            assert prom.one("ai_scorer", "model_score_distribution", split="online", stat="count") == len(deciding)
            assert prom.one("ai_scorer", "shadow_score_distribution", split="online", stat="count") \
                == len(shadow_scores)
            return True

        wait_for("score distributions exported", distributions_settled)
        for metric, scores in (("model_score_distribution", deciding), ("shadow_score_distribution", shadow_scores)):
            for stat, want in (("mean", scores.mean()), ("p10", np.quantile(scores, 0.1)),
                               ("p50", np.quantile(scores, 0.5)), ("p90", np.quantile(scores, 0.9))):
                assert prom.one("ai_scorer", metric, split="online", stat=stat) == pytest.approx(float(want), abs=1e-5)

        # -- the executor's accounting: each approved signal is skipped, rejected or traded once --
        opened = prom.get("executor", "trades_opened_total")
        n_opened = sum(opened.values())
        rejected_total = prom.one("executor", "orders_rejected_total") or 0.0
        order_level = sum(1 for o in orders if o["status"] == "rejected")
        skipped = prom.one("executor", "warmup_skip_total") or 0.0
        assert skipped + n_opened + (rejected_total - order_level) == len(approved)
        entries = {o["signal_id"] for o in orders if o["status"] == "new" and not o["reduce_only"]}
        assert n_opened == len(entries) > 50
        assert not [o for o in orders if o["reason"] == "reduce_only_would_increase"]
        first: dict[str, str] = {}
        for o in orders:  # causal order in the stream: an order's "new" comes before anything else about it
            first.setdefault(o["client_order_id"], o["status"])
        assert set(first.values()) == {"new"}
        placed = {o["client_order_id"] for o in orders}
        assert {f["client_order_id"] for f in fills} <= placed

        # -- trading quality: risk's gauges equal an independent recomputation --------------------
        mids = [(b.recv_ns, (b.bids[0][0] + b.asks[0][0]) / 2) for b in books if b.bids and b.asks]
        t = np.asarray([m[0] for m in mids], dtype=np.int64)
        expected = recompute(fills, orders, (t, np.asarray([m[1] for m in mids])))
        assert expected["paper"]["trades_closed_total"] > 20 and expected["canary"]["trades_closed_total"] > 20

        def risk_matches() -> bool:
            for r, values in expected.items():
                for metric, want in values.items():
                    have = prom.one("risk", metric, route=r)
                    assert have is not None, (r, metric)
                    assert (math.isnan(want) and math.isnan(have)) or have == pytest.approx(want, rel=1e-9, abs=1e-9), \
                        (r, metric, have, want)
                have = prom.one("risk", "rolling_precision", route=r)
                assert have is not None and (math.isnan(have) or have == pytest.approx(values["winrate_rolling"]))
            canary = expected["canary"]
            assert prom.one("risk", "winrate_canary") == pytest.approx(canary["winrate_rolling"], rel=1e-9)
            assert prom.one("risk", "sample_canary") == canary["trades_closed_total"]
            return True

        wait_for("risk metrics equal to the recomputation", risk_matches)
        for n in names:
            assert svc.alive(n), f"{n} died:\n{svc.log(n)[-2000:]}"
    finally:
        rcs = svc.stop_all()
    assert rcs == dict.fromkeys(names, 0), {n: svc.log(n)[-1500:] for n, rc in rcs.items() if rc}


def synthetic_candidates(n: int, offset: int) -> list[Any]:
    """``n`` candidates with real feature vectors (synthetic market, the shared feature module)."""
    from tidegate.bus.market_messages import MarketMessages
    from tidegate.bus.messages import BookMsg, CandidateMsg
    from tidegate.features import OnlineFeatures, schema_hash
    from tidegate.market.frame import iter_events
    from tidegate.market.synthetic import generate

    conv, state, out, last = MarketMessages(SYMBOL), OnlineFeatures(), [], 0
    for ev in iter_events(generate(symbol=SYMBOL, duration_s=n / 20 + 10, seed=11)):
        msg = conv.convert(ev)
        if msg is None:
            continue
        state.on_event(msg.to_event())
        if isinstance(msg, BookMsg) and state.ready and msg.recv_ns - last >= 100_000_000:
            last = msg.recv_ns
            for side in (1, -1):
                out.append(CandidateMsg(
                    signal_id=f"{SYMBOL}-{msg.recv_ns}-{offset}-{side}", symbol=SYMBOL,
                    side="buy" if side > 0 else "sell", ts_ns=msg.ts_ns, recv_ns=msg.recv_ns, emitted_ns=time.time_ns(),
                    price=state.book.mid(), schema_hash=schema_hash(), features=state.vector(side).tolist()))
        if len(out) >= n:
            return out[:n]
    raise AssertionError("synthetic market too short")


async def publish_candidates(url: str, subjects: Any, batch: list[Any], rate: float,
                             during: Callable[[], Any] | None = None) -> None:
    """Publish candidates durably at ``rate``/s; ``during`` runs in a thread a quarter of the way in."""
    from tidegate.bus.connection import Bus

    bus = await Bus.open(url, service="test", subjects=subjects)
    task = None
    for i, c in enumerate(batch):
        await bus.publish_durable(subjects.candidates(SYMBOL), c, msg_id=f"candidate:{c.signal_id}")
        if during is not None and i == len(batch) // 4:
            task = asyncio.create_task(asyncio.to_thread(during))
        await asyncio.sleep(1 / rate)
    if task is not None:
        await task
    await bus.flush(timeout=60)
    assert bus.unconfirmed == 0
    await bus.close()


def scorer_alone(nats_server: Any, prometheus: Any, slots: Any, trained: dict[str, Path], tmp_path: Path,
                 prefix: str, *, shadow: bool) -> tuple[Any, Prom, Services, Any, str]:
    """A scorer on its own (registry with m-a active and m-b in the shadow slot, registry polled
    every 0.2 s): (registry, Prometheus reader, services, subjects, kv bucket)."""
    from tidegate.bus.subjects import Subjects

    reg = registry_with(tmp_path / "registry", trained, shadow="m-b")
    ns, bucket = unique_names(prefix)
    cfg = write_config(tmp_path / "app.yml", nats_url=nats_server.url, namespace=ns, kv_bucket=bucket,
                       registry_root=tmp_path / "registry",
                       overrides={"ai_scorer": {"shadow": {"enabled": shadow}, "registry_poll_interval": 0.2}})
    ports = {"ai_scorer": slots()}
    return reg, Prom(prometheus, ports), Services(tmp_path, cfg), Subjects(ns), bucket


def test_scorer_shadow_toggle_schema_refusal_and_nats_restart(nats_server, prometheus, slots, trained, tmp_path):  # type: ignore[no-untyped-def]
    # a shadow slot, but shadow disabled
    reg, prom, svc, subjects, bucket = scorer_alone(nats_server, prometheus, slots, trained, tmp_path, "scr",
                                                    shadow=False)
    ports = prom.ports
    cands = synthetic_candidates(1000, 0)
    p = onnx_scores(trained["m-a"], np.asarray([c.features for c in cands], dtype=np.float32))
    tau = round(float(np.median(p)), 6)
    asyncio.run(write_rollout(nats_server.url, bucket, mode="disabled", tau_entry=tau))  # all routes paper

    def publish(batch: list[Any], rate: float, during: Callable[[], Any] | None = None) -> Any:
        return publish_candidates(nats_server.url, subjects, batch, rate, during)

    def scored(model: str) -> float | None:
        return prom.one("ai_scorer", "signals_scored_total", model=model)

    try:
        svc.start("ai_scorer", ports["ai_scorer"])
        svc.wait_healthy(["ai_scorer"])
        prometheus.wait_up(ports["ai_scorer"])

        # shadow disabled: no shadow series at all, though the registry has a shadow slot
        asyncio.run(publish(cands[:200], rate=2000))
        wait_for("200 scored", lambda: scored("m-a") == 200)
        assert prom.get("ai_scorer", "shadow_signals_evaluated_total") == {}
        assert prom.get("ai_scorer", "model_shadow_id") == {}
        assert prom.get("ai_scorer", "model_active_id") == {(("model_id", "m-a"),): 1.0}

        # a model with another feature schema is promoted: refused, counted, m-a keeps serving
        assert prom.one("ai_scorer", "parquet_schema_version_mismatch_total") == 0
        reg.set_slot("active", "m-bad", reason="test: wrong schema")
        wait_for("the refusal counted", lambda: prom.one("ai_scorer", "parquet_schema_version_mismatch_total") == 1)
        asyncio.run(publish(cands[200:400], rate=2000))
        wait_for("400 scored by m-a", lambda: scored("m-a") == 400)
        assert scored("m-bad") is None
        assert prom.get("ai_scorer", "model_active_id") == {(("model_id", "m-a"),): 1.0}
        assert "model 'm-bad' refused" in svc.log("ai_scorer") and "schema_hash mismatch" in svc.log("ai_scorer")

        # NATS restarts while 600 candidates are being published: none lost, none scored twice
        asyncio.run(publish(cands[400:], rate=300, during=lambda: nats_server.restart(down_for=0.5)))
        wait_for("all 1000 scored exactly once", lambda: scored("m-a") == 1000, timeout=40)
        info = asyncio.run(read_stream(nats_server.url, subjects.stream("SIGNALS"), subjects.candidates(">")))
        assert len(info) == 1000
        approved = asyncio.run(read_stream(nats_server.url, subjects.stream("SIGNALS"), subjects.approved(">")))
        expected = {c.signal_id for c, score in zip(cands, p, strict=True) if score >= tau + 1e-7}
        ties = {c.signal_id for c, score in zip(cands, p, strict=True) if abs(score - tau) < 1e-7}
        assert {json.loads(d)["signal_id"] for _, d in approved} - ties == expected
        assert {json.loads(d)["route"] for _, d in approved} == {"paper"}
        assert prom.one("ai_scorer", "signals_approved_total", model="m-a", route="paper") == len(approved)
        assert "nats reconnected" in svc.log("ai_scorer")
        assert svc.health("ai_scorer") is not None
    finally:
        rcs = svc.stop_all()
    assert rcs == {"ai_scorer": 0}, svc.log("ai_scorer")[-2000:]


def test_removing_the_shadow_link_stops_shadow_scoring_in_a_running_scorer(  # type: ignore[no-untyped-def]
        nats_server, prometheus, slots, trained, tmp_path):
    """The seed's other way to end shadow: remove the registry's ``shadow/`` link. The running
    scorer drops the shadow model on its next registry poll; live scoring goes on."""
    from tidegate.bus.messages import shadow_decisions

    reg, prom, svc, subjects, bucket = scorer_alone(nats_server, prometheus, slots, trained, tmp_path, "shl",
                                                    shadow=True)
    ports = prom.ports
    cands = synthetic_candidates(200, 1)
    asyncio.run(write_rollout(nats_server.url, bucket, mode="disabled", tau_entry=0.5))
    try:
        svc.start("ai_scorer", ports["ai_scorer"])
        svc.wait_healthy(["ai_scorer"])
        prometheus.wait_up(ports["ai_scorer"])
        asyncio.run(publish_candidates(nats_server.url, subjects, cands[:100], rate=2000))
        wait_for("100 scored, shadow too", lambda: prom.one("ai_scorer", "shadow_signals_evaluated_total") == 100
                 and prom.one("ai_scorer", "signals_scored_total", model="m-a") == 100)
        assert prom.get("ai_scorer", "model_shadow_id") == {(("model_id", "m-b"),): 1.0}

        reg.set_slot("shadow", None, reason="test: shadow ended")
        wait_for("the shadow model dropped", lambda: prom.get("ai_scorer", "model_shadow_id") == {})
        asyncio.run(publish_candidates(nats_server.url, subjects, cands[100:], rate=2000))
        wait_for("200 scored", lambda: prom.one("ai_scorer", "signals_scored_total", model="m-a") == 200)
        assert prom.one("ai_scorer", "shadow_signals_evaluated_total") == 100     # nothing more in shadow
        shadow = asyncio.run(read_stream(nats_server.url, subjects.stream("SIGNALS"), subjects.shadow(">")))
        ids = {d.signal_id for _, data in shadow for d in shadow_decisions(data)}
        assert ids == {c.signal_id for c in cands[:100]}
    finally:
        rcs = svc.stop_all()
    assert rcs == {"ai_scorer": 0}, svc.log("ai_scorer")[-2000:]
