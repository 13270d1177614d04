"""The win-rate gate reaches PASS end to end with config/app.yml's shipped guard rails.

Acceptance: with config/app.yml's defaults (``rollout.canary_fraction`` 10 %,
``rollout_guard``: min_sample 200, delta 5 pp, the sequential test at alpha 0.05) a long
enough replay gets the win-rate gate to PASS. Nothing is scaled down for the test: the
limits are ``effective_limits`` of a release spec that overrides no guard rail (only
``analysis.labels`` scope the queries to this test's risk instance) on top of the shipped
``rollout_guard``, and the gate is evaluated exactly as the release engine does, by
``PrometheusProvider.evaluate(["winrate"], limits, GateContext(...))`` over the time since the
canary stage began.

The services run as real processes (collector → signal_engine → ai_scorer → executor (paper)
→ risk) on the session's nats-server, the risk service scraped by the session's Prometheus.
The collector loops the capture (``collector.loop``), so the replay is as long as the gate
needs. It is an A/A run: one trained artifact registered under two ids, ``m-act`` (active:
paper route) and ``m-cand`` (candidate: canary route), so the models are equal and a FAIL on
the way would be a false rollback; the test fails on one, with the evidence.

What PASS takes: ``min_sample`` counts the canary's *effective* trades (n / design effect; the
baseline needs 30), and trades come in bursts (risk's 2 s clusters), so the evidence grows with
the number of bursts, i.e. with market time, more than with trades. Measured on 2 shared cores
under an earlier rule that also asked min_sample effective trades of the baseline, at PASS:
390-1050 canary and 4200-10 000 baseline trades, design effects 1.9-5.2 (canary) and 21-47
(baseline: its bursts hold ~20 trades each), ~1300-3300 s of market time, i.e. 4-9 loops of the 345 s
capture (the same market replayed, so the loops are not independent markets; for an A/A that
does not matter). The time varies most with single bursts: the paper executor keeps one resting
entry per approved signal, so one sweep of the book fills hundreds at once (a run's streams
held clusters of 443, 303 and 296 paper trades filled within 0-3 s; the 296 all won, the
next largest all lost). One such all-win cluster lifted the design effects from 2.4 / 19 to
17 / 150, and 260 s later the effective canary count was still 172 < 200 (that run > 6 min).

Why SPEED 12 and a longer ``executor.max_signal_age``: the executor drops an approved signal
older (in market time) than ``max_signal_age`` at its newest book, and a signal's path
(signal_engine → scorer → executor, two JetStream hops) is slower than the executor's own book
subscription. Measured: at speed 0 (as fast as possible) trading stopped after ~30 s, every
signal stale; at 4x the gate was still INSUFFICIENT after 360 s (canary effective trades 159);
at 8x PASS came after 305 s (1856 stale drops); at 12x after 106-274 s in three runs and
> 347 s in a fourth, the 2 cores saturated and 2000-13000 stale drops at MAX_SIGNAL_AGE 60 s.
Stale drops do not depend on the route (the routing hash is independent of timing), so the
A/A comparison stays fair; they are printed.
Faster is not better: at 16x the lag made entries near-random, the win rates fell to ~0.5 %
(from 4-7 % at 4-12x), the canary's design effect to 1 (clusters of losses carry no
correlation) and the gate PASSed after 200 raw trades in 66 s, a degenerate market. So the test
also requires a baseline win rate of at least MIN_BASELINE_WINRATE at PASS.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from services_harness import CAPTURE_DIR, CAPTURE_FILE, REPO, Services, unique_names, write_config
from test_services_pipeline import (  # the pipeline test's helpers, reused as they are
    Prom,
    median_score,
    slots,  # noqa: F401  (a fixture: pytest finds it in this module's namespace)
    wait_for,
    write_rollout,
)

SYMBOL = "BTCUSDT"
ACTIVE, CANDIDATE = "m-act", "m-cand"
SPEED = 12.0                 # replay speed (see the module docstring)
MAX_SIGNAL_AGE = 60.0        # executor.max_signal_age, market seconds
MIN_BASELINE_WINRATE = 0.02  # below it the replay has degenerated (see the module docstring)
TAU_EVENTS = 40_000          # events of the capture the entry threshold (median score) is taken on
POLL_S = 2.0
STALL_S = 60.0               # wall seconds without a closed trade that count as a stalled pipeline
TIMEOUT_S = 600.0            # wall seconds from the canary start (PASS took 106 to ~420 s at 12x)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def capture() -> Path:
    path = CAPTURE_DIR / CAPTURE_FILE
    if not path.is_file():
        msg = f"the end-to-end gate test replays the real capture, and {path} is absent (see ../shared/data/capture)"
        if IN_CI:
            pytest.fail(f"CI=true and {msg}", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def models(capture: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One LightGBM → ONNX model trained on the capture, and the same bytes under the candidate's id."""
    from tidegate.pipeline import train_end_to_end

    root = tmp_path_factory.mktemp("models")
    active = train_end_to_end(root / ACTIVE, model_id=ACTIVE, seed=7, capture_dir=CAPTURE_DIR)
    cand = root / CANDIDATE
    shutil.copytree(active, cand)
    meta = json.loads((cand / "model.json").read_text())
    meta["id"] = CANDIDATE  # same model.onnx, so its sha256 still matches
    (cand / "model.json").write_text(json.dumps(meta))
    return {ACTIVE: active, CANDIDATE: cand}


def tau_messages(capture: Path) -> list[Any]:
    """The first TAU_EVENTS events of the capture as the collector publishes them."""
    from tidegate.bus.market_messages import MarketMessages
    from tidegate.market.capture import read_capture
    from tidegate.services.collector import select_events

    conv = MarketMessages(SYMBOL, 10)
    msgs = (conv.convert(ev) for ev in select_events(read_capture(capture), start_offset_s=0.0,
                                                       max_events=TAU_EVENTS))
    return [m for m in msgs if m is not None]


def progress(ev: dict[str, float]) -> str:
    """One line of the gate's evidence: counts, win rates, design effects, clusters."""
    def g(k: str) -> float:
        return ev.get(k, math.nan)

    return (f"n canary {g('n_canary'):5.0f} baseline {g('n_baseline'):5.0f} win rate canary "
            f"{g('winrate_canary'):.4f} baseline {g('winrate_baseline_active'):.4f} deff "
            f"{g('design_effect_canary'):.2f}/{g('design_effect_baseline'):.2f} clusters "
            f"{g('clusters_canary'):.0f}/{g('clusters_baseline'):.0f} CS [{g('lower'):+.4f}, {g('upper'):+.4f}]")


def test_winrate_gate_passes_an_aa_canary_with_the_shipped_guard_rails(
        nats_server, prometheus, slots, capture, models, tmp_path):  # type: ignore[no-untyped-def]  # noqa: F811
    from tidegate.config import load_config
    from tidegate.registry import Registry
    from tidegate.release.gates import GateContext
    from tidegate.release.prometheus import PrometheusProvider
    from tidegate.release.spec import effective_limits, parse_release
    from tidegate.release.verdicts import Verdict

    app = load_config(REPO / "config" / "app.yml")
    names = ("signal_engine", "ai_scorer", "executor", "risk", "collector")
    ports = {n: slots() for n in names}
    risk_instance = f"127.0.0.1:{ports['risk']}"
    release = parse_release({"apiVersion": "tidegate.dev/v1alpha1", "kind": "ModelRelease",
                             "metadata": {"name": "e2e"},
                             "spec": {"modelId": CANDIDATE, "previousModelId": ACTIVE,
                                      "analysis": {"labels": {"instance": risk_instance}}}})
    limits = effective_limits(release.spec, app.rollout_guard)
    guard = app.rollout_guard
    assert (limits.min_sample, limits.winrate_delta_pp, limits.winrate_test, limits.winrate_alpha) == \
        (guard.min_sample, guard.winrate_delta_pp, guard.winrate_test, guard.winrate_alpha)
    fraction = app.rollout.canary_fraction
    print(f"\nshipped guard rails: min_sample {limits.min_sample}, delta {limits.winrate_delta_pp:g} pp, "
          f"test {limits.winrate_test}, alpha {limits.winrate_alpha:g}, tau {limits.winrate_tau:g}; "
          f"canary fraction {fraction:g}; replay speed {SPEED:g}, max_signal_age {MAX_SIGNAL_AGE:g} s")

    tau = median_score(tau_messages(capture), models[ACTIVE])
    reg = Registry(tmp_path / "registry")
    for path in models.values():
        reg.register(path)
    reg.set_slot("active", ACTIVE, reason="e2e gate test")
    ns, bucket = unique_names("wrg")
    cfg = write_config(tmp_path / "app.yml", nats_url=nats_server.url, namespace=ns, kv_bucket=bucket,
                       registry_root=tmp_path / "registry", overrides={
                           "collector": {"source": "capture", "loop": True, "speed": SPEED},
                           "executor": {"warmup_seconds": 1.0, "max_signal_age": MAX_SIGNAL_AGE},
                           "ai_scorer": {"shadow": {"enabled": False}}})
    asyncio.run(write_rollout(nats_server.url, bucket, mode="canary", canary_fraction=fraction, rng_seed=1337,
                              active_model_id=ACTIVE, candidate_model_id=CANDIDATE, tau_entry=round(tau, 6),
                              release="e2e"))

    svc = Services(tmp_path, cfg)
    prom = Prom(prometheus, ports)
    provider = PrometheusProvider(prometheus.url)
    try:
        for n in names[:-1]:
            svc.start(n, ports[n])
        svc.wait_healthy(names[:-1])
        # risk creates both arms' series at 0 when it sees the canary state; once Prometheus has them,
        # increase() over the stage counts the very first trade
        wait_for("the arms' zero series scraped", lambda: all(
            prom.one("risk", "trades_closed_total", route=r, model=m) == 0
            for r, m in (("canary", CANDIDATE), ("paper", ACTIVE))), timeout=30)
        svc.start("collector", ports["collector"])
        svc.wait_healthy(["collector"])
        start = time.time()
        ctx = lambda: GateContext(candidate=CANDIDATE, active=ACTIVE, since_s=time.time() - start)  # noqa: E731

        def snapshot() -> str:
            """Where the flow is: each stage's counter, so a stall names the stage that stopped."""
            stale = prom.one("executor", "orders_rejected_total", reason="stale_signal") or 0.0
            return (f"{prom.one('collector', 'md_events_published_total') or 0:.0f} events published, "
                    f"{prom.one('signal_engine', 'candidates_emitted_total') or 0:.0f} candidates, "
                    f"{prom.one('ai_scorer', 'signals_approved_total') or 0:.0f} approved, {stale:.0f} dropped "
                    f"stale, trades opened {prom.get('executor', 'trades_opened_total')}, risk closed "
                    f"{prom.get('risk', 'trades_closed_total')}")

        def consumed() -> str:
            """Messages each consumer handled, by subject: the one that stopped counting is the stall."""
            def by_subject(n: str) -> list[tuple[str, int]]:
                rows = prom.get(n, "messages_processed_total").items()
                return sorted((dict(k).get("subject", "?"), int(v)) for k, v in rows)
            return "; ".join(f"{n}: {by_subject(n)}" for n in names)

        def stalled(why: str) -> str:
            tails = "\n".join(f"--- {n}.log (tail)\n{svc.log(n)[-1500:]}" for n in names)
            return f"{why}\npipeline: {snapshot()}\nconsumed: {consumed()}\n{tails}"

        seen: dict[str, int] = {}
        last = None
        next_print = 0.0
        evidence_n, grew_at = -1.0, 0.0
        while True:
            elapsed = time.time() - start
            assert elapsed < TIMEOUT_S, stalled(
                f"the win-rate gate did not PASS within {TIMEOUT_S:g}s; verdicts seen {seen}; last: "
                f"{last and last.verdict} {last and last.reason} {last and last.evidence}")
            for n in names:
                assert svc.alive(n), f"{n} died:\n{svc.log(n)[-2000:]}"
            (last,) = provider.evaluate(["winrate"], limits, ctx())
            seen[last.verdict.value] = seen.get(last.verdict.value, 0) + 1
            ev = last.evidence or {}
            n_now = ev.get("n_canary", 0.0) + ev.get("n_baseline", 0.0)
            if n_now > evidence_n + 0.5:
                evidence_n, grew_at = n_now, elapsed
            # the evidence grows with every closed trade; a flat count means a stage stopped, and
            # waiting on would only hide which one
            assert elapsed - grew_at < STALL_S, stalled(
                f"no trade closed for {elapsed - grew_at:.0f}s (evidence {evidence_n:.0f} trades)")
            if elapsed >= next_print or last.verdict in (Verdict.PASS, Verdict.FAIL):
                stale = prom.one("executor", "orders_rejected_total", reason="stale_signal") or 0.0
                print(f"  {elapsed:6.1f}s {last.verdict.value:12s} {progress(ev)} stale drops {stale:.0f}")
                next_print = elapsed + 15.0
            assert last.verdict != Verdict.FAIL, f"A/A canary rolled back (false FAIL): {last.reason}; evidence {ev}"
            if last.verdict == Verdict.PASS:
                break
            time.sleep(POLL_S)

        ev = dict(last.evidence or {})
        took = time.time() - start
        n_c, n_b = int(ev["n_canary"]), int(ev["n_baseline"])
        stale = prom.one("executor", "orders_rejected_total", reason="stale_signal") or 0.0
        reconnects = sum(svc.log(n).count("nats disconnected") for n in names)
        print(f"PASS after {took:.1f}s wall ({(n_c + n_b) / took:.1f} evidence trades/s, ~{took * SPEED:.0f}s of "
              f"market at the collector); verdicts seen {seen}")
        print(f"pipeline: {snapshot()}; NATS disconnects {reconnects}")
        print(f"reason: {last.reason}")
        print("evidence: " + json.dumps(ev, indent=None, sort_keys=True))
        assert n_c >= limits.min_sample, ev
        assert ev["winrate_baseline_active"] >= MIN_BASELINE_WINRATE, \
            f"PASS on a degenerate replay (pipeline lag? {stale:.0f} stale drops): {ev}"
        assert n_b > n_c, ev
        assert ev["n_canary"] / ev["design_effect_canary"] >= limits.min_sample, ev
        assert f"n canary {n_c} / baseline {n_b}" in last.reason, last.reason
        assert last.sample == n_c and last.value == pytest.approx(ev["winrate_canary"])
        for n in names:
            assert svc.alive(n), f"{n} died:\n{svc.log(n)[-2000:]}"
    finally:
        provider.close()
        rcs = svc.stop_all()
    assert rcs == dict.fromkeys(names, 0), {n: svc.log(n)[-1500:] for n, rc in rcs.items() if rc}
