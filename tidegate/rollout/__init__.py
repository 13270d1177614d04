"""Rollout state, deterministic routing, and the NATS KV adapter services watch.

The release engine (tidegate.release, through the local driver or the operator)
is the ONE writer of the rollout state; services only read it. API for services::

    import nats
    from tidegate.rollout import RolloutView, open_view, route

    nc = await nats.connect(cfg.nats.url)
    view = await open_view(nc, cfg.nats.kv_bucket,              # starts a KV watch
                           on_change=lambda old, new: ...)      # optional, sync or async
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
  (created on first use). A missing/deleted key reads as ``mode=disabled``.
"""

from tidegate.rollout.kv import DEFAULT_BUCKET, KEY, RolloutKV, RolloutView, open_bucket, open_view
from tidegate.rollout.routing import BUCKETS, Route, bucket, is_canary, route
from tidegate.rollout.state import MODES, Mode, RolloutState

__all__ = ["BUCKETS", "DEFAULT_BUCKET", "KEY", "MODES", "Mode", "RolloutKV", "RolloutState", "RolloutView",
           "Route", "bucket", "is_canary", "open_bucket", "open_view", "route"]
