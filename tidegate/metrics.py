"""Every Prometheus metric tidegate exports, defined once, with the seed's names and labels.

Services build their metrics from this catalogue (``build``), guard rails, alerts
and dashboards query these names, and docs/metrics.md is generated from it, so a
name cannot drift between the exporter and the query that reads it.

Ratios (win rate, fill rate) always travel with the counters they are computed
from, so a gate can tell a 60% win rate over 5 trades from one over 5,000.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    name: str          # as queried in PromQL (counters end in _total)
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    owner: str = ""    # the service that exports it
    buckets: tuple[float, ...] = ()
    also: tuple[str, ...] = ()  # other services exporting the same series (same name, labels, meaning)

    @property
    def client_name(self) -> str:
        """prometheus_client appends _total to counters itself."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


_LAT = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

CATALOGUE: tuple[MetricSpec, ...] = (
    # every service
    MetricSpec("bad_message_total", "counter", "malformed messages counted and dropped", ("service", "subject"), "*"),
    MetricSpec("messages_processed_total", "counter", "messages handled", ("service", "subject"), "*"),
    # collector
    MetricSpec("md_events_published_total", "counter", "market-data events published", ("symbol", "kind"),
               "collector"),
    # signal_engine
    MetricSpec("candidates_emitted_total", "counter", "candidate signals emitted", ("symbol",), "signal_engine"),
    MetricSpec("backpressure_total", "counter", "candidates skipped because sig:candidates was backlogged",
               ("symbol",), "signal_engine"),
    MetricSpec("candidate_backlog", "gauge", "pending candidates not yet consumed by the scorer", ("symbol",),
               "signal_engine"),
    # ai_scorer
    MetricSpec("model_active_id", "gauge", "1 for the model id serving as active", ("model_id",), "ai_scorer"),
    MetricSpec("model_shadow_id", "gauge", "1 for the model id scoring in shadow", ("model_id",), "ai_scorer"),
    MetricSpec("signals_scored_total", "counter", "candidates scored", ("model", "route"), "ai_scorer"),
    MetricSpec("signals_approved_total", "counter", "candidates approved for execution", ("model", "route"),
               "ai_scorer"),
    MetricSpec("shadow_signals_evaluated_total", "counter", "candidates scored by the shadow model", (),
               "ai_scorer"),
    MetricSpec("shadow_signals_approved_total", "counter", "candidates the shadow model would approve", (),
               "ai_scorer"),
    MetricSpec("model_score_distribution", "gauge", "online score distribution of the deciding model",
               ("split", "stat"), "ai_scorer"),
    MetricSpec("shadow_score_distribution", "gauge", "online score distribution of the shadow model",
               ("split", "stat"), "ai_scorer"),
    MetricSpec("onnx_parity_fail_total", "counter", "online re-scores where ONNX and native LightGBM disagree",
               (), "ai_scorer"),
    MetricSpec("parquet_schema_version_mismatch_total", "counter",
               "models or parquet files refused because their feature-schema hash differs", (), "ai_scorer"),
    MetricSpec("scoring_latency_seconds", "histogram", "single-candidate scoring latency", ("model",),
               "ai_scorer", _LAT),
    # executor
    MetricSpec("trades_opened_total", "counter", "entry orders placed, by route", ("route",), "executor"),
    MetricSpec("exec_ladder_aggressiveness_total", "counter", "ladder rungs placed, by aggressiveness bucket",
               ("bucket",), "executor"),
    MetricSpec("warmup_skip_total", "counter", "signals skipped during the start-up warm-up", ("symbol",),
               "executor"),
    MetricSpec("fail_safe_switch_total", "counter", "fail-safe activations", ("reason",), "executor"),
    MetricSpec("fail_safe_route_total", "counter", "orders forced to paper by the fail-safe", ("symbol",),
               "executor"),
    MetricSpec("venue_rate_limited_total", "counter",
               "venue calls refused by its rate limit (Bybit 10006), each retried after a backoff", (), "executor"),
    MetricSpec("orders_rejected_total", "counter", "orders rejected (post-only cross, limits, gates)",
               ("route", "reason"), "executor"),
    MetricSpec("hold_exit_total", "counter",
               "entries cancelled, and exits moved to the touch, because their model scored the side below tau_hold",
               ("route", "leg"), "executor"),
    # risk: per route
    MetricSpec("trades_closed_total", "counter", "trades (filled entry orders) closed, by route and deciding model",
               ("route", "model"), "risk"),
    MetricSpec("trades_won_total", "counter", "trades closed with positive net markout, by route and model",
               ("route", "model"), "risk"),
    MetricSpec("trade_clusters_total", "counter",
               "sums over closed clusters of trades (for a cluster-robust win-rate variance): stat = clusters, "
               "trades, wins, trades_sq, wins_sq, wins_trades", ("route", "model", "stat"), "risk"),
    MetricSpec("orders_accepted_total", "counter", "orders accepted by the venue or simulator", ("route",), "risk"),
    MetricSpec("orders_filled_total", "counter", "accepted orders with any fill", ("route",), "risk"),
    MetricSpec("winrate_rolling", "gauge", "rolling win rate (fraction)", ("route",), "risk"),
    MetricSpec("rolling_precision", "gauge", "rolling precision of approved signals (fraction)", ("route",), "risk"),
    MetricSpec("fill_rate_rolling", "gauge", "rolling fill rate by count (fraction)", ("route",), "risk"),
    MetricSpec("avg_markout_100ms", "gauge", "average fee-adjusted markout at 100 ms, bps", ("route",), "risk"),
    MetricSpec("avg_markout_500ms", "gauge", "average fee-adjusted markout at 500 ms, bps", ("route",), "risk"),
    MetricSpec("avg_markout_1000ms", "gauge", "average fee-adjusted markout at 1000 ms, bps", ("route",), "risk"),
    MetricSpec("cancel_to_fill_ratio", "gauge", "cancels per fill", ("route",), "risk"),
    # risk: canary supervision
    MetricSpec("winrate_baseline_active", "gauge", "win rate of the active model's other trades this attempt",
               (), "risk"),
    MetricSpec("winrate_canary", "gauge", "win rate of the candidate's canary trades in this release attempt",
               (), "risk"),
    MetricSpec("sample_canary", "gauge", "candidate's canary trades since the release attempt began", (), "risk"),
    MetricSpec("sample_baseline_active", "gauge", "active model's non-canary trades since the release attempt began",
               (), "risk"),
    MetricSpec("brier_online", "gauge", "online Brier score of the deciding model", (), "risk"),
    MetricSpec("brier_baseline_active", "gauge", "online Brier score of the active model", (), "risk"),
    MetricSpec("ece_online", "gauge", "online expected calibration error", (), "risk"),
    MetricSpec("psi_feature", "gauge", "population stability index vs the model's reference bins", ("feature",),
               "risk"),
    MetricSpec("ks_feature", "gauge", "Kolmogorov-Smirnov statistic vs the model's reference bins", ("feature",),
               "risk"),
    MetricSpec("trades_per_hour", "gauge", "trades opened in the last hour", (), "risk"),
    MetricSpec("trades_per_hour_prev_release_p95", "gauge", "p95 of hourly trades under the previous release",
               (), "risk"),
    MetricSpec("parquet_gap_detected_ms", "gauge", "largest time gap found by the parquet backfill scan, ms", (),
               "risk"),
    MetricSpec("exchange_reference_mismatch_total", "counter", "symbol settings differing from the venue reference",
               ("symbol", "field"), "risk"),
    # release engine (operator or local driver)
    MetricSpec("mode_switch_total", "counter", "rollout mode switches", ("from", "to", "reason"), "release"),
    MetricSpec("rollback_total", "counter", "automatic and manual rollbacks", ("reason",), "release"),
    MetricSpec("tau_entry_current", "gauge", "entry threshold in force", ("model",), "release",
               also=("ai_scorer",)),
    MetricSpec("tau_hold_current", "gauge", "hold threshold in force", ("model",), "release", also=("ai_scorer",)),
    MetricSpec("release_stage", "gauge", "1 for the stage a release is in", ("release", "stage", "phase"), "release"),
    MetricSpec("release_weight", "gauge", "canary weight of a release, percent", ("release",), "release"),
    MetricSpec("gate_evaluations_total", "counter", "guard-rail evaluations by verdict", ("gate", "verdict"),
               "release"),
)

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in CATALOGUE}


def spec(name: str) -> MetricSpec:
    return BY_NAME[name]


def build(registry: CollectorRegistry, owner: str) -> dict[str, Counter | Gauge | Histogram]:
    """Create the metrics one service exports (its own plus the shared '*' ones), keyed by name."""
    out: dict[str, Counter | Gauge | Histogram] = {}
    for m in CATALOGUE:
        if m.owner not in (owner, "*") and owner not in m.also:
            continue
        if m.kind == "counter":
            out[m.name] = Counter(m.client_name, m.help, m.labels, registry=registry)
        elif m.kind == "gauge":
            out[m.name] = Gauge(m.client_name, m.help, m.labels, registry=registry)
        else:
            out[m.name] = Histogram(m.client_name, m.help, m.labels, registry=registry, buckets=m.buckets)
    return out
