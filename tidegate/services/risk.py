"""risk: per-route trading quality and canary supervision metrics, from orders, fills and mids.

Inputs: ``md.book.*`` (mids; core), ``orders.*`` and ``fills.*`` (durable
JetStream consumers, so a restart of NATS or of this service loses nothing),
``sig.candidates.*`` (feature values for drift; core). The maths is in
tidegate.risk (trading.py, drift.py, book.py); this module copies its results
into the catalogue gauges every ``risk.publish_interval``:

- per route and deciding model: ``trades_closed_total``, ``trades_won_total`` and the cluster sums
  ``trade_clusters_total{stat}`` the win-rate gate reads through ``increase()`` over its stage;
- per route: ``orders_accepted_total``,
  ``orders_filled_total``, ``winrate_rolling``, ``fill_rate_rolling``,
  ``avg_markout_{100,500,1000}ms``, ``cancel_to_fill_ratio``;
- supervision: ``winrate_baseline_active``, ``winrate_canary``, ``sample_canary``,
  ``sample_baseline_active``, ``brier_online``, ``ece_online``,
  ``brier_baseline_active``, ``psi_feature{feature}``, ``ks_feature{feature}``
  (against the active model's reference bins in model.json), ``trades_per_hour``,
  ``trades_per_hour_prev_release_p95``;
- data health: ``parquet_gap_detected_ms`` (scan of ``data.parquet_dir``) and
  ``exchange_reference_mismatch_total{symbol,field}`` (configured symbols vs the
  venue's markets and the reference fees).

A ratio with no sample is exported as NaN, never as 0: "no trades" is not "never wins".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from tidegate.atomic import atomic_write_json
from tidegate.bus.consumer import DurableConsumer, subscribe
from tidegate.bus.dedupe import RecentIds
from tidegate.bus.messages import BookMsg, CandidateMsg, FillMsg, OrderMsg
from tidegate.execution.venue import (
    INSTRUMENTS_NAME,
    load_instruments,
    load_offline_exchange,
    reference_mismatches,
)
from tidegate.registry import ArtifactError, Registry
from tidegate.registry.metadata import ModelMetadata
from tidegate.risk import drift
from tidegate.risk.book import CLUSTER_STATS, ROUTES, HourlyCounts, RiskBook
from tidegate.risk.trading import HORIZONS_MS, FillRecord
from tidegate.rollout import RolloutState, config_policy, open_view
from tidegate.services.runtime import ServiceContext, run_service

NAME = "risk"
STATE_SAVE_INTERVAL_S = 30.0   # wall seconds between saves of risk.state_file (and on every model change)


def max_gap_ms(times_ns: Sequence[int]) -> float:
    """Largest gap between consecutive timestamps, in ms (0 for fewer than two)."""
    ordered = sorted(times_ns)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0) / 1e6


def scan_parquet_gaps(root: Path, column: str = "local_ns") -> float:
    """Largest time gap inside any parquet file under ``root`` (0 when none can be read)."""
    if not root.is_dir():
        return 0.0
    import pyarrow.parquet as pq

    worst = 0.0
    for path in sorted(root.rglob("*.parquet")):
        try:
            table = pq.read_table(path, columns=[column])
        except Exception:  # a file without the column has no timeline to scan
            continue
        worst = max(worst, max_gap_ms(table.column(column).to_pylist()))
    return worst


class Supervisor:
    """Risk book + drift window + reference bins, and the gauges they feed."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        rc = ctx.cfg.risk
        self.book = RiskBook(window_trades=rc.window_trades, window_orders=rc.window_orders,
                             cluster_gap_ns=int(rc.cluster_gap * 1e9))
        self.hourly = HourlyCounts()
        self.features: deque[list[float]] = deque(maxlen=rc.window_candidates)
        self.reference: ModelMetadata | None = None
        self.registry = Registry(ctx.resolve(ctx.cfg.registry.root))
        self.seen = RecentIds()  # fill ids and order events: a redelivery is not counted twice

    def load_reference(self, model_id: str | None) -> None:
        model_id = model_id or self.registry.slot("active")
        if model_id is None or (self.reference is not None and self.reference.id == model_id):
            return
        try:
            self.reference = self.registry.metadata(model_id)
            self.ctx.log.info("drift reference: %d feature(s) from model %s", len(self.reference.reference_bins),
                              model_id)
        except (ArtifactError, ValueError) as exc:
            self.ctx.log.warning("no drift reference for model %s: %s", model_id, exc)

    def on_state(self, state: RolloutState) -> None:
        """A canary with a candidate is a release attempt: its evidence counts from now until it ends.

        The series of both models exist at 0 from the start, so PromQL ``increase()`` over the stage
        sees the first trade too (a counter that appears at 1 has no increase to Prometheus)."""
        cand, active = state.candidate_model_id, state.active_model_id
        if state.mode == "canary" and cand:
            self.book.begin_attempt(f"{state.release or 'config'}:{cand}:{active}", cand, active)
            m = self.ctx.metrics
            for route, model in (("canary", cand), ("paper", active), ("full", active)):
                if model:
                    self.book.by_model.setdefault((route, model), [0, 0])
                    m["trades_closed_total"].labels(route=route, model=model)
                    m["trades_won_total"].labels(route=route, model=model)
                    for stat in CLUSTER_STATS:
                        m["trade_clusters_total"].labels(route=route, model=model, stat=stat)
        else:
            self.book.begin_attempt("", None, None)

    def on_order(self, o: OrderMsg) -> None:
        if self.seen.add(f"{o.client_order_id}:{o.status}"):
            self.book.on_order(o.client_order_id, o.route, o.status, qty=o.qty, entry=not o.reduce_only)

    def on_fill(self, f: FillMsg) -> None:
        if not self.seen.add(f.fill_id):
            return
        rec = FillRecord(f.ts_ns, f.side, f.price, f.qty, f.fee_rate, f.route, f.score, f.model_id)
        self.book.on_fill(f.symbol, f.client_order_id, rec, entry=not f.reduce_only)
        if not f.reduce_only:
            self.hourly.add(f.ts_ns)

    def publish(self) -> None:
        m = self.ctx.metrics
        for route in ROUTES:
            totals = self.book.totals[route]
            snap = self.book.route_snapshot(route)
            for name in ("winrate_rolling", "fill_rate_rolling", "cancel_to_fill_ratio",
                         *(f"avg_markout_{h}ms" for h in HORIZONS_MS)):
                m[name].labels(route=route).set(snap[name])
            # precision of executed approvals = win rate of their trades (docs/trading-metrics.md)
            m["rolling_precision"].labels(route=route).set(snap["winrate_rolling"])
            _set_counter(m["orders_accepted_total"].labels(route=route), totals.accepted)
            filled = sum(1 for o in self.book.done_orders if o.route == route and
                         (o.filled or o.coid in self.book.filled_coids))
            _set_counter(m["orders_filled_total"].labels(route=route), filled)
        for (route, model), (trades, wins) in self.book.by_model.items():
            _set_counter(m["trades_closed_total"].labels(route=route, model=model), trades)
            _set_counter(m["trades_won_total"].labels(route=route, model=model), wins)
        for (route, model), sums in self.book.cluster_sums.items():
            for stat, value in sums.items():
                _set_counter(m["trade_clusters_total"].labels(route=route, model=model, stat=stat), value)
        for name, value in self.book.supervision().items():
            m[name].set(value)
        m["trades_per_hour_prev_release_p95"].set(self.hourly.prev_release_p95())
        ref = self.reference
        if ref is not None and ref.reference_bins and self.features:
            for i, name in enumerate(ref.feature_names):
                bins = ref.reference_bins.get(name)
                if bins is None:
                    continue
                values = [row[i] for row in self.features if i < len(row)]
                m["psi_feature"].labels(feature=name).set(drift.psi_against(values, bins.edges, bins.fractions))
                m["ks_feature"].labels(feature=name).set(drift.ks_against(values, bins.edges, bins.fractions))


def _set_counter(child: object, total: float) -> None:
    """Advance a counter child to ``total`` (counters only go up; the book's totals are monotone)."""
    current = child._value.get()  # type: ignore[attr-defined]
    if total > current:
        child.inc(total - current)  # type: ignore[attr-defined]


async def serve(ctx: ServiceContext) -> None:
    cfg = ctx.cfg
    sup = Supervisor(ctx)
    try:
        markets = ctx.resolve(cfg.exchange.markets_file)
        ex = load_offline_exchange(markets)
        instruments = load_instruments(markets.with_name(INSTRUMENTS_NAME)) or None
        for mm in reference_mismatches(cfg.symbols, ex, maker_fee=cfg.exchange.reference_maker_fee,
                                       taker_fee=cfg.exchange.reference_taker_fee, instruments=instruments):
            ctx.metrics["exchange_reference_mismatch_total"].labels(symbol=mm.symbol, field=mm.field).inc()
            ctx.log.warning("exchange reference mismatch: %s %s expected %s, venue has %s", mm.symbol, mm.field,
                            mm.expected, mm.actual)
    except Exception as exc:  # a missing markets file is itself a data-health finding
        ctx.log.warning("exchange reference validation failed: %s", exc)
    state_path = ctx.resolve(cfg.risk.state_file) if cfg.risk.state_file else None
    if state_path is not None:
        sup.hourly = load_hourly(state_path, ctx.log)
    bus = await ctx.connect()

    def on_rollout(old: object, new: RolloutState) -> None:
        active = new.active_model_id
        changed = active != sup.hourly.current_model
        sup.hourly.set_active(active)
        if changed and state_path is not None:
            save_hourly(state_path, sup.hourly, ctx.log)
        sup.load_reference(active)
        sup.on_state(new)

    view = await open_view(bus.nc, cfg.nats.kv_bucket, on_change=on_rollout, policy=config_policy(cfg.rollout))
    on_rollout(None, view.state)

    def on_book(msg: BookMsg) -> None:
        mid = msg.mid
        if mid is not None:
            sup.book.on_mid(msg.symbol, msg.recv_ns, mid)

    def on_candidate(msg: CandidateMsg) -> None:
        sup.features.append(msg.features)

    async def on_orders(batch: Sequence[OrderMsg]) -> None:
        for o in batch:
            sup.on_order(o)

    async def on_fills(batch: Sequence[FillMsg]) -> None:
        for f in batch:
            sup.on_fill(f)

    for symbol in cfg.symbols:
        await subscribe(bus, ctx.subjects.book(symbol), BookMsg, on_book, ctx.counters)
    await subscribe(bus, ctx.subjects.candidates("*"), CandidateMsg, on_candidate, ctx.counters)
    consumers = [
        DurableConsumer(bus, stream=ctx.subjects.stream("ORDERS"), durable="risk_orders",
                        subject=ctx.subjects.orders("*"), schema=OrderMsg, handler=on_orders, counters=ctx.counters),
        DurableConsumer(bus, stream=ctx.subjects.stream("FILLS"), durable="risk_fills",
                        subject=ctx.subjects.fills("*"), schema=FillMsg, handler=on_fills, counters=ctx.counters),
    ]
    tasks = [asyncio.create_task(c.run(ctx.stop)) for c in consumers]
    ctx.ready = True
    ctx.log.info("ready: supervising %d symbol(s)", len(cfg.symbols))
    next_scan = next_save = 0.0
    loop = asyncio.get_running_loop()
    while not ctx.stop.is_set():
        sup.publish()
        if state_path is not None and loop.time() >= next_save:
            await asyncio.to_thread(save_hourly, state_path, sup.hourly, ctx.log)
            next_save = loop.time() + STATE_SAVE_INTERVAL_S
        if loop.time() >= next_scan:
            gap = await asyncio.to_thread(scan_parquet_gaps, ctx.resolve(cfg.data.parquet_dir))
            ctx.metrics["parquet_gap_detected_ms"].set(gap)
            next_scan = loop.time() + cfg.risk.gap_scan_interval
        await ctx.sleep(cfg.risk.publish_interval)
    sup.publish()
    if state_path is not None:
        save_hourly(state_path, sup.hourly, ctx.log)
    await asyncio.gather(*tasks, return_exceptions=True)
    await view.stop()


def load_hourly(path: Path, log: logging.Logger) -> HourlyCounts:
    """The persisted hourly counts; a missing file starts empty, a bad one is set aside (kept, never lost)."""
    if not path.is_file():
        return HourlyCounts()
    try:
        hourly = HourlyCounts.from_doc(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        aside = path.with_name(path.name + ".bad")
        with contextlib.suppress(OSError):
            path.replace(aside)
        log.error("risk.state_file %s unreadable (%s): starting without the previous release's hours; "
                  "the file was moved to %s", path, exc, aside)
        return HourlyCounts()
    log.info("risk state: hourly trade counts of %d model(s) from %s (previous release %s)",
             len(hourly.hours), path, hourly.previous_model)
    return hourly


_UNWRITABLE: set[Path] = set()


def save_hourly(path: Path, hourly: HourlyCounts, log: logging.Logger) -> None:
    try:
        atomic_write_json(path, hourly.to_doc())
    except OSError as exc:
        if path not in _UNWRITABLE:   # said once, not every 30 s
            _UNWRITABLE.add(path)
            log.warning("risk.state_file %s not written (%s): hourly trade counts will not survive a restart",
                        path, exc)
    else:
        _UNWRITABLE.discard(path)


def main(argv: list[str] | None = None) -> int:
    return run_service(NAME, serve, argv)


if __name__ == "__main__":
    raise SystemExit(main())


