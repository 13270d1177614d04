"""What raises the executor's fail-safe, and what the fail-safe and the backpressure skip then do.

- the Alertmanager bridge (tidegate.alerts.bridge) against a real nats-server: one firing critical
  alert is one CRIT on the control stream, warnings and resolved alerts are nothing, resends are
  nothing, a re-fire is a new CRIT, bad payloads get a 400 naming the field, an unstored event a 503;
- ``tidegate control crit`` as a subprocess against the same server;
- the executor's core (ExecutionEngine): a CRIT forces canary/full to paper for the cooldown, counted;
- the signal engine's backpressure: candidates are skipped and counted while the scorer is backlogged,
  and flow again once it catches up (the service itself, in-process, on real NATS).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
import yaml
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from tidegate.alerts.bridge import WEBHOOK_PATH, AlertBridge, crit_events, parse_webhook, serve_bridge
from tidegate.bus.connection import Bus
from tidegate.bus.control import ControlEvent
from tidegate.bus.messages import ApprovedMsg, BookMsg, CandidateMsg
from tidegate.bus.subjects import Subjects
from tidegate.config import load_config
from tidegate.config.schema import AppConfig
from tidegate.execution.engine import Decision, ExecutionEngine
from tidegate.execution.venue import load_offline_exchange, market_rules
from tidegate.infra.process import free_port
from tidegate.services import signal_engine
from tidegate.services.runtime import build_context

REPO = Path(__file__).resolve().parents[1]
STARTS = "2026-03-02T10:00:00.000Z"


def alert(name: str, severity: str, *, status: str = "firing", fingerprint: str | None = None,
          starts: str = STARTS, summary: str = "") -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, "severity": severity, "route": "canary"},
            "annotations": {"summary": summary or f"{name} summary", "runbook": "docs/runbook.md"},
            "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
            "fingerprint": fingerprint or f"fp-{name}"}


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager v4 webhook body, with the fields the bridge does not read."""
    return {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "tidegate-fail-safe", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


async def control_events(js: JetStreamContext, ns: Subjects) -> list[ControlEvent]:
    """Every event stored on the namespace's control stream, oldest first, parsed as the executor parses them."""
    try:
        info = await js.stream_info(ns.stream("CONTROL"))
    except NotFoundError:
        return []
    if not info.state.messages:
        return []
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(ns.stream("CONTROL"), seq)
        assert msg.subject == ns.control
        out.append(ControlEvent.from_bytes(msg.data or b""))
    return out


def test_only_firing_critical_alerts_map_to_crit_events() -> None:
    events = crit_events(parse_webhook(json.dumps(webhook(
        alert("WinRateDrop", "critical", summary="precision 41%"), alert("CanaryWinrateDrop", "warning"),
        alert("DriftDetected", "critical", status="resolved"))).encode()))
    assert [(e.kind, e.severity, e.reason, e.detail) for e in events] == [
        ("CRIT", "CRIT", "WinRateDrop", "precision 41%")]
    assert events[0].event_id == f"alert:fp-WinRateDrop:{STARTS}"
    # an event without detail is byte-compatible with readers that predate the field (extra="forbid")
    assert b"detail" not in ControlEvent(kind="MODE_SWITCH", event_id="x").to_bytes()
    assert ControlEvent.from_bytes(events[0].to_bytes()) == events[0]


def test_webhook_posts_publish_one_crit_per_firing_critical_alert_once(nats_server) -> None:  # type: ignore[no-untyped-def]
    ns = Subjects(f"ab{uuid.uuid4().hex[:8]}")
    cfg = AppConfig.model_validate({"nats": {"url": nats_server.url, "namespace": ns.namespace}})
    first = webhook(alert("WinRateDrop", "critical", summary="Rolling precision of route canary is 41%"),
                    alert("CanaryWinrateDrop", "warning"),
                    alert("ExecutionDegradation", "critical", status="resolved"))

    async def scenario() -> None:
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve_bridge(cfg, host="127.0.0.1", port=0, stop=stop,
                                                on_ready=ready.set_result))
        port = await asyncio.wait_for(ready, timeout=10)
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        try:
            async with aiohttp.ClientSession() as http:
                async def post(body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
                    data = body if isinstance(body, bytes) else json.dumps(body).encode()
                    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
                        return r.status, await r.json()

                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    assert r.status == 200 and (await r.json())["status"] == "ok"
                status, body = await post(first)
                crit_id = f"alert:fp-WinRateDrop:{STARTS}"
                assert (status, body) == (200, {"published": [crit_id], "duplicates": [], "ignored": 2})
                events = await control_events(js, ns)
                assert [(e.kind, e.severity, e.reason, e.event_id) for e in events] == [
                    ("CRIT", "CRIT", "WinRateDrop", crit_id)]
                assert events[0].detail == "Rolling precision of route canary is 41%"

                # Alertmanager's resend (group change, repeat_interval): nothing new
                status, body = await post(first)
                assert (status, body["published"], body["duplicates"]) == (200, [], [crit_id])
                assert len(await control_events(js, ns)) == 1

                # a bad payload: 400 naming the field, nothing published
                broken = webhook(alert("WinRateDrop", "critical", fingerprint="other"))
                del broken["alerts"][0]["labels"]["alertname"]
                status, body = await post(broken)
                assert status == 400 and body["error"].startswith("alerts.0.labels.alertname:"), body
                bad_status = webhook(alert("WinRateDrop", "critical", status="pending", fingerprint="other"))
                status, body = await post(bad_status)
                assert status == 400 and body["error"].startswith("alerts.0.status:"), body
                status, body = await post(b"{not json")
                assert status == 400 and body["error"].startswith("<body>:"), body
                status, body = await post({"status": "firing"})
                assert status == 400 and body["error"].startswith("alerts:"), body
                assert len(await control_events(js, ns)) == 1

                # the same alert firing anew (new startsAt) is a new episode: a new CRIT
                again = webhook(alert("WinRateDrop", "critical", starts="2026-03-02T12:00:00.000Z"))
                status, body = await post(again)
                assert (status, body["published"]) == (200, ["alert:fp-WinRateDrop:2026-03-02T12:00:00.000Z"])
                assert len(await control_events(js, ns)) == 2

            # a restarted bridge (empty memory) resending inside the duplicate window: the stream drops it
            fresh = AlertBridge(nc, ns)
            status, body = await fresh.handle(json.dumps(first).encode())
            assert (status, body["published"], body["duplicates"]) == (200, [], [crit_id])
            assert len(await control_events(js, ns)) == 2

            # NATS not storing the event: 503 so that Alertmanager retries, and the alert is not remembered
            dead = await nats.connect(nats_server.url)
            bridge = AlertBridge(dead, ns, publish_timeout=0.5)
            await dead.close()
            lost = webhook(alert("DriftDetected", "critical"))
            status, body = await bridge.handle(json.dumps(lost).encode())
            assert status == 503 and "not stored" in body["error"], body
            assert f"alert:fp-DriftDetected:{STARTS}" not in bridge.seen
            assert len(await control_events(js, ns)) == 2
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)
            await nc.close()

    asyncio.run(scenario())


def test_control_crit_cli_publishes_one_crit(nats_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ns = Subjects(f"ac{uuid.uuid4().hex[:8]}")
    config = tmp_path / "app.yml"
    config.write_text(yaml.safe_dump({"nats": {"url": nats_server.url, "namespace": ns.namespace},
                                      "executor": {"fail_safe_cooldown": 600}}))
    tg = [sys.executable, "-m", "tidegate.cli", "control", "crit", "--config", str(config)]
    r = subprocess.run([*tg, "--reason", "venue outage"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"CRIT published on {ns.control}" in r.stdout and "600s" in r.stdout

    async def read() -> list[ControlEvent]:
        nc = await nats.connect(nats_server.url)
        try:
            return await control_events(nc.jetstream(), ns)
        finally:
            await nc.close()

    events = asyncio.run(read())
    assert [(e.kind, e.severity, e.reason, e.detail) for e in events] == [("CRIT", "CRIT", "manual", "venue outage")]
    assert events[0].event_id.startswith("manual:")

    # NATS unreachable: exit 3, said plainly, nothing published anywhere
    config.write_text(yaml.safe_dump({"nats": {"url": f"nats://127.0.0.1:{free_port()}", "connect_timeout_s": 0.5,
                                               "namespace": ns.namespace}}))
    r = subprocess.run([*tg, "--reason", "venue outage"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "NOT raised" in r.stderr, r.stdout + r.stderr
    assert len(asyncio.run(read())) == 1


# -- the executor's fail-safe (pure core) --------------------------------------------------------

SYMBOL = "BTCUSDT"
BOOK_NS = 1_000_000_000_000


def engine(real_mode: bool, cooldown: float = 60.0) -> ExecutionEngine:
    cfg = AppConfig.model_validate({"executor": {"warmup_seconds": 0, "fail_safe_cooldown": cooldown}})
    ex = load_offline_exchange(REPO / cfg.exchange.markets_file)
    eng = ExecutionEngine(cfg, {SYMBOL: market_rules(ex, SYMBOL)}, started_wall=0.0, real_mode=real_mode,
                          route_of=lambda _sid: "canary")  # the engine's own rollout view agrees: canary
    eng.on_book(BookMsg(symbol=SYMBOL, ts_ns=BOOK_NS, recv_ns=BOOK_NS, seq=1,
                        bids=[(60000.0 - 0.1 * i, 50.0) for i in range(10)],
                        asks=[(60000.1 + 0.1 * i, 50.0) for i in range(10)]))
    return eng


def signal(n: int, route: str) -> ApprovedMsg:
    return ApprovedMsg(signal_id=f"sig-{n}", symbol=SYMBOL, side="buy" if n % 2 else "sell", ts_ns=BOOK_NS,
                       recv_ns=BOOK_NS, emitted_ns=0, scored_ns=0, price=60000.05, route=route,  # type: ignore[arg-type]
                       model_id="m", score=0.9, tau_entry=0.5, bucket=1)


def counted(d: Decision, name: str) -> list[dict[str, str]]:
    return [labels for n, labels, _ in d.counts if n == name]


@pytest.mark.parametrize("real_mode", [True, False], ids=["real", "paper"])
def test_crit_routes_canary_and_full_to_paper_until_the_cooldown_ends(real_mode: bool) -> None:
    eng = engine(real_mode, cooldown=60.0)
    normal_venue = "real" if real_mode else "paper"

    before = eng.on_approved(signal(1, "canary"), now_wall=100.0)
    assert before.orders and {(o.route, o.venue) for o in before.orders} == {("canary", normal_venue)}
    assert not counted(before, "fail_safe_route_total")

    trip = eng.trip_fail_safe("WinRateDrop", now_wall=100.0)
    assert counted(trip, "fail_safe_switch_total") == [{"reason": "WinRateDrop"}]
    assert "60s" in trip.log[0] and "WinRateDrop" in trip.log[0]

    for n, (route, now) in enumerate([("canary", 100.0), ("full", 130.0), ("canary", 159.9)], start=2):
        d = eng.on_approved(signal(n, route), now_wall=now)
        assert d.orders and {(o.route, o.venue) for o in d.orders} == {("paper", "paper")}, (route, now)
        assert counted(d, "fail_safe_route_total") == [{"symbol": SYMBOL}]
        assert counted(d, "trades_opened_total") == [{"route": "paper"}]
    paper = eng.on_approved(signal(5, "paper"), now_wall=140.0)   # already paper: nothing was overridden
    assert paper.orders and not counted(paper, "fail_safe_route_total")

    assert eng.fail_safe_active(159.9) and not eng.fail_safe_active(160.0)
    after = eng.on_approved(signal(6, "canary"), now_wall=160.0)
    assert after.orders and {(o.route, o.venue) for o in after.orders} == {("canary", normal_venue)}
    assert not counted(after, "fail_safe_route_total")

    # a second CRIT during the fail-safe re-arms the cooldown from its own time
    eng.trip_fail_safe("manual", now_wall=200.0)
    eng.trip_fail_safe("manual", now_wall=250.0)
    assert eng.fail_safe_active(309.0) and not eng.fail_safe_active(310.0)


@pytest.mark.real
def test_a_stored_crit_turns_a_running_executors_canary_to_paper(nats_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """End to end: ``tidegate control crit`` stores a CRIT on the CONTROL stream, the running
    executor's durable consumer reads it, and its next canary signals trade on paper."""
    import time

    from services_harness import Services, metrics, unique_names, write_config
    from test_services_pipeline import read_stream, wait_for, write_rollout

    from tidegate.bus.messages import OrderMsg

    ns, bucket = unique_names("fs")
    subjects = Subjects(ns)
    cfg = write_config(tmp_path / "app.yml", nats_url=nats_server.url, namespace=ns, kv_bucket=bucket,
                       registry_root=tmp_path / "registry",
                       overrides={"executor": {"warmup_seconds": 0, "fail_safe_cooldown": 600, "max_signal_age": 600}})
    asyncio.run(write_rollout(nats_server.url, bucket, mode="canary", canary_fraction=1.0, rng_seed=1,
                              active_model_id="m-a", candidate_model_id="m-b", tau_entry=0.5))
    svc, port = Services(tmp_path, cfg), free_port()
    t_ns = time.time_ns()
    book = BookMsg(symbol=SYMBOL, ts_ns=t_ns, recv_ns=t_ns, seq=1, bids=[(60000.0 - 0.1 * i, 50.0) for i in range(10)],
                   asks=[(60000.1 + 0.1 * i, 50.0) for i in range(10)])

    def metric(name: str) -> dict[str, float]:
        return {k: v for k, v in metrics(port).items() if k.startswith(name + "{")}

    async def send(*msgs: Any) -> None:
        nc = await nats.connect(nats_server.url)
        try:
            for m in msgs:
                if isinstance(m, BookMsg):
                    await nc.publish(subjects.book(SYMBOL), m.to_bytes())
                else:
                    await nc.jetstream().publish(subjects.approved(SYMBOL), m.to_bytes(),
                                                 headers={"Nats-Msg-Id": m.signal_id})
            await nc.flush()
        finally:
            await nc.close()

    def sig(n: int) -> ApprovedMsg:
        return signal(n, "canary").model_copy(update={"ts_ns": t_ns, "recv_ns": t_ns, "signal_id": f"{ns}-{n}"})

    def orders() -> list[OrderMsg]:
        raw = asyncio.run(read_stream(nats_server.url, subjects.stream("ORDERS"), subjects.orders(">")))
        return [OrderMsg.model_validate_json(d) for _, d in raw]

    def entry_routes() -> dict[str, str]:
        return {o.signal_id: o.route for o in orders() if o.status == "new"}

    try:
        svc.start("executor", port)
        svc.wait_healthy(["executor"])

        def book_seen() -> bool:
            asyncio.run(send(book))
            return any(v >= 1 for k, v in metric("messages_processed_total").items() if ".md.book." in k)

        wait_for("the executor has a book", book_seen)
        asyncio.run(send(sig(1)))
        wait_for("the canary signal traded", lambda: f"{ns}-1" in entry_routes())
        assert entry_routes()[f"{ns}-1"] == "canary"

        r = subprocess.run([sys.executable, "-m", "tidegate.cli", "control", "crit", "--config", str(cfg),
                            "--reason", "drill"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for("the executor tripped its fail-safe",
                 lambda: metric("fail_safe_switch_total").get('fail_safe_switch_total{reason="manual"}') == 1.0)
        asyncio.run(send(sig(2), sig(3)))
        wait_for("both signals traded", lambda: {f"{ns}-2", f"{ns}-3"} <= set(entry_routes()))
        routes = entry_routes()
        assert (routes[f"{ns}-2"], routes[f"{ns}-3"]) == ("paper", "paper"), routes
        assert metric("fail_safe_route_total") == {f'fail_safe_route_total{{symbol="{SYMBOL}"}}': 2.0}
        assert "control: CRIT manual: drill" in svc.log("executor")
    finally:
        rcs = svc.stop_all()
    assert rcs == {"executor": 0}, svc.log("executor")[-2000:]


# -- the signal engine's backpressure skip -------------------------------------------------------

def test_throttle_doubles_while_over_and_halves_back_below_half_the_limit() -> None:
    t = signal_engine.Throttle(max_backlog=100)
    t.observe(101)
    assert (t.over, t.factor) == (True, 2)
    for _ in range(10):
        t.observe(500)
    assert t.factor == signal_engine.MAX_THROTTLE
    t.observe(60)                                   # between half and the limit: not over, interval kept
    assert (t.over, t.factor) == (False, signal_engine.MAX_THROTTLE)
    t.observe(49)
    assert t.factor == signal_engine.MAX_THROTTLE // 2
    for _ in range(10):
        t.observe(0)
    assert t.factor == 1


def _ticks(start: int, n: int, t0_ns: int) -> list[BookMsg]:
    """Two-sided ticker updates every 50 ms of market time."""
    out = []
    for i in range(start, start + n):
        bid = 60000.0 + (i % 7) * 0.1
        level_b, level_a = (bid, 1.0 + i % 3), (bid + 0.1, 1.5)
        ts = t0_ns + i * 50_000_000
        out.append(BookMsg(symbol=SYMBOL, kind="ticker", ts_ns=ts, recv_ns=ts, seq=i + 1, first_id=i + 1,
                           last_id=i + 1, bids=[level_b], asks=[level_a], bid_changes=[level_b],
                           ask_changes=[level_a]))
    return out


def test_signal_engine_skips_candidates_while_the_scorer_is_backlogged(nats_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ns = Subjects(f"bp{uuid.uuid4().hex[:8]}")
    path = tmp_path / "app.yml"
    path.write_text(yaml.safe_dump({
        "symbols": [SYMBOL], "nats": {"url": nats_server.url, "namespace": ns.namespace},
        "signal_engine": {"max_backlog": 5, "backlog_check_interval": 0.05, "min_interval_ms": 100}}))
    cfg = load_config(path)
    ctx = build_context(signal_engine.NAME, cfg, path, logging.getLogger("test.signal_engine"))
    stream = ns.stream("SIGNALS")
    book_labels = {"service": signal_engine.NAME, "subject": ns.book(SYMBOL)}
    t0 = 1_700_000_000_000_000_000

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return ctx.registry.get_sample_value(name, {"symbol": SYMBOL} if labels is None else labels) or 0.0

    async def until(cond, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
        for _ in range(int(timeout / 0.02)):
            if cond():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def scenario() -> None:
        feed = await Bus.open(nats_server.url, service="test", subjects=ns)
        # the scorer's durable consumer exists and is 10 candidates behind (limit 5)
        for i in range(10):
            stale = CandidateMsg(signal_id=f"old-{i}", symbol=SYMBOL, side="buy", ts_ns=i, recv_ns=i, emitted_ns=i,
                                 price=1.0, schema_hash="h", features=[0.0])
            await feed.publish_durable(ns.candidates(SYMBOL), stale, msg_id=f"old-{i}")
        await feed.flush()
        await feed.js.add_consumer(stream, ConsumerConfig(durable_name=signal_engine.SCORER_DURABLE,
                                                          filter_subject=ns.candidates("*"),
                                                          ack_policy=AckPolicy.EXPLICIT))
        task = asyncio.create_task(signal_engine.serve(ctx))
        try:
            await until(lambda: ctx.ready and sample("candidate_backlog") == 10, "the first backlog reading")

            # 10 s of market data: 5 s fill the feature windows, the rest would emit candidates
            for msg in _ticks(0, 200, t0):
                await feed.publish(ns.book(SYMBOL), msg)
            await feed.nc.flush()
            await until(lambda: sample("messages_processed_total", book_labels) == 200, "200 book updates")
            assert sample("backpressure_total") >= 2           # a pair skipped (and counted) ...
            assert sample("candidates_emitted_total") == 0     # ... none emitted
            assert (await feed.js.stream_info(stream)).state.messages == 10

            # the scorer catches up: the engine emits again (so the skip above was the backlog's doing)
            sub = await feed.js.pull_subscribe_bind(signal_engine.SCORER_DURABLE, stream=stream)
            for m in await sub.fetch(10, timeout=5):
                await m.ack_sync()
            await until(lambda: sample("candidate_backlog") == 0, "the backlog to clear")
            await asyncio.sleep(1.0)                            # 20 readings: the emission interval is back to 1x
            skipped = sample("backpressure_total")
            for msg in _ticks(200, 100, t0):
                await feed.publish(ns.book(SYMBOL), msg)
            await feed.nc.flush()
            await until(lambda: sample("messages_processed_total", book_labels) == 300, "100 more book updates")
            emitted = sample("candidates_emitted_total")
            assert emitted >= 2, (emitted, skipped)
            assert ctx.bus is not None
            await ctx.bus.flush()                               # the engine's publishes are acked by the stream
            assert (await feed.js.stream_info(stream)).state.messages == 10 + emitted
        finally:
            ctx.stop.set()
            await asyncio.wait_for(task, timeout=10)
            if ctx.bus is not None:
                await ctx.bus.close()
            await feed.close()

    asyncio.run(scenario())
