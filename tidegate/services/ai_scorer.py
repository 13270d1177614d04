"""ai_scorer: candidates → scores → approved signals with their route (``sig.approved.<symbol>``).

Candidates arrive in batches from a durable JetStream consumer (``ai_scorer``;
its backlog is what the signal engine's backpressure measures) and are acked
only after the approvals are handed to the publisher. Each batch is scored in
one ONNX Runtime call per model (one intra-op thread). Routing and model choice
are in scorer_models.py (BRIEF §4.3); the route uses the shared deterministic
hash (tidegate.rollout.route), so the executor agrees with it.

Shadow decisions go to ``sig.shadow.<symbol>`` as one ``ShadowBatchMsg`` (v2) per scored
batch and symbol, not one record per candidate: at full candidate rate a JetStream publish
per candidate cost more than scoring (see docs/latency-budget.md).

Hot swap: a KV watch on the rollout state and a poll of the registry slots
(``ai_scorer.registry_poll_interval``) trigger ``ModelSet.resolve`` between
batches; a refused model (sha256 or schema hash) is logged, counted and the
previous one keeps serving.

Online parity: ``ai_scorer.parity_sample_rate`` of the rows are re-scored with
the native LightGBM booster (``native_model`` in model.json); a difference above
``parity_tolerance`` increments ``onnx_parity_fail_total``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tidegate.bus.consumer import DurableConsumer
from tidegate.bus.dedupe import RecentIds
from tidegate.bus.messages import ApprovedMsg, CandidateMsg, HoldMark, HoldMsg, ShadowBatchMsg
from tidegate.features import schema_hash
from tidegate.registry import Registry
from tidegate.rollout import RolloutState, bucket, config_policy, open_view, route
from tidegate.services.runtime import ServiceContext, run_service
from tidegate.services.scorer_models import LoadedModel, ModelSet, active_thresholds, shadow_thresholds

NAME = "ai_scorer"
STATS_WINDOW = 2000
SHADOW_METRICS = ("model_shadow_id", "shadow_signals_evaluated_total", "shadow_signals_approved_total",
                  "shadow_score_distribution")


def observe_many(hist: Any, value: float, n: int) -> None:
    """``n`` observations of ``value`` in a prometheus_client histogram child, in O(buckets), not O(n)."""
    bounds, buckets, total = (getattr(hist, a, None) for a in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None or n <= 0:
        for _ in range(n):  # another client version: the public way
            hist.observe(value)
        return
    total.inc(value * n)
    for i, bound in enumerate(bounds):
        if value <= bound:
            buckets[i].inc(n)
            return


def shadow_msg_id(record: ShadowBatchMsg) -> str:
    """A Nats-Msg-Id naming the batch by its content, so a batch redelivered whole is stored once."""
    digest = hashlib.blake2b("\n".join(record.signal_ids).encode(), digest_size=12).hexdigest()
    return f"shadow:{record.model_id}:{record.symbol}:{digest}"


def score_stats(scores: Sequence[float]) -> dict[str, float]:
    a = np.asarray(scores, dtype=np.float64)
    if a.size == 0:
        return {}
    return {"mean": float(a.mean()), "std": float(a.std()), "p10": float(np.quantile(a, 0.1)),
            "p50": float(np.quantile(a, 0.5)), "p90": float(np.quantile(a, 0.9)), "count": float(a.size)}


@dataclass
class Scored:
    """What one batch produced: approvals, shadow records, hold marks, and candidates dropped."""

    approved: list[ApprovedMsg] = field(default_factory=list)
    shadows: list[ShadowBatchMsg] = field(default_factory=list)
    holds: list[HoldMsg] = field(default_factory=list)
    dropped: int = 0


def hold_marks(batch: Sequence[CandidateMsg], models: Sequence[tuple[str, np.ndarray, float]]) -> list[HoldMsg]:
    """Each live model's score of the newest candidate of each side, per symbol (``tau_hold``'s input).

    Every candidate is scored by the active model and by a candidate model, whichever route
    it is on, so both models' views of the market are known after each batch; the executor
    keeps an order of model *m* and side *s* only while *m* scores *s* at or above tau_hold.
    """
    newest: dict[tuple[str, str], int] = {}
    for i, c in enumerate(batch):
        k = (c.symbol, c.side)
        j = newest.get(k)
        if j is None or c.ts_ns >= batch[j].ts_ns:
            newest[k] = i
    by_symbol: dict[str, list[HoldMark]] = {}
    for (symbol, side), i in sorted(newest.items()):
        for model_id, p, tau_hold in models:
            by_symbol.setdefault(symbol, []).append(HoldMark.model_construct(
                model_id=model_id, side=side, ts_ns=batch[i].ts_ns, score=min(1.0, max(0.0, float(p[i]))),
                tau_hold=tau_hold))
    return [HoldMsg.model_construct(symbol=sym, marks=marks) for sym, marks in by_symbol.items()]


class Scorer:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.cfg = ctx.cfg.ai_scorer
        self.live_hash = schema_hash()
        self.models = ModelSet(Registry(ctx.resolve(ctx.cfg.registry.root)), self.live_hash)
        self.state = RolloutState()
        self.scores: deque[float] = deque(maxlen=STATS_WINDOW)
        self.shadow_scores: deque[float] = deque(maxlen=STATS_WINDOW)
        self.rng = random.Random(0)
        self.seen = RecentIds()  # signal ids scored: a redelivered candidate is not scored (or counted) twice
        self.m = ctx.metrics  # tau_*_current come from the catalogue too (``also``: release and ai_scorer)
        self._children: dict[tuple[Any, ...], Any] = {}
        if not self.cfg.shadow.enabled:  # shadow series exist only when shadow scoring is on
            for name in SHADOW_METRICS:
                ctx.registry.unregister(self.m.pop(name))

    def _child(self, name: str, **labels: str) -> Any:
        """A labelled metric child, looked up once (``labels()`` costs more than the increment)."""
        key = (name, *labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.m[name].labels(**labels)
        return child

    # -- model selection -------------------------------------------------------------------------
    def refresh(self) -> None:
        before = {k: getattr(self.models, k) for k in ("active", "candidate", "shadow")}
        for problem in self.models.resolve(self.state, self.cfg.shadow.enabled):
            if problem.schema_mismatch:
                self.m["parquet_schema_version_mismatch_total"].inc()
            self.ctx.log.error("%s; previous model keeps serving", problem)
        for slot, old in before.items():
            new = getattr(self.models, slot)
            if (old.id if old else None) != (new.id if new else None):
                self.ctx.log.info("%s model: %s -> %s", slot, old.id if old else None, new.id if new else None)
        self._export_ids()

    def _export_ids(self) -> None:
        for name, model in (("model_active_id", self.models.active), ("model_shadow_id", self.models.shadow)):
            if name not in self.m:
                continue
            gauge = self.m[name]
            gauge.clear()
            if model is not None:
                gauge.labels(model_id=model.id).set(1)
        for model in {m.id: m for m in (self.models.active, self.models.candidate) if m}.values():
            th = active_thresholds(model, self.state, self.cfg)
            self.m["tau_entry_current"].labels(model=model.id).set(th.tau_entry)
            self.m["tau_hold_current"].labels(model=model.id).set(th.tau_hold)
        if self.models.shadow is not None:
            th = shadow_thresholds(self.models.shadow, self.cfg)
            self.m["tau_entry_current"].labels(model=self.models.shadow.id).set(th.tau_entry)
            self.m["tau_hold_current"].labels(model=self.models.shadow.id).set(th.tau_hold)

    # -- scoring ---------------------------------------------------------------------------------
    def _parity(self, model: LoadedModel, x: np.ndarray, p: np.ndarray) -> None:
        if model.native is None or self.cfg.parity_sample_rate <= 0:
            return
        rows = [i for i in range(len(x)) if self.rng.random() < self.cfg.parity_sample_rate]
        if not rows:
            return
        native = model.predict_native(x[rows])
        if native is None:
            return
        bad = int(np.sum(np.abs(native - p[rows]) > self.cfg.parity_tolerance))
        if bad:
            self.m["onnx_parity_fail_total"].inc(bad)
            self.ctx.log.error("ONNX parity failure: %d of %d sampled rows of model %s differ by > %g", bad,
                               len(rows), model.id, self.cfg.parity_tolerance)

    def score(self, batch: Sequence[CandidateMsg]) -> Scored:
        """Decide a batch: approvals (one per approved candidate), shadow records and hold marks (one
        per symbol), drops.

        Scores, thresholds and shadow decisions are computed on whole arrays; the only
        per-candidate Python is the routing hash and building the approvals.
        """
        active, candidate, shadow = self.models.active, self.models.candidate, self.models.shadow
        fresh = [c for c in batch if c.signal_id not in self.seen]
        good = [c for c in fresh if c.schema_hash == self.live_hash]
        dropped = len(fresh) - len(good)
        if active is None or not good:
            return Scored(dropped=dropped + (len(good) if active is None else 0))
        for c in good:
            self.seen.add(c.signal_id)
        x = np.asarray([c.features for c in good], dtype=np.float32)
        t0 = time.perf_counter()
        p_active = active.predict(x)
        p_cand = candidate.predict(x) if candidate is not None and candidate.id != active.id else p_active
        p_shadow = None
        if shadow is not None:
            p_shadow = p_active if shadow.id == active.id else (
                p_cand if candidate is not None and shadow.id == candidate.id else shadow.predict(x))
        per_row = (time.perf_counter() - t0) / len(good)
        self._parity(active, x, p_active)
        if candidate is not None and candidate.id != active.id:
            self._parity(candidate, x, p_cand)      # the model under release is the one parity must guard
        if shadow is not None and p_shadow is not None and shadow.id not in (active.id, getattr(candidate, "id", None)):
            self._parity(shadow, x, p_shadow)
        th_active = active_thresholds(active, self.state, self.cfg)
        th_cand = active_thresholds(candidate, self.state, self.cfg) if candidate is not None else th_active
        # the canary bucket goes to the candidate model; without one it is scored (and routed) as paper
        routes = [route(self.state, c.signal_id) for c in good]
        if candidate is None:
            routes = ["paper" if r == "canary" else r for r in routes]
        to_cand = np.fromiter((r == "canary" for r in routes), dtype=bool, count=len(good))
        p = np.where(to_cand, p_cand, p_active)
        ok = p.astype(np.float64) >= np.where(to_cand, th_cand.tau_entry, th_active.tau_entry)
        self.scores.extend(p.tolist())
        approved: list[ApprovedMsg] = []
        now = time.time_ns()
        seed = self.state.rng_seed
        clipped = np.clip(p, 0.0, 1.0).tolist()
        # messages built with model_construct: every field comes from a validated candidate or this code
        for i in np.flatnonzero(ok).tolist():
            c, r = good[i], routes[i]
            model, tau = (candidate, th_cand.tau_entry) if r == "canary" else (active, th_active.tau_entry)
            approved.append(ApprovedMsg.model_construct(
                signal_id=c.signal_id, symbol=c.symbol, side=c.side, ts_ns=c.ts_ns, recv_ns=c.recv_ns,
                emitted_ns=c.emitted_ns, scored_ns=now, price=c.price, route=r, model_id=model.id,  # type: ignore[union-attr]
                score=clipped[i], tau_entry=tau, bucket=bucket(seed, c.signal_id)))
        scored = Counter(routes)
        passed = Counter(a.route for a in approved)
        for r, n in scored.items():
            model_id = candidate.id if r == "canary" and candidate is not None else active.id
            self._child("signals_scored_total", model=model_id, route=r).inc(n)
            observe_many(self._child("scoring_latency_seconds", model=model_id), per_row, n)
            if passed[r]:
                self._child("signals_approved_total", model=model_id, route=r).inc(passed[r])
        shadows: list[ShadowBatchMsg] = []
        if shadow is not None and p_shadow is not None:
            tau_sh = shadow_thresholds(shadow, self.cfg).tau_entry
            ok_sh = p_shadow.astype(np.float64) >= tau_sh
            self.shadow_scores.extend(p_shadow.tolist())
            sh_scores = np.clip(p_shadow, 0.0, 1.0).tolist()
            live_scores = np.clip(p_active, 0.0, 1.0).tolist()
            sh_ok = ok_sh.tolist()
            by_symbol: dict[str, list[int]] = {}
            for i, c in enumerate(good):
                by_symbol.setdefault(c.symbol, []).append(i)
            for symbol, rows in by_symbol.items():
                shadows.append(ShadowBatchMsg.model_construct(
                    symbol=symbol, model_id=shadow.id, live_model_id=active.id, tau_entry=tau_sh,
                    signal_ids=[good[i].signal_id for i in rows], ts_ns=[good[i].ts_ns for i in rows],
                    scores=[sh_scores[i] for i in rows], approved=[sh_ok[i] for i in rows],
                    live_scores=[live_scores[i] for i in rows]))
            self.m["shadow_signals_evaluated_total"].inc(len(good))
            self.m["shadow_signals_approved_total"].inc(int(ok_sh.sum()))
        holds = hold_marks(good, [(active.id, p_active, th_active.tau_hold)] + (
            [(candidate.id, p_cand, th_cand.tau_hold)] if candidate is not None and candidate.id != active.id else []))
        return Scored(approved, shadows, holds, dropped)

    def export_distributions(self) -> None:
        for stat, value in score_stats(self.scores).items():
            self.m["model_score_distribution"].labels(split="online", stat=stat).set(value)
        if self.models.shadow is not None:
            for stat, value in score_stats(self.shadow_scores).items():
                self.m["shadow_score_distribution"].labels(split="online", stat=stat).set(value)


async def serve(ctx: ServiceContext) -> None:
    scorer = Scorer(ctx)
    bus = await ctx.connect()
    swap = asyncio.Event()

    def on_rollout(old: RolloutState, new: RolloutState) -> None:
        scorer.state = new
        swap.set()

    view = await open_view(bus.nc, ctx.cfg.nats.kv_bucket, on_change=on_rollout,
                           policy=config_policy(ctx.cfg.rollout))
    scorer.state = view.state
    await asyncio.to_thread(scorer.refresh)
    if scorer.models.active is None:
        ctx.log.warning("no active model yet (registry %s); candidates wait in the stream", scorer.models.registry.root)

    async def on_batch(batch: Sequence[CandidateMsg]) -> None:
        if swap.is_set():
            swap.clear()
            await asyncio.to_thread(scorer.refresh)
        while scorer.models.active is None and not ctx.stop.is_set():
            await ctx.sleep(0.2)  # nothing may be dropped: hold the batch until a model serves
            await asyncio.to_thread(scorer.refresh)
        out = scorer.score(batch)
        if out.dropped:
            for c in batch:
                if c.schema_hash != scorer.live_hash:
                    ctx.counters.bad(ctx.subjects.candidates(c.symbol), "candidate schema_hash differs from live")
        # candidates, approvals and shadow decisions share the SIGNALS stream and its duplicate
        # window, so each kind has its own Nats-Msg-Id space (else an approval would be dropped
        # as a duplicate of the candidate it approves)
        for a in out.approved:
            await bus.publish_durable(ctx.subjects.approved(a.symbol), a, msg_id=f"approved:{a.signal_id}")
        for s in out.shadows:  # one record per batch and symbol; the id is that of the same batch redelivered whole
            await bus.publish_durable(ctx.subjects.shadow(s.symbol), s, msg_id=shadow_msg_id(s))
        for h in out.holds:
            await bus.publish(ctx.subjects.hold(h.symbol), h)

    consumer = DurableConsumer(bus, stream=ctx.subjects.stream("SIGNALS"), durable="ai_scorer",
                               subject=ctx.subjects.candidates("*"), schema=CandidateMsg, handler=on_batch,
                               counters=ctx.counters, batch=ctx.cfg.ai_scorer.batch_size)
    task = asyncio.create_task(consumer.run(ctx.stop))
    ctx.ready = True
    ctx.log.info("ready: active=%s shadow=%s (shadow %s)", scorer.models.active and scorer.models.active.id,
                 scorer.models.shadow and scorer.models.shadow.id,
                 "enabled" if ctx.cfg.ai_scorer.shadow.enabled else "disabled")
    while not await ctx.sleep(ctx.cfg.ai_scorer.registry_poll_interval):
        # registry slots may have moved (promote_model.py); loading a model (hashing, building the
        # session) runs in a thread, only when a slot did move
        if swap.is_set() or scorer.models.stale(scorer.state, scorer.cfg.shadow.enabled):
            swap.clear()  # a new rollout state is applied here too when no candidate is flowing
            await asyncio.to_thread(scorer.refresh)
        scorer.export_distributions()
        if task.done():
            break
    await asyncio.gather(task, return_exceptions=True)
    await view.stop()


def main(argv: list[str] | None = None) -> int:
    return run_service(NAME, serve, argv)


if __name__ == "__main__":
    raise SystemExit(main())
