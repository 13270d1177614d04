"""Order latency models: when a command reaches the exchange, and when its answer comes back.

Feed latency (exchange time → our receive time) is measured, not modelled: it is
in every market-data message (``recv_ns - ts_ns``). Order latency is modelled,
as hftbacktest and nautilus do, split into *entry* (us → matching engine) and
*response* (matching engine → us). Implementations, chosen in config
(``executor.simulator.latency_model``):

- ``ConstantLatency``: fixed entry and response (hftbacktest ``ConstantLatency``).
- ``LognormalLatency``: a seeded log-normal around a median, for tail scenarios.
- ``EmpiricalLatency``: resamples recorded latencies (e.g. from
  scripts/calibrate_fill_model.py), seeded so runs repeat.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Protocol

MS = 1_000_000


class LatencyModel(Protocol):
    name: str

    def entry_ns(self, now_ns: int) -> int: ...

    def response_ns(self, now_ns: int) -> int: ...


class ConstantLatency:
    name = "constant"

    def __init__(self, entry_ms: float = 5.0, response_ms: float = 5.0):
        if entry_ms < 0 or response_ms < 0:
            raise ValueError("latencies must be >= 0")
        self._entry = int(entry_ms * MS)
        self._response = int(response_ms * MS)

    def entry_ns(self, now_ns: int) -> int:
        return self._entry

    def response_ns(self, now_ns: int) -> int:
        return self._response


class LognormalLatency:
    name = "lognormal"

    def __init__(self, median_ms: float = 5.0, sigma: float = 0.5, seed: int = 0):
        if median_ms <= 0 or sigma < 0:
            raise ValueError("lognormal latency needs median_ms > 0 and sigma >= 0")
        self._mu = math.log(median_ms * MS)
        self._sigma = sigma
        self._rng = random.Random(seed)

    def entry_ns(self, now_ns: int) -> int:
        return int(self._rng.lognormvariate(self._mu, self._sigma))

    def response_ns(self, now_ns: int) -> int:
        return int(self._rng.lognormvariate(self._mu, self._sigma))


class EmpiricalLatency:
    name = "empirical"

    def __init__(self, samples_ms: Sequence[float], seed: int = 0):
        if not samples_ms:
            raise ValueError("empirical latency needs at least one sample")
        self._samples = [int(max(0.0, s) * MS) for s in samples_ms]
        self._rng = random.Random(seed)

    def entry_ns(self, now_ns: int) -> int:
        return self._rng.choice(self._samples)

    def response_ns(self, now_ns: int) -> int:
        return self._rng.choice(self._samples)


def make_latency_model(name: str, *, entry_ms: float = 5.0, response_ms: float = 5.0, sigma: float = 0.5,
                       samples_ms: Sequence[float] = (), seed: int = 0) -> LatencyModel:
    if name == "constant":
        return ConstantLatency(entry_ms, response_ms)
    if name == "lognormal":
        return LognormalLatency(entry_ms, sigma, seed)
    if name == "empirical":
        return EmpiricalLatency(samples_ms, seed)
    raise ValueError(f"executor.simulator.latency_model must be constant, lognormal or empirical, got {name!r}")
