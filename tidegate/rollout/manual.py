"""Operators' hand on the live rollout state: ``tidegate rollout show|set`` and ``promote_model.py --to active``.

Why this exists: services route and score by the state stored in NATS KV, not by
files. Moving the registry's ``active`` link alone would leave a stored state that
names the old model, and every scorer would keep serving it; so a manual promote
(the seed's manual rollback) also rewrites ``active_model_id`` in the stored state.
Nothing stored means services already follow the registry link, and nothing is
written. The engine's next transition writes a whole state again, so a running
release must be paused or aborted first (docs/runbook.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import nats

from tidegate.config.schema import AppConfig
from tidegate.registry import Registry
from tidegate.rollout.kv import RolloutKV, config_policy, update_stored
from tidegate.rollout.state import RolloutState


class LiveStateUnavailable(RuntimeError):
    """NATS (and so the stored rollout state) could not be reached."""


@dataclass(frozen=True)
class LiveChange:
    before: RolloutState | None
    after: RolloutState | None  # None: nothing was written


async def _with_store(cfg: AppConfig, fn):  # type: ignore[no-untyped-def]
    async def quiet(exc: Exception) -> None:  # nats-py logs every failed attempt with a traceback otherwise
        return None

    try:
        # nats-py can keep retrying a refused first connect; the bound makes "unreachable" an answer
        nc = await asyncio.wait_for(nats.connect(cfg.nats.url, connect_timeout=cfg.nats.connect_timeout_s,
                                                 allow_reconnect=False, max_reconnect_attempts=0, error_cb=quiet),
                                    timeout=cfg.nats.connect_timeout_s + 1.0)
    except Exception as exc:  # nats raises several unrelated types for "not there"
        raise LiveStateUnavailable(f"NATS at {cfg.nats.url} unreachable: {str(exc) or type(exc).__name__}") from None
    try:
        return await fn(await RolloutKV.open(nc.jetstream(), cfg.nats.kv_bucket))
    finally:
        await nc.close()


def read_states(cfg: AppConfig) -> tuple[RolloutState | None, RolloutState]:
    """(stored, effective under config/app.yml's rollout block)."""
    async def go(store: RolloutKV) -> RolloutState | None:
        return await store.get()

    stored = asyncio.run(_with_store(cfg, go))
    return stored, config_policy(cfg.rollout)(stored)  # exactly what the services' views compute


def set_state(cfg: AppConfig, *, reason: str, **changes: object) -> LiveChange:
    """Write ``changes`` into the stored state (revision + 1)."""
    async def go(store: RolloutKV) -> LiveChange:
        before, after = await update_stored(store, reason=reason, **changes)
        return LiveChange(before, after)

    return asyncio.run(_with_store(cfg, go))


def served_thresholds(registry: Registry, model_id: str) -> tuple[float | None, float | None]:
    """The thresholds ``model_id`` served with: those its last promoted release froze (manifest), else
    model.json's. A manual rollback must restore them: the stored state's thresholds were frozen for the
    model being replaced (a probe served a 0.05/0.03 model at 0.2/0.15)."""
    for rec in reversed(registry.manifest().releases):
        if rec.get("model_id") == model_id and rec.get("outcome") == "Promoted" and rec.get("tau_entry") is not None:
            return float(rec["tau_entry"]), (float(rec["tau_hold"]) if rec.get("tau_hold") is not None else None)
    t = registry.metadata(model_id).thresholds
    return t.tau_entry, t.tau_hold


def sync_active(cfg: AppConfig, model_id: str, *, reason: str,
                thresholds: tuple[float | None, float | None] = (None, None)) -> LiveChange:
    """After the registry's active link moved to ``model_id``: make a stored state name it too, with the
    thresholds it served with (``served_thresholds``; None: each scorer takes model.json's)."""
    async def go(store: RolloutKV) -> LiveChange:
        current = await store.get()
        if current is None or current.active_model_id in (None, model_id):
            return LiveChange(current, None)
        # the active model and its thresholds: routing (mode, fraction, candidate) stays the operator's
        before, after = await update_stored(store, reason=reason, active_model_id=model_id,
                                            tau_entry=thresholds[0], tau_hold=thresholds[1])
        return LiveChange(before, after)

    return asyncio.run(_with_store(cfg, go))
