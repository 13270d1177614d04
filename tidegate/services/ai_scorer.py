"""ai_scorer: candidates → scores → approved signals with their route (``sig.approved.<symbol>``).

Candidates arrive in batches from a durable JetStream consumer (``ai_scorer``;
its backlog is what the signal engine's backpressure measures) and are acked
only after the approvals are handed to the publisher. Each batch is scored in
one ONNX Runtime call per model (one intra-op thread). Routing and model choice
are in scorer_models.py (BRIEF §4.3); the route uses the shared deterministic
hash (tidegate.rollout.route), so the executor agrees with it.

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
import random
import time
from collections import Counter, deque
from collections.abc import Sequence

import numpy as np

from tidegate.bus.consumer import DurableConsumer
from tidegate.bus.dedupe import RecentIds
from tidegate.bus.messages import ApprovedMsg, CandidateMsg, ShadowMsg
from tidegate.features import schema_hash
from tidegate.registry import Registry
from tidegate.rollout import RolloutState, bucket, open_view, route
from tidegate.services.runtime import ServiceContext, run_service
from tidegate.services.scorer_models import LoadedModel, ModelSet, active_thresholds, shadow_thresholds

NAME = "ai_scorer"
STATS_WINDOW = 2000
SHADOW_METRICS = ("model_shadow_id", "shadow_signals_evaluated_total", "shadow_signals_approved_total",
                  "shadow_score_distribution")


def score_stats(scores: Sequence[float]) -> dict[str, float]:
    a = np.asarray(scores, dtype=np.float64)
    if a.size == 0:
        return {}
    return {"mean": float(a.mean()), "std": float(a.std()), "p10": float(np.quantile(a, 0.1)),
            "p50": float(np.quantile(a, 0.5)), "p90": float(np.quantile(a, 0.9)), "count": float(a.size)}


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
        if not self.cfg.shadow.enabled:  # shadow series exist only when shadow scoring is on
            for name in SHADOW_METRICS:
                ctx.registry.unregister(self.m.pop(name))

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

    def score(self, batch: Sequence[CandidateMsg]) -> tuple[list[ApprovedMsg], list[ShadowMsg], int]:
        active, candidate, shadow = self.models.active, self.models.candidate, self.models.shadow
        fresh = [c for c in batch if c.signal_id not in self.seen]
        good = [c for c in fresh if c.schema_hash == self.live_hash]
        dropped = len(fresh) - len(good)
        if active is None or not good:
            return [], [], dropped + (len(good) if active is None else 0)
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
        approved: list[ApprovedMsg] = []
        now = time.time_ns()
        scored: Counter[tuple[str, str]] = Counter()
        passed: Counter[tuple[str, str]] = Counter()
        seed = self.state.rng_seed
        # messages built with model_construct: every field comes from a validated candidate or this code
        for i, c in enumerate(good):
            r = route(self.state, c.signal_id)
            if r == "canary" and candidate is not None:
                model, p, tau = candidate, float(p_cand[i]), th_cand.tau_entry
            else:
                r = "paper" if r == "canary" else r
                model, p, tau = active, float(p_active[i]), th_active.tau_entry
            scored[(model.id, r)] += 1
            self.scores.append(p)
            if p >= tau:
                passed[(model.id, r)] += 1
                approved.append(ApprovedMsg.model_construct(
                    signal_id=c.signal_id, symbol=c.symbol, side=c.side, ts_ns=c.ts_ns, recv_ns=c.recv_ns,
                    emitted_ns=c.emitted_ns, scored_ns=now, price=c.price, route=r, model_id=model.id,
                    score=min(1.0, max(0.0, p)), tau_entry=tau, bucket=bucket(seed, c.signal_id)))
        for (model_id, r), n in scored.items():
            self.m["signals_scored_total"].labels(model=model_id, route=r).inc(n)
            hist = self.m["scoring_latency_seconds"].labels(model=model_id)
            for _ in range(n):
                hist.observe(per_row)
        for (model_id, r), n in passed.items():
            self.m["signals_approved_total"].labels(model=model_id, route=r).inc(n)
        shadows: list[ShadowMsg] = []
        if shadow is not None and p_shadow is not None:
            th_sh = shadow_thresholds(shadow, self.cfg)
            n_ok = 0
            for i, c in enumerate(good):
                ps = float(p_shadow[i])
                ok = ps >= th_sh.tau_entry
                n_ok += ok
                self.shadow_scores.append(ps)
                shadows.append(ShadowMsg.model_construct(
                    signal_id=c.signal_id, symbol=c.symbol, ts_ns=c.ts_ns, model_id=shadow.id,
                    score=min(1.0, max(0.0, ps)), approved=ok, live_model_id=active.id,
                    live_score=min(1.0, max(0.0, float(p_active[i])))))
            self.m["shadow_signals_evaluated_total"].inc(len(good))
            self.m["shadow_signals_approved_total"].inc(n_ok)
        return approved, shadows, dropped

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

    view = await open_view(bus.nc, ctx.cfg.nats.kv_bucket, on_change=on_rollout)
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
        approved, shadows, dropped = scorer.score(batch)
        if dropped:
            for c in batch:
                if c.schema_hash != scorer.live_hash:
                    ctx.counters.bad(ctx.subjects.candidates(c.symbol), "candidate schema_hash differs from live")
        # candidates, approvals and shadow decisions share the SIGNALS stream and its duplicate
        # window, so each kind has its own Nats-Msg-Id space (else an approval would be dropped
        # as a duplicate of the candidate it approves)
        for a in approved:
            await bus.publish_durable(ctx.subjects.approved(a.symbol), a, msg_id=f"approved:{a.signal_id}")
        for s in shadows:
            await bus.publish_durable(ctx.subjects.shadow(s.symbol), s, msg_id=f"shadow:{s.signal_id}:{s.model_id}")

    consumer = DurableConsumer(bus, stream=ctx.subjects.stream("SIGNALS"), durable="ai_scorer",
                               subject=ctx.subjects.candidates("*"), schema=CandidateMsg, handler=on_batch,
                               counters=ctx.counters, batch=ctx.cfg.ai_scorer.batch_size)
    task = asyncio.create_task(consumer.run(ctx.stop))
    ctx.ready = True
    ctx.log.info("ready: active=%s shadow=%s (shadow %s)", scorer.models.active and scorer.models.active.id,
                 scorer.models.shadow and scorer.models.shadow.id,
                 "enabled" if ctx.cfg.ai_scorer.shadow.enabled else "disabled")
    while not await ctx.sleep(ctx.cfg.ai_scorer.registry_poll_interval):
        await asyncio.to_thread(scorer.refresh)  # registry slots may have moved (promote_model.py)
        scorer.export_distributions()
        if task.done():
            break
    await asyncio.gather(task, return_exceptions=True)
    await view.stop()


def main(argv: list[str] | None = None) -> int:
    return run_service(NAME, serve, argv)


if __name__ == "__main__":
    raise SystemExit(main())
