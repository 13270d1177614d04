"""Applying the engine's effects to the world, idempotently.

Each effect is safe to repeat, which is what makes the write-ahead protocol of
the drivers work (save the status with its pending effects, apply them, clear
them): a driver killed between applying an effect and recording it simply applies
it again on restart and nothing changes:

- ``rollout``: RolloutKV.put writes only when the stored routing differs;
- ``slot``: Registry.set_slot is a no-op when the slot already points there;
- ``mode_switch``: published to JetStream with ``Nats-Msg-Id`` = effect id, so the
  stream drops a replay (duplicate window 2 min, longer than any restart);
  ``mode_switch_total`` is counted only when the stream accepted a new message;
- ``rollback``: ``rollback_total{reason}`` (a crash can only lose this increment,
  since the counter lives in the process that crashed);
- ``record``: Registry.append_release replaces the entry with the same name.

Gauges (stage, weight, thresholds) are set from the status on every tick by
:func:`export_status`, so they are right after a restart without any replay.
"""

from __future__ import annotations

import logging
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry

from tidegate.bus.control import ControlEvent
from tidegate.bus.subjects import CONTROL, STREAMS
from tidegate.metrics import build
from tidegate.registry import ArtifactError, Registry
from tidegate.release.spec import ModelRelease, PendingEffect, ReleaseStatus
from tidegate.release.verdicts import GateVerdict
from tidegate.rollout.kv import RolloutKV
from tidegate.rollout.state import RolloutState

log = logging.getLogger(__name__)


class EffectError(RuntimeError):
    """An effect that could not be applied; it stays pending and is retried next tick."""


async def ensure_control_stream(js: JetStreamContext) -> None:
    """The CONTROL stream, unless some stream already captures control.events."""
    try:
        await js.find_stream_name_by_subject(CONTROL)
    except NotFoundError:
        await js.add_stream(name="CONTROL", subjects=STREAMS["CONTROL"])


class ReleaseMetrics:
    """The release engine's metrics from the catalogue, on a registry the driver may serve."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.m: dict[str, Any] = build(self.registry, "release")
        self._stage_labels: dict[str, tuple[str, str, str]] = {}

    def gate_evaluations(self, verdicts: list[GateVerdict]) -> None:
        for v in verdicts:
            self.m["gate_evaluations_total"].labels(gate=v.gate, verdict=str(v.verdict)).inc()

    def export_status(self, release: ModelRelease, status: ReleaseStatus, active_model: str | None) -> None:
        labels = (release.name, status.stage or "-", status.phase)
        old = self._stage_labels.get(release.name)
        if old is not None and old != labels:
            self.m["release_stage"].remove(*old)
        self.m["release_stage"].labels(*labels).set(1)
        self._stage_labels[release.name] = labels
        self.m["release_weight"].labels(release=release.name).set(status.weight)
        if active_model and status.tauEntry is not None and status.phase == "Promoted":
            self.m["tau_entry_current"].labels(model=active_model).set(status.tauEntry)
        if active_model and status.tauHold is not None and status.phase == "Promoted":
            self.m["tau_hold_current"].labels(model=active_model).set(status.tauHold)


class EffectApplier:
    """Applies PendingEffects; each ``apply`` returns True when it changed something."""

    def __init__(self, *, registry: Registry | None, kv: RolloutKV | None, js: JetStreamContext | None,
                 metrics: ReleaseMetrics):
        self.registry, self.kv, self.js, self.metrics = registry, kv, js, metrics

    async def apply(self, effect: PendingEffect) -> bool:
        handler = getattr(self, f"_apply_{effect.kind}", None)
        if handler is None:
            raise EffectError(f"unknown effect kind {effect.kind!r} ({effect.id})")
        try:
            changed = bool(await handler(effect))
        except (ArtifactError, OSError) as exc:
            raise EffectError(f"{effect.id}: {exc}") from exc
        log.info("effect %s %s", effect.id, "applied" if changed else "already in place")
        return changed

    async def _apply_rollout(self, effect: PendingEffect) -> bool:
        if self.kv is None:
            return False
        return await self.kv.put(RolloutState(**effect.args))

    async def _apply_slot(self, effect: PendingEffect) -> bool:
        if self.registry is None:
            return False
        a = effect.args
        return self.registry.set_slot(a["slot"], a["model_id"], reason=a.get("reason", ""))

    async def _apply_mode_switch(self, effect: PendingEffect) -> bool:
        a = effect.args
        if self.js is None:
            self.metrics.m["mode_switch_total"].labels(a["from_mode"], a["to_mode"], a.get("label", "")).inc()
            return True
        rollback = a["to_mode"] == "disabled" and str(a.get("reason", "")).startswith("rollback")
        event = ControlEvent(kind="MODE_SWITCH", severity="WARN" if rollback else "INFO",
                             **{"from": a["from_mode"], "to": a["to_mode"]}, reason=a.get("reason", ""),
                             release=a.get("release"), event_id=effect.id, label=a.get("label", ""))
        await ensure_control_stream(self.js)
        ack = await self.js.publish(CONTROL, event.to_bytes(), headers={"Nats-Msg-Id": effect.id})
        if ack.duplicate:
            return False
        self.metrics.m["mode_switch_total"].labels(a["from_mode"], a["to_mode"], a.get("label", "")).inc()
        return True

    async def _apply_rollback(self, effect: PendingEffect) -> bool:
        self.metrics.m["rollback_total"].labels(reason=effect.args["reason"]).inc()
        return True

    async def _apply_record(self, effect: PendingEffect) -> bool:
        if self.registry is None:
            return False
        record = dict(effect.args["record"])
        model_id = record.get("model_id")
        if model_id and self.registry.has(model_id):  # benchmark metrics and regimes of the candidate
            meta = self.registry.metadata(model_id)
            record.setdefault("metrics", meta.metrics)
            record.setdefault("regimes", meta.regimes)
            record.setdefault("training_window", meta.training_window)
        self.registry.append_release(record)
        return True
