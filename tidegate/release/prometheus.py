"""Prometheus as a guard-rail provider (prometheus-api-client), behind one small interface.

Every failure mode of the backend becomes data, never an exception and never a
pass: a connection error, an HTTP error, a timeout, an empty result, NaN, or a
newest sample older than ``staleAfter`` all come back as Samples that the judge
turns into UNAVAILABLE. Retries are off: a slow or dead Prometheus must cost one
timeout per query, not a backoff ladder that stalls the release loop.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from tidegate.release.gates import GateContext, Query, Sample, gate_queries, judge
from tidegate.release.spec import Limits
from tidegate.release.verdicts import GateVerdict


class GateProvider(Protocol):
    def evaluate(self, gates: Iterable[str], limits: Limits, ctx: GateContext | None = None) -> list[GateVerdict]: ...


def _scalar(result: list[dict]) -> float | None:
    """The single value of an aggregated instant-vector result (None when empty)."""
    if not result:
        return None
    value = result[0].get("value")
    if not value or len(value) < 2:
        return None
    try:
        return float(value[1])
    except (TypeError, ValueError):
        return math.nan


class PrometheusProvider:
    """Runs each gate's queries against one Prometheus and judges them."""

    def __init__(self, url: str, *, timeout: float = 5.0, workers: int = 4):
        self.url = url
        self.timeout = timeout
        self.client = PrometheusConnect(url=url, disable_ssl=True, retry=Retry(total=0), timeout=timeout)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="promq")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def _query(self, promql: str) -> float | None:
        return _scalar(self.client.custom_query(promql, timeout=self.timeout))

    def fetch(self, query: Query) -> Sample:
        if query.by:
            return self._fetch_by(query)
        try:
            value = self._query(query.promql)
            if value is None:
                return Sample.empty()
            age = self._query(query.freshness)
        except Exception as exc:  # connection refused, HTTP 4xx/5xx, timeout, bad JSON
            return Sample.failed(f"{type(exc).__name__}: {str(exc)[:200]}")
        return Sample(value=value, age=age if age is not None else math.nan)

    def _fetch_by(self, query: Query) -> Sample:
        """A ``sum by (label)`` query: one value per label value (an empty result is an empty dict)."""
        try:
            rows = self.client.custom_query(query.promql, timeout=self.timeout)
        except Exception as exc:
            return Sample.failed(f"{type(exc).__name__}: {str(exc)[:200]}")
        values: dict[str, float] = {}
        for row in rows:
            key = row.get("metric", {}).get(query.by, "")
            with contextlib.suppress(TypeError, ValueError, IndexError):
                values[key] = float(row["value"][1])
        return Sample(values=values, age=0.0)

    def evaluate(self, gates: Iterable[str], limits: Limits, ctx: GateContext | None = None) -> list[GateVerdict]:
        gates = list(gates)
        jobs = {(g, q.role): self._pool.submit(self.fetch, q) for g in gates for q in gate_queries(g, limits, ctx)}
        out = []
        for g in gates:
            samples = {role: fut.result() for (gate, role), fut in jobs.items() if gate == g}
            out.append(judge(g, limits, samples, ctx))
        return out
