"""The release engine end to end: real Prometheus scraping a scripted exporter, real NATS.

Given a registry (old-1 active, cand-1 candidate) and healthy guard-rail series,
when the local driver runs a compressed release (seconds, 0.5 s interval) and the
test breaks one series mid-stage, then the registry, the KV rollout state, the
CONTROL stream and the decision log say what happened and why.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
from release_helpers import (
    Exporter,
    control_events,
    make_registry,
    release_doc,
    seconds_between,
    unique,
    wait_until,
)

from tidegate.config.schema import AppConfig
from tidegate.release.local import LocalDriver
from tidegate.release.spec import parse_release

pytestmark = pytest.mark.real


@pytest.fixture
def world(tmp_path: Path, prometheus, prom_slot, nats_server):  # type: ignore[no-untyped-def]
    exporter = Exporter(prom_slot)
    prometheus.wait_up(prom_slot)
    registry = make_registry(tmp_path / "registry")
    bucket = unique("rollout").replace("-", "_")
    app = AppConfig.model_validate({"nats": {"url": nats_server.url, "kv_bucket": bucket},
                                    "prometheus": {"url": prometheus.url}})
    yield {"exporter": exporter, "registry": registry, "app": app, "tmp": tmp_path, "prom": prometheus,
           "nats": nats_server, "port": prom_slot}
    exporter.close()


def _driver(world, name: str, **spec) -> LocalDriver:  # type: ignore[no-untyped-def]
    rel = parse_release(release_doc(name, prometheus_url=world["prom"].url, port=world["port"], **spec))
    return LocalDriver(rel, state_dir=world["tmp"] / "state", app=world["app"], registry=world["registry"],
                       nats_url=world["nats"].url)


async def _kv_state(world):  # type: ignore[no-untyped-def]
    import nats

    from tidegate.rollout import RolloutKV

    nc = await nats.connect(world["nats"].url)
    try:
        return await (await RolloutKV.open(nc.jetstream(), world["app"].nats.kv_bucket)).get()
    finally:
        await nc.close()


def _assert_rolled_back(world, driver: LocalDriver, reason: str) -> None:  # type: ignore[no-untyped-def]
    st = driver.status
    assert st is not None and st.phase == "RolledBack" and st.rollbackReason == reason
    assert world["registry"].slot("active") == "old-1"
    assert world["registry"].slot("shadow") is None
    kv = asyncio.run(_kv_state(world))
    assert kv is not None and kv.mode == "disabled" and kv.active_model_id == "old-1"
    assert kv.candidate_model_id is None
    events = asyncio.run(control_events(world["nats"].url, driver.release.name))
    assert [(e["from"], e["to"]) for e in events][-1] == ("canary", "disabled")
    assert events[-1]["severity"] == "WARN" and reason in events[-1]["reason"]
    last = st.decisions[-1]
    assert last.action == "rollback" and reason in last.reason
    rollbacks = driver.metrics.registry.get_sample_value("rollback_total", {"reason": reason})
    assert rollbacks == 1.0
    switch = driver.metrics.registry.get_sample_value("mode_switch_total",
                                                       {"from": "canary", "to": "disabled", "reason": reason})
    assert switch == 1.0          # the MODE_SWITCH event above, counted with the rollback's reason


def test_healthy_candidate_is_promoted_through_every_stage(world) -> None:  # type: ignore[no-untyped-def]
    driver = _driver(world, unique("healthy"))
    status = asyncio.run(asyncio.wait_for(driver.run(), 60))
    assert status.phase == "Promoted" and status.weight == 100 and status.stage == "full"
    entered = [d.reason.split(" ")[1] for d in status.decisions if d.action in ("advance", "promote")]
    assert entered == ["shadow", "canary", "ramp-25", "ramp-50", "full"]
    assert world["registry"].slot("active") == "cand-1"
    kv = asyncio.run(_kv_state(world))
    assert kv is not None and kv.mode == "full" and kv.active_model_id == "cand-1" and kv.canary_fraction == 1.0
    events = asyncio.run(control_events(world["nats"].url, driver.release.name))
    assert [(e["from"], e["to"]) for e in events] == [("disabled", "canary"), ("canary", "full")]
    # every stage lasted at least its duration with every gate PASS before advancing
    advances = [d for d in status.decisions if d.action in ("advance", "promote")]
    for (a, b), need in zip(itertools.pairwise(advances), (1, 2, 1, 1), strict=True):
        assert seconds_between(a.at, b.at) >= need
    record = world["registry"].manifest().releases[-1]
    assert record["name"] == driver.release.name and record["outcome"] == "Promoted"
    assert record["metrics"]["pr_auc"] == 0.31 and "high-vol" in record["regimes"]
    assert driver.metrics.registry.get_sample_value(
        "gate_evaluations_total", {"gate": "winrate", "verdict": "PASS"}) >= 1


def test_winrate_drop_with_enough_samples_rolls_back(world) -> None:  # type: ignore[no-untyped-def]
    driver = _driver(world, unique("winrate"))

    async def scenario() -> None:
        task = asyncio.create_task(driver.run())
        await wait_until(lambda: driver.status is not None and driver.status.phase == "Canary", 20, "Canary")
        world["exporter"].set(winrate_canary=0.45, winrate_baseline_active=0.55, sample_canary=400)
        await asyncio.wait_for(task, 20)

    asyncio.run(scenario())
    _assert_rolled_back(world, driver, "winrate")
    fail = next(d for d in driver.status.decisions if d.gate == "winrate" and d.verdict == "FAIL")
    ev = fail.evidence
    assert ev is not None and ev["n_canary"] == fail.sample > 30 and ev["n_baseline"] > ev["n_canary"]
    assert fail.value == pytest.approx(0.45, abs=0.04) and fail.threshold == pytest.approx(0.50, abs=0.02)
    assert ev["upper_one_sided"] < 0 and ev["log_lambda_one_sided"] >= ev["log_bound"] and ev["alpha"] == 0.05
    assert 'trades_closed_total{route="canary",model="cand-1"' in fail.query


def test_same_drop_with_too_few_samples_waits(world) -> None:  # type: ignore[no-untyped-def]
    driver = _driver(world, unique("fewsamples"))

    async def scenario() -> None:
        task = asyncio.create_task(driver.run())
        await wait_until(lambda: driver.status is not None and driver.status.phase == "Canary", 20, "Canary")
        world["exporter"].set(winrate_canary=0.45, winrate_baseline_active=0.55, sample_canary=50)
        await asyncio.sleep(5)  # > 2x the canary duration: a PASS would have advanced by now
        st = driver.status
        assert st is not None and st.phase == "Canary" and st.stage == "canary"
        assert st.gates["winrate"].verdict == "INSUFFICIENT" and st.gates["winrate"].sample < 200
        assert world["registry"].slot("active") == "old-1"
        driver.store.enqueue(__import__("tidegate.release.decision", fromlist=["Command"]).Command("abort"))
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert driver.status.rollbackReason == "manual_abort"
    assert not any(d.action == "rollback" and "winrate" in d.reason for d in driver.status.decisions)
    assert any(d.action == "extend" and "< min_sample 200" in d.reason for d in driver.status.decisions)


def test_one_parity_failure_rolls_back_immediately(world) -> None:  # type: ignore[no-untyped-def]
    driver = _driver(world, unique("parity"))

    async def scenario() -> None:
        task = asyncio.create_task(driver.run())
        await wait_until(lambda: driver.status is not None and driver.status.phase == "Canary", 20, "Canary")
        world["exporter"].parity.inc()
        await asyncio.wait_for(task, 20)

    asyncio.run(scenario())
    _assert_rolled_back(world, driver, "parity")
    parity = [d for d in driver.status.decisions if d.gate == "parity" and d.verdict == "FAIL"]
    assert parity and parity[0].value > 0 and "increase(onnx_parity_fail_total{instance=" in parity[0].query


def test_a_supervisor_counting_releases_serves_the_engines_rollback_to_prometheus(world) -> None:  # type: ignore[no-untyped-def]
    """Compose: release.sh runs on the host, compose's Prometheus scrapes only the supervisor. The
    supervisor mirrors the engine's mode_switch_total / rollback_total from the control stream, each
    switch once, and not its own halts (it counts those where it makes them)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from tidegate.bus.connection import Bus
    from tidegate.bus.consumer import consumer_backlog
    from tidegate.metrics import build
    from tidegate.release.prometheus import PrometheusProvider
    from tidegate.rollout.supervisor import MIRROR_DURABLE, run_supervisor

    prom, app = world["prom"], world["app"]
    slot = prom.claim_slot()
    reg = CollectorRegistry()
    metrics = build(reg, "release")
    server, thread = start_http_server(slot, addr="127.0.0.1", registry=reg)
    provider = PrometheusProvider(prom.url, timeout=2.0)
    driver = _driver(world, unique("mirror"))

    async def bound() -> bool:
        bus = await Bus.open(world["nats"].url, service="test")
        try:
            info = await bus.js.consumer_info(bus.subjects.stream("CONTROL"), MIRROR_DURABLE)
            return info is not None and await consumer_backlog(bus, bus.subjects.stream("CONTROL"), MIRROR_DURABLE) == 0
        except Exception:
            return False
        finally:
            await bus.nc.close()

    async def scenario() -> None:
        stop = asyncio.Event()
        supervisor = asyncio.create_task(run_supervisor(app, provider, world["registry"], stop, interval=0.2,
                                                        metrics=metrics, count_releases=True))
        deadline = asyncio.get_running_loop().time() + 20
        while not await bound():
            assert asyncio.get_running_loop().time() < deadline, "the mirror's durable was never created"
            await asyncio.sleep(0.1)
        task = asyncio.create_task(driver.run())
        await wait_until(lambda: driver.status is not None and driver.status.phase == "Canary", 20, "Canary")
        world["exporter"].parity.inc()
        await asyncio.wait_for(task, 20)
        await wait_until(lambda: reg.get_sample_value("rollback_total", {"reason": "parity"}) == 1.0, 10,
                         "the mirrored rollback")
        stop.set()
        assert await supervisor == []      # config says disabled: the supervisor itself halted nothing

    try:
        asyncio.run(scenario())
        _assert_rolled_back(world, driver, "parity")
        def counts(registry, name: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
            return {tuple(sorted(x.labels.items())): x.value for fam in registry.collect() for x in fam.samples
                    if x.name == name}

        for name in ("mode_switch_total", "rollback_total"):   # the supervisor's counts are the engine's
            mine, theirs = counts(reg, name), counts(driver.metrics.registry, name)
            assert mine == theirs and mine, (name, mine, theirs)
        sel = f'rollback_total{{instance="127.0.0.1:{slot}",reason="parity"}}'
        deadline, got = time.monotonic() + 10, []
        while time.monotonic() < deadline and not got:
            got = prom.query(f"{sel} == 1")
            time.sleep(0.1)
        assert got, f"{sel} never scraped at 1"
    finally:
        provider.close()
        server.shutdown()
        thread.join(5)
        prom.release_slot(slot)


def test_psi_above_block_rolls_back(world) -> None:  # type: ignore[no-untyped-def]
    driver = _driver(world, unique("psi"))

    async def scenario() -> None:
        task = asyncio.create_task(driver.run())
        await wait_until(lambda: driver.status is not None and driver.status.phase == "Canary", 20, "Canary")
        world["exporter"].set(psi=0.45)
        await asyncio.wait_for(task, 20)

    asyncio.run(scenario())
    _assert_rolled_back(world, driver, "psi")
    fail = next(d for d in driver.status.decisions if d.gate == "psi" and d.verdict == "FAIL")
    assert fail.value == pytest.approx(0.45) and fail.threshold == pytest.approx(0.3)



def test_prometheus_down_holds_without_promotion_then_rolls_back_after_max_hold(
        world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A Prometheus of its own (the shared one must stay up), stopped once the canary starts."""
    from conftest import need_binary

    from tidegate.infra.prometheus_server import PrometheusServer

    prom = PrometheusServer(tmp_path / "own-prom", slots=1, binary=need_binary("prometheus")).start()
    port = prom.claim_slot()
    exporter = Exporter(port)
    try:
        prom.wait_up(port, timeout=30)
        rel = parse_release(release_doc(unique("promdown"), prometheus_url=prom.url,
                                        guardRails={"onUnavailable": {"action": "hold", "maxHold": 4,
                                                                      "then": "rollback"}}))
        driver = LocalDriver(rel, state_dir=tmp_path / "state", app=world["app"], registry=world["registry"],
                             nats_url=world["nats"].url)

        async def scenario() -> None:
            task = asyncio.create_task(driver.run())
            await wait_until(lambda: driver.status is not None and driver.status.phase == "Canary", 30, "Canary")
            prom.stop()
            await asyncio.wait_for(task, 30)

        asyncio.run(scenario())
    finally:
        exporter.close()
        prom.stop()
    st = driver.status
    assert st is not None
    _assert_rolled_back(world, driver, "unavailable")
    canary_at = next(d.at for d in st.decisions if d.action == "advance" and "entered canary" in d.reason)
    after = [d for d in st.decisions if d.at >= canary_at]
    assert not any(d.action in ("advance", "promote") for d in after if d.at > canary_at)
    hold = next(d for d in after if d.action == "hold")
    assert hold.verdict == "UNAVAILABLE" and "query failed" in hold.reason
    rollback = st.decisions[-1]
    assert seconds_between(hold.at, rollback.at) >= 4.0
    assert "maxHold" in rollback.reason
