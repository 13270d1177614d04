"""Rollout state, deterministic routing, and the NATS KV adapter services watch.

The release engine (tidegate.release, through the local driver or the operator)
writes the rollout state; operators change it by hand with ``tidegate rollout set``
or ``scripts/promote_model.py --to active`` (``update_stored``); services only read
it, under config/app.yml's ``rollout`` block (``config_policy``). API for services::

    import nats
    from tidegate.rollout import RolloutView, open_view, route

    nc = await nats.connect(cfg.nats.url)
    view = await open_view(nc, cfg.nats.kv_bucket,              # starts a KV watch
                           on_change=lambda old, new: ...,      # optional, sync or async
                           policy=config_policy(cfg.rollout))   # config default and halt
    state = view.state            # RolloutState, always complete; mode=disabled until written
    r = route(view.state, signal_id)                # "paper" | "canary" | "full"
    ...
    await view.stop()

- ``RolloutState`` fields: ``mode`` (disabled|canary|full), ``canary_fraction``,
  ``rng_seed``, ``active_model_id``, ``candidate_model_id``, ``tau_entry``,
  ``tau_hold`` (None: use model.json), ``release``, ``revision``, ``reason``.
- ``route(state, signal_id)``: ``disabled`` -> paper; ``full`` -> full;
  ``canary`` -> canary iff ``bucket(rng_seed, signal_id) < canary_fraction*10000``
  (blake2b, stable across processes; a ramp only adds buckets).
  Routes: paper = stable (active) model decides, simulator fills; canary = the
  candidate decides; full = the active model on the venue (or simulator in paper).
- ``view.wait_for(predicate, timeout)`` blocks until the state satisfies predicate.
- Storage: one JSON value under key ``rollout`` in the bucket ``nats.kv_bucket``
  (created on first use). A missing/deleted key reads as config/app.yml's rollout
  block under ``config_policy`` (else ``mode=disabled``); the config's
  ``mode: disabled`` overrides any stored state.
"""

from tidegate.rollout.kv import (
    DEFAULT_BUCKET,
    KEY,
    RolloutKV,
    RolloutView,
    config_policy,
    open_bucket,
    open_view,
    update_stored,
)
from tidegate.rollout.routing import BUCKETS, Route, bucket, is_canary, route
from tidegate.rollout.state import MODES, Mode, RolloutState

__all__ = ["BUCKETS", "DEFAULT_BUCKET", "KEY", "MODES", "Mode", "RolloutKV", "RolloutState", "RolloutView",
           "Route", "bucket", "config_policy", "is_canary", "open_bucket", "open_view", "route", "update_stored"]
