"""The rollout state in a NATS JetStream KV bucket: one writer, many watchers.

The release engine writes the whole RolloutState as one JSON value under the key
``rollout`` of the bucket named by ``nats.kv_bucket`` (default ``tidegate_rollout``);
services keep a live copy with :class:`RolloutView`, which is fed by a KV watch and
so reacts within milliseconds of a write, with no restart and no polling.

Writes are idempotent: ``put`` compares the stored value first and writes nothing
when the routing is already what the engine wants, so an effect repeated after a
crash neither bumps the KV revision nor wakes every watcher.

A missing or deleted key is ``None`` to the view's policy. Services use
:func:`config_policy`: config/app.yml's ``rollout`` block decides then (and its
``mode: disabled`` overrides any stored state, the operator's halt); anything
else without a policy reads it as the safe default (``mode=disabled``).

Writers other than the engine: ``tidegate rollout set`` and
``scripts/promote_model.py --to active`` (:func:`update_stored`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from tidegate.config.schema import RolloutConfig
from tidegate.rollout.state import RolloutState, effective_state

log = logging.getLogger(__name__)

KEY = "rollout"
DEFAULT_BUCKET = "tidegate_rollout"


async def open_bucket(js: JetStreamContext, bucket: str = DEFAULT_BUCKET) -> KeyValue:
    """The KV bucket, created on first use (same config from every caller, so creation is idempotent)."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=bucket, history=16, description="tidegate rollout state")


class RolloutKV:
    """Read, write and watch the rollout state in one bucket."""

    def __init__(self, kv: KeyValue):
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str = DEFAULT_BUCKET) -> RolloutKV:
        return cls(await open_bucket(js, bucket))

    async def get(self) -> RolloutState | None:
        """The stored state, or None when no release has written one yet."""
        try:
            entry = await self.kv.get(KEY)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.operation in ("DEL", "PURGE"):
            return None
        try:
            return RolloutState.from_bytes(entry.value)
        except ValueError as exc:  # malformed: the writer overwrites it, readers keep the safe default
            log.error("malformed rollout state at kv revision %s: %s", entry.revision, exc)
            return None

    async def put(self, state: RolloutState) -> bool:
        """Store ``state`` unless the same routing is already stored; True when written."""
        current = await self.get()
        if current is not None and current.same_routing(state) and current.release == state.release:
            return False
        await self.kv.put(KEY, state.to_bytes())
        return True

    async def watch(self) -> AsyncIterator[RolloutState | None]:
        """Yield the current state (None when nothing is stored), then every change, until cancelled."""
        watcher = await self.kv.watch(KEY)
        try:
            first = True
            async for entry in watcher:
                if entry is None:  # end of the initial values: nothing stored yet
                    if first:
                        yield None
                    first = False
                    continue
                first = False
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    yield None
                    continue
                try:
                    yield RolloutState.from_bytes(entry.value)
                except ValueError as exc:  # a malformed value must never crash a service
                    log.error("ignoring malformed rollout state (kv revision %s): %s", entry.revision, exc)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()


async def update_stored(store: RolloutKV, *, reason: str, **changes: object
                        ) -> tuple[RolloutState | None, RolloutState]:
    """An operator's change to the stored state (the fields in ``changes``), revision + 1; (before, after).

    The engine writes whole states at its own transitions, so a running release's
    next transition overwrites this: pause or abort it first (docs/runbook.md).
    """
    current = await store.get()
    base = current or RolloutState()
    new = RolloutState.model_validate({**base.model_dump(), **changes, "revision": base.revision + 1,
                                       "reason": reason})
    await store.kv.put(KEY, new.to_bytes())
    return current, new


OnChange = Callable[[RolloutState, RolloutState], Awaitable[None] | None]
Policy = Callable[[RolloutState | None], RolloutState]


def stored_or_default(stored: RolloutState | None) -> RolloutState:
    return stored if stored is not None else RolloutState()


def config_policy(cfg: RolloutConfig) -> Policy:
    """The services' policy: the stored state under config/app.yml's rollout block (state.effective_state)."""
    return functools.partial(effective_state, config_mode=cfg.mode, canary_fraction=cfg.canary_fraction,
                             rng_seed=cfg.rng_seed)


class RolloutView:
    """A live in-memory copy of the rollout state for a service (executor, ai_scorer).

    ``view.state`` is always a complete, validated RolloutState (the safe default
    until the first value arrives): ``policy`` of the stored one (None when nothing
    is stored). ``on_change(old, new)`` runs after each change.
    """

    def __init__(self, store: RolloutKV, *, on_change: OnChange | None = None, policy: Policy = stored_or_default):
        self.store = store
        self.on_change = on_change
        self.policy = policy
        self.state = RolloutState()
        self.updates = 0
        self._ready = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 5.0) -> RolloutView:
        self._task = asyncio.create_task(self._run(), name="rollout-view")
        await asyncio.wait_for(self._ready.wait(), timeout)
        return self

    async def _run(self) -> None:
        async for stored in self.store.watch():
            new = self.policy(stored)
            old, self.state = self.state, new
            self.updates += 1
            self._ready.set()
            if self.on_change is not None:
                try:
                    result = self.on_change(old, new)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:  # a bad callback must not stop the view
                    log.exception("rollout on_change callback failed")
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[RolloutState], bool], timeout: float) -> RolloutState:
        """Block until ``predicate(state)`` holds; raise TimeoutError otherwise."""
        async def _wait() -> RolloutState:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.state))
                return self.state
        return await asyncio.wait_for(_wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


async def open_view(nc: nats.NATS, bucket: str = DEFAULT_BUCKET, *, on_change: OnChange | None = None,
                    policy: Policy = stored_or_default) -> RolloutView:
    """Start a RolloutView on an existing NATS connection (the usual entry point for services)."""
    store = await RolloutKV.open(nc.jetstream(), bucket)
    return await RolloutView(store, on_change=on_change, policy=policy).start()
