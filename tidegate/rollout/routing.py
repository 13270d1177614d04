"""Deterministic canary routing: ``bucket = H(rng_seed, signal_id) mod 10000``.

The hash is blake2b over the seed and the signal id, never Python's ``hash()``
(salted per process), so the ai_scorer and the executor, in different processes
and after restarts, agree on every signal's route. A signal is ``canary`` when its
bucket is below ``fraction * 10000``: raising the fraction only adds buckets, so a
ramp from 10% to 25% never flips a signal that was already canary back to paper.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from tidegate.rollout.state import RolloutState

Route = Literal["paper", "canary", "full"]
BUCKETS = 10_000


def bucket(rng_seed: int, signal_id: str | int) -> int:
    """Stable bucket in [0, 10000) for a signal under a seed."""
    digest = hashlib.blake2b(f"{int(rng_seed)}:{signal_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def is_canary(rng_seed: int, signal_id: str | int, fraction: float) -> bool:
    return bucket(rng_seed, signal_id) < round(fraction * BUCKETS)


def route(state: RolloutState, signal_id: str | int) -> Route:
    """The route of one approved signal under the current rollout state."""
    if state.mode == "full":
        return "full"
    if state.mode == "canary" and is_canary(state.rng_seed, signal_id, state.canary_fraction):
        return "canary"
    return "paper"
