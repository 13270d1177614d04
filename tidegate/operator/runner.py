"""One release, driven in the operator: the local driver's loop with the Kubernetes store.

Each ModelRelease gets a kopf daemon; the daemon runs this loop in its own thread
with its own event loop, so the blocking Kubernetes client calls (status patches,
Events) never stall kopf's loop or another release. Per tick: react to a spec
change, run ``LocalDriver.tick`` (drain pending effects, read gates, call the pure
engine, save status, apply effects), then post one Kubernetes Event per new
decision, so ``kubectl describe mr NAME`` answers "why did it roll back?".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from tidegate.config.schema import AppConfig
from tidegate.operator.crd import GROUP, KIND, VERSION
from tidegate.operator.store import KubeReleaseStore, release_from_body
from tidegate.registry import Registry
from tidegate.release.decision import Command
from tidegate.release.effects import ReleaseMetrics
from tidegate.release.local import LocalDriver
from tidegate.release.spec import (
    TERMINAL_PHASES,
    DecisionRecord,
    ReleaseSpec,
    ReleaseStatus,
    SpecError,
    effective_limits,
)
from tidegate.release.transitions import iso
from tidegate.release.validation import DEFAULT_CHECKS, Check

log = logging.getLogger(__name__)
STAGE_PHASES = ("Shadow", "Canary", "Ramping", "Paused")
WARNING_ACTIONS = {"rollback", "fail", "hold", "reject", "extend"}


@dataclass
class OperatorContext:
    """What every release driver in this operator shares."""

    app: AppConfig
    registry_root: Path
    repo_root: Path = Path(".")
    metrics: ReleaseMetrics = field(default_factory=ReleaseMetrics)
    checks: Sequence[Check] = DEFAULT_CHECKS
    poll: float = 0.5                      # how often a sleeping loop looks for commands/spec changes
    api_factory: Callable[[], client.CustomObjectsApi] = client.CustomObjectsApi
    events_factory: Callable[[], client.CoreV1Api] = client.CoreV1Api
    instance: str = field(default_factory=lambda: instance_id())  # which replica posted an Event


def instance_id() -> str:
    """This replica's name: the pod name (POD_ID, also kopf's peering identity), else host and pid."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"


def restart_stage_analysis(status: ReleaseStatus, generation: int | None, now: dt.datetime) -> ReleaseStatus:
    """A spec edited mid-stage restarts that stage's analysis clock and failure counters.

    Pure. Verdicts gathered under the old guard rails say nothing about the new ones,
    so the stage must earn its ``duration`` again (Flagger #30: never promote on an
    analysis that began under a different spec).
    """
    st = status.model_copy(deep=True)
    st.observedGeneration = generation
    if st.phase not in STAGE_PHASES:
        return st
    st.stageStartedAt = iso(now)
    st.holdSince = None
    for gate in st.gates.values():
        gate.consecutiveFailures = 0
    st.decisions.append(DecisionRecord(at=iso(now), stage=st.stage, action="restart",
                                       reason=f"spec changed (generation {generation}): stage analysis restarted"))
    return st


def new_decisions(before: Sequence[DecisionRecord], after: Sequence[DecisionRecord]) -> list[DecisionRecord]:
    """Entries appended since ``before`` (the log is append-only, trimmed at the front)."""
    if not before:
        return list(after)
    last = before[-1]
    for i in range(len(after) - 1, -1, -1):
        if after[i] == last:
            return list(after[i + 1:])
    return list(after)


def event_message(d: DecisionRecord) -> str:
    parts = [f"stage {d.stage or '-'}"]
    if d.gate:
        gate = f"gate {d.gate} {d.verdict}".rstrip()
        if d.value is not None:
            gate += f" value={d.value:.4g}"
        if d.threshold is not None:
            gate += f" threshold={d.threshold:.4g}"
        if d.sample is not None:
            gate += f" n={d.sample:.0f}"
        parts.append(gate)
    parts.append(d.reason)
    return ": ".join(p for p in parts if p)[:1024]


def idle(st: ReleaseStatus | None, spec: ReleaseSpec) -> bool:
    """Nothing left to evaluate: a terminal phase with its effects applied. A Promoted release whose
    thresholds tune adaptively is not idle: after the freeze it steps them every ``adaptive.interval``
    (the operator used to stop evaluating it, so the thresholds never moved on Kubernetes)."""
    if st is None or st.phase not in TERMINAL_PHASES or st.pendingEffects:
        return False
    return not (st.phase == "Promoted" and spec.thresholds.adaptive.enabled)


class ReleaseRunner:
    def __init__(self, body: Mapping[str, Any], ctx: OperatorContext, *, stopped: Any):
        self.body = body
        self.ctx = ctx
        self.stopped = stopped
        self.name = body["metadata"]["name"]
        self.namespace = body["metadata"]["namespace"]
        self.events = ctx.events_factory()
        self.store = KubeReleaseStore(body, ctx.api_factory())
        release = release_from_body(body)
        self.driver = LocalDriver(release, app=ctx.app, registry=Registry(ctx.registry_root),
                                  nats_url=ctx.app.nats.url, kv_bucket=ctx.app.nats.kv_bucket, checks=ctx.checks,
                                  metrics=ctx.metrics, repo_root=ctx.repo_root, store=self.store)

    # -- Events ----------------------------------------------------------------------------
    def post_event(self, d: DecisionRecord) -> None:
        meta = self.body["metadata"]
        now = dt.datetime.now(dt.UTC)
        event = {
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": self.name,
                               "namespace": self.namespace, "uid": meta.get("uid")},
            "reason": (d.action or "decision").replace("-", " ").title().replace(" ", ""),
            "message": event_message(d),
            "type": "Warning" if d.action in WARNING_ACTIONS else "Normal",
            "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(), "count": 1,
            "source": {"component": "tidegate-operator", "host": self.ctx.instance},
            "reportingComponent": "tidegate-operator", "reportingInstance": self.ctx.instance,
        }
        try:
            self.events.create_namespaced_event(self.namespace, event)
        except client.ApiException as exc:
            log.warning("%s/%s: could not post event: %s", self.namespace, self.name, exc.reason)

    # -- spec changes ----------------------------------------------------------------------
    def _follow_spec(self) -> None:
        generation = self.body["metadata"].get("generation")
        status = self.driver.status
        if status is None or generation == status.observedGeneration:
            return
        try:
            release = release_from_body(self.body)
        except SpecError as exc:
            log.error("%s/%s: new spec refused, keeping the old one: %s", self.namespace, self.name, exc)
            return
        if release.spec.modelId != self.driver.release.spec.modelId and status.phase != "Pending":
            self.post_event(DecisionRecord(at=iso(dt.datetime.now(dt.UTC)), stage=status.stage, action="reject",
                                           reason=f"spec.modelId cannot change mid-release "
                                                  f"({self.driver.release.spec.modelId!r}); create a new release"))
            self.driver.status = status.model_copy(update={"observedGeneration": generation})
            self.store.save_status(self.driver.status)
            return
        self.driver.release = release
        self.driver.limits = effective_limits(release.spec, self.ctx.app.rollout_guard)
        new = restart_stage_analysis(status, generation, self.driver.clock())
        self.driver.status = new
        self.store.save_status(new)
        for d in new_decisions(status.decisions, new.decisions):
            self.post_event(d)

    # -- the loop --------------------------------------------------------------------------
    async def tick(self) -> None:
        self._follow_spec()
        before = list(self.driver.status.decisions) if self.driver.status else []
        await self.driver.tick()
        after = self.driver.status.decisions if self.driver.status else []
        for d in new_decisions(before, after):
            self.post_event(d)

    def _idle(self) -> bool:
        return idle(self.driver.status, self.driver.release.spec)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early for a stop, a new command or a spec change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        last = self.driver.status.lastCommand if self.driver.status else None
        gen = self.body["metadata"].get("generation")
        while not self.stopped and loop.time() < deadline:
            if self.store.commands_after(last) or self.body["metadata"].get("generation") != gen:
                return
            await asyncio.sleep(min(self.ctx.poll, max(0.0, deadline - loop.time())))

    async def run(self) -> None:
        await self.driver.connect()
        try:
            while not self.stopped:
                if self._idle() and not self.store.commands_after(self.driver.status.lastCommand):
                    await self._sleep(3600)
                    continue
                try:
                    await self.tick()
                except client.ApiException as exc:
                    log.error("%s/%s: Kubernetes API error, retrying: %s %s", self.namespace, self.name, exc.reason,
                              (exc.body or "")[:600])
                await self._sleep(self.driver.release.spec.analysis.interval)
        finally:
            await self.driver.close()

    async def make_safe(self, timeout: float = 30.0) -> ReleaseStatus | None:
        """Deleted mid-flight: abort (previous model active, mode disabled) and apply it."""
        st = self.driver.status
        if st is None or (st.phase in TERMINAL_PHASES and not st.pendingEffects):
            return st
        await self.driver.connect()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            abort = Command(kind="abort", reason="ModelRelease deleted mid-flight")
            self.store.forced = ("zzzz-finalizer-abort", abort)
            while loop.time() < deadline:
                await self.driver.tick()
                st = self.driver.status
                if st is not None and st.phase in TERMINAL_PHASES and not st.pendingEffects:
                    break
                await asyncio.sleep(0.2)
            return self.driver.status
        finally:
            await self.driver.close()
