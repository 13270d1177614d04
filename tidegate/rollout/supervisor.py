"""Supervision of a canary that no release started: the seed's three rollback conditions.

The seed's canary steps start a canary from config alone (``rollout.mode: canary``, nothing
stored, the registry's shadow slot as the candidate). A ModelRelease is supervised by the
release engine; such a canary had no supervisor, so a broken candidate traded its share for
as long as nobody looked. ``tidegate rollout supervise`` closes that gap with the engine's
own gates (win rate against the live baseline, ONNX parity, PSI/KS drift), evaluated in
Prometheus with config/app.yml's ``rollout_guard``, and on a FAIL it halts the canary the
way a release rollback does: the stored state goes to ``mode: disabled`` (paper only, the
active model keeps serving) with the reason, a MODE_SWITCH control event is published, and
``rollback_total{reason}`` / ``mode_switch_total`` count it.

The decision is a pure function (:func:`supervise_decision`); this module's loop is the thin
shell around it. A canary that a release started (the stored state names a ``release``) is
left to its release engine, and nothing is done while nobody routes to a canary.

With ``count_releases`` the supervisor also mirrors every release engine's ``mode_switch_total``
and ``rollback_total`` from the MODE_SWITCH events on ``control:events`` (a durable consumer,
each event counted once by its id). That is for a Prometheus that scrapes the supervisor and not
the engines: in the Compose stack ``scripts/release.sh`` runs on the host, beyond the reach of
compose's Prometheus, while its switches reach NATS. Enable it only where nothing scrapes the
engines themselves, or the switches count twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats
from nats.js import JetStreamContext

from tidegate.bus.connection import Bus, ensure_streams
from tidegate.bus.consumer import DurableConsumer, MessageCounters
from tidegate.bus.control import ControlEvent, publish_control
from tidegate.bus.dedupe import RecentIds
from tidegate.bus.subjects import Subjects
from tidegate.config.schema import AppConfig
from tidegate.registry import Registry
from tidegate.release.gates import GateContext
from tidegate.release.prometheus import GateProvider
from tidegate.release.spec import Limits, ReleaseSpec, effective_limits
from tidegate.release.verdicts import GateVerdict, Verdict
from tidegate.rollout.kv import RolloutKV, config_policy
from tidegate.rollout.state import RolloutState

log = logging.getLogger(__name__)

ROLLBACK_GATES = ("winrate", "parity", "psi", "ks")   # the seed's three automatic rollback conditions
ROLLBACK_PREFIX = "rollback: "    # a release rollback's MODE_SWITCH reason: "rollback: <gate>"
MIRROR_DURABLE = "supervisor_release_counts"


@dataclass(frozen=True)
class Supervision:
    action: str            # "none" | "rollback"
    reason: str
    gate: str = ""


def config_limits(app: AppConfig) -> Limits:
    """The limits of a config-started canary: ``rollout_guard`` exactly, as a release overriding nothing."""
    lim = effective_limits(ReleaseSpec(modelId="config-canary"), app.rollout_guard)
    return lim.model_copy(update={"gates": ROLLBACK_GATES})


def supervised(state: RolloutState) -> bool:
    """Is this canary ours to supervise? Live canary traffic that no release engine owns."""
    return state.mode == "canary" and state.canary_fraction > 0 and not state.release


def supervise_decision(state: RolloutState, verdicts: Sequence[GateVerdict]) -> Supervision:
    """Roll back on the first FAIL of a rollback gate; anything else (PASS, INSUFFICIENT, UNAVAILABLE) waits.

    UNAVAILABLE never rolls a canary back here: without a release there is no maxHold policy to
    apply, and an outage of Prometheus is not evidence against the candidate (alerts cover it).
    """
    if not supervised(state):
        return Supervision("none", "not a config-started canary")
    for v in verdicts:
        if v.verdict == Verdict.FAIL and v.gate in ROLLBACK_GATES:
            return Supervision("rollback", f"config canary rolled back ({v.gate}): {v.reason}", v.gate)
    seen = ", ".join(f"{v.gate}={v.verdict.value}" for v in verdicts)
    return Supervision("none", f"config canary healthy so far: {seen}")


def gate_context(state: RolloutState, shadow_id: str | None, active_id: str | None) -> GateContext:
    """Whose trades count: the candidate (stored, else the registry's shadow slot) against the active
    model; since_s None, so the win-rate evidence is ``rollout_guard.winrate_window``."""
    return GateContext(candidate=state.candidate_model_id or shadow_id,
                       active=state.active_model_id or active_id, since_s=None)


async def look_once(app: AppConfig, provider: GateProvider, state: RolloutState, *, shadow_id: str | None,
                    active_id: str | None, limits: Limits | None = None) -> tuple[Supervision, list[GateVerdict]]:
    """One evaluation of the rollback gates (blocking Prometheus queries off the event loop); ``limits``
    default to :func:`config_limits` (a test scopes them to its own exporter with ``labels``)."""
    if not supervised(state):
        return Supervision("none", "not a config-started canary"), []
    limits = limits or config_limits(app)
    ctx = gate_context(state, shadow_id, active_id)
    verdicts = await asyncio.to_thread(provider.evaluate, ROLLBACK_GATES, limits, ctx)
    return supervise_decision(state, verdicts), verdicts


def engine_counts(event: ControlEvent) -> list[tuple[str, dict[str, str]]]:
    """The counter increments a release engine made when it published ``event``: (metric, labels).

    Only a release's switches (``release`` set) are mirrored; the supervisor counts its own halts
    where it makes them. An engine older than the ``label`` field leaves the switch's reason label
    empty; a rollback's reason is then read from the event's "rollback: <gate>".
    """
    if event.kind != "MODE_SWITCH" or not event.release:
        return []
    out = [("mode_switch_total", {"from": event.from_mode or "", "to": event.to_mode or "", "reason": event.label})]
    if event.to_mode == "disabled" and event.reason.startswith(ROLLBACK_PREFIX):
        out.append(("rollback_total", {"reason": event.label or event.reason[len(ROLLBACK_PREFIX):]}))
    return out


def release_mirror(bus: Bus, app: AppConfig, metrics: dict[str, Any]) -> DurableConsumer[Any]:
    """A durable consumer of ``control:events`` that applies :func:`engine_counts` once per event id
    (a redelivery after a lost ack is not counted again; a new durable starts at new events)."""
    subjects = Subjects(app.nats.namespace)
    seen = RecentIds(10_000)

    async def on_events(batch: Sequence[ControlEvent]) -> None:
        for ev in batch:
            if ev.event_id and not seen.add(ev.event_id):
                continue
            for name, labels in engine_counts(ev):
                metrics[name].labels(**labels).inc()

    return DurableConsumer(bus, stream=subjects.stream("CONTROL"), durable=MIRROR_DURABLE, subject=subjects.control,
                           schema=ControlEvent, handler=on_events, counters=MessageCounters("supervisor", metrics),
                           batch=64)


async def halt(app: AppConfig, store: RolloutKV, js: JetStreamContext, effective: RolloutState,
               decision: Supervision, metrics: dict[str, Any]) -> RolloutState:
    """Store ``mode: disabled`` (the effective state's models kept), publish MODE_SWITCH, count it."""
    new = effective.model_copy(update={"mode": "disabled", "canary_fraction": 0.0, "reason": decision.reason,
                                       "revision": effective.revision + 1})
    await store.put(new)
    event = ControlEvent(kind="MODE_SWITCH", severity="WARN", from_mode="canary", to_mode="disabled",
                         reason=f"rollback: {decision.gate}", detail=decision.reason[:1000],
                         event_id=f"config-canary-rollback:{new.revision}:{effective.candidate_model_id}",
                         label=decision.gate)
    await publish_control(js, event, Subjects(app.nats.namespace))
    metrics["rollback_total"].labels(reason=decision.gate).inc()
    metrics["mode_switch_total"].labels(**{"from": "canary", "to": "disabled", "reason": decision.gate}).inc()
    return new


async def run_supervisor(app: AppConfig, provider: GateProvider, registry: Registry, stop: asyncio.Event, *,
                         interval: float, metrics: dict[str, Any], once: bool = False,
                         limits: Limits | None = None, count_releases: bool = False) -> list[Supervision]:
    """Look every ``interval`` seconds until ``stop``; returns the decisions taken (for tests and logs).
    ``count_releases`` runs :func:`release_mirror` beside the looks until ``stop``."""
    nc = await nats.connect(app.nats.url, connect_timeout=app.nats.connect_timeout_s, max_reconnect_attempts=-1)
    taken: list[Supervision] = []
    mirror: asyncio.Task[None] | None = None
    try:
        if count_releases and not once:
            bus = Bus(nc, service="supervisor", subjects=Subjects(app.nats.namespace))
            await ensure_streams(bus.js, bus.subjects)
            mirror = asyncio.create_task(release_mirror(bus, app, metrics).run(stop))
        store = await RolloutKV.open(nc.jetstream(), app.nats.kv_bucket)
        policy = config_policy(app.rollout)
        while not stop.is_set():
            effective = policy(await store.get())
            decision, verdicts = await look_once(app, provider, effective, shadow_id=registry.slot("shadow"),
                                                 active_id=registry.slot("active"), limits=limits)
            if verdicts:
                log.info("%s", decision.reason)
            if decision.action == "rollback":
                new = await halt(app, store, nc.jetstream(), effective, decision, metrics)
                log.warning("%s; stored mode disabled (revision %d)", decision.reason, new.revision)
                taken.append(decision)
            if once:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        if mirror is not None:
            await asyncio.gather(mirror, return_exceptions=True)
        await nc.drain()
    return taken
