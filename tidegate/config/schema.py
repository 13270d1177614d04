"""The schema of ``config/app.yml``: the seed's sections and keys, as written.

Every model forbids unknown keys: a misspelt key (``canary_fration``) silently
falling back to a default is how a canary ends up at 100%. Field descriptions
feed the generated configuration reference (docs/configuration.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tidegate.durations import Duration


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ExchangeConfig(Section):
    mode: Literal["paper", "real"] = Field("paper", description="paper simulator or the real venue")
    venue: Literal["bybit_v5"] = Field("bybit_v5", description="venue adapter (ccxt)")
    maker_only: bool = Field(True, description="only ever provide liquidity")
    reduce_only: bool = Field(True, description="exit orders may only reduce a position")
    post_only: bool = Field(True, description="orders that would cross are rejected, not filled")
    markets_file: str = Field("config/markets/bybit_v5_linear.json",
                              description="venue markets parsed offline by ccxt (paper mode never calls the venue)")
    reference_maker_fee: float = Field(0.0001, description="expected maker fee rate (validate_symbols, risk)")
    reference_taker_fee: float = Field(0.0006, description="expected taker fee rate (validate_symbols, risk)")


class NatsConfig(Section):
    url: str = Field("nats://127.0.0.1:4222", description="NATS server URL")
    kv_bucket: str = Field("tidegate_rollout", pattern=r"^[A-Za-z0-9_-]+$",
                           description="JetStream KV bucket holding the rollout state")
    connect_timeout_s: float = Field(2.0, gt=0, description="connect timeout, seconds")
    namespace: str = Field("", pattern=r"^[A-Za-z0-9_-]*$",
                           description="prefix of every subject and stream (isolates environments on one server)")


class PrometheusConfig(Section):
    url: str = Field("http://127.0.0.1:9090", description="Prometheus base URL for guard-rail queries")
    timeout_s: float = Field(5.0, gt=0, description="per-query timeout, seconds")
    engine_metrics_port: int = Field(9107, ge=0, le=65535,
                                     description="where `tidegate release run` (and release.sh) serves the release "
                                                 "engine's /metrics: mode_switch_total, rollback_total, phases; "
                                                 "0: none; --metrics-port wins")


class RolloutConfig(Section):
    mode: Literal["disabled", "canary", "full"] | None = Field(
        None, description="unset: follow the release engine's stored state (paper only before any release); "
                          "disabled: paper only, overriding any stored state (the operator's halt); full: every signal "
                          "on the active model, overriding any stored state (re-enables full routing); canary: "
                          "the routing while no release state is stored")
    canary_fraction: float = Field(0.10, ge=0.0, le=1.0, description="share of signals routed to canary")
    rng_seed: int = Field(1337, ge=0, description="salt of the deterministic routing hash")


class RolloutGuardConfig(Section):
    winrate_delta_pp: float = Field(5.0, ge=0, le=100,
                                    description="canary may trail the baseline by this many percentage points")
    min_sample: int = Field(200, ge=1, description="canary trades before the win-rate gate may fail")
    psi_block: float = Field(0.30, gt=0, description="PSI above this on any feature rolls back")
    ks_block: float = Field(0.20, gt=0, le=1, description="KS statistic above this on any feature rolls back")
    ece_max: float = Field(0.05, gt=0, le=1, description="expected calibration error ceiling")
    fill_rate_min: float = Field(0.25, ge=0, le=1, description="minimum canary fill rate")
    markout_min_bps: float = Field(0.0, description="minimum canary average markout at 1000 ms, bps")
    cooldown: Duration = Field(900.0, description="after a rollback, no new release starts for this long")
    parity_window: Duration = Field(600.0, description="window of increase(onnx_parity_fail_total[...])")
    drift_window: Duration = Field(1800.0, description="window of max_over_time(psi_feature[...])")
    winrate_window: Duration = Field(1800.0, description="window of the win-rate comparison when no canary "
                                                         "stage start is known (a canary started by config)")
    winrate_test: Literal["sequential", "threshold"] = Field(
        "sequential", description="sequential: always-valid mSPRT; threshold: the seed's rule re-checked")
    winrate_alpha: float = Field(0.05, gt=0, lt=0.5, description="false-rollback probability over a whole release")


class CanaryPipelineConfig(Section):
    """scripts/canary_pipeline.py; fill-rate, markout and win-rate-delta limits come from rollout_guard."""

    winrate_target: float = Field(0.5, ge=0, le=1, description="win rate the candidate must reach on every day type")
    min_trades: int = Field(50, ge=1, description="filled entries a day type needs before its gates decide")
    synthetic_days: int = Field(2, ge=1, le=50, description="synthetic sessions per regime (normal, event, high-vol)")
    synthetic_seconds: float = Field(300.0, gt=0, description="length of one synthetic session, seconds")
    seed: int = Field(910_000, ge=0, description="synthetic seed (kept apart from the training seeds)")
    replay_window: Duration = Field(30.0, description="replayed captures are classified into regimes per window")
    high_vol_quantile: float = Field(0.8, gt=0, lt=1, description="replay windows this volatile are high-vol")
    event_quantile: float = Field(0.8, gt=0, lt=1, description="busiest other replay windows are event")


class SizingConfig(Section):
    leverage: float = Field(10, gt=0, le=125, description="leverage applied to free balance")
    notional_cap_usd: float = Field(20000, gt=0, description="cap on order notional, USD")
    use_all_in: bool = Field(True, description="size from the whole free balance (else the cap only)")
    min_free_balance_usd: float = Field(200, ge=0, description="below this free balance no order is sized")
    lot_size_rounding: Literal["floor"] = Field(
        "floor", description="quantities are only ever rounded down to the lot step")


class ServicePorts(Section):
    metrics_port: int = Field(0, ge=0, le=65535, description="/metrics port (env METRICS_PORT wins; 0: none)")
    health_port: int = Field(0, ge=0, le=65535,
                             description="/healthz port (env HEALTH_PORT wins; 0: served on the metrics port)")


class CollectorConfig(ServicePorts):
    source: Literal["auto", "capture", "synthetic"] = Field(
        "auto", description="auto: the capture when present, else the synthetic generator")
    capture_file: str = Field("binance_usdm_btcusdt_20240808.gz", description="file in data.capture_dir")
    speed: float = Field(1.0, ge=0, description="replay speed factor (0: as fast as possible)")
    max_events: int | None = Field(None, ge=1, description="stop after this many events (None: whole source)")
    start_offset_s: float = Field(0.0, ge=0, description="skip this much of the source's beginning")
    book_levels: int = Field(10, ge=1, le=200, description="levels per side in each book message")
    synthetic_seconds: float = Field(120.0, gt=0, description="length of a synthetic run")
    synthetic_regime: Literal["normal", "event", "high-vol"] = Field(
        "normal", description="regime of the synthetic market (when replaying synthetic data)")
    loop: bool = Field(False, description="start again at the end of the source")


class SignalEngineConfig(ServicePorts):
    max_backlog: int = Field(5000, ge=1, description="skip candidates while sig.candidates holds more than this")
    backlog_check_interval: Duration = Field(0.2, description="how often the candidate backlog is measured")
    min_interval_ms: float = Field(100.0, ge=0, description="per symbol, at most one candidate this often")


class SimulatorConfig(Section):
    queue_model: Literal["risk_averse", "prob", "optimistic"] = Field(
        "risk_averse", description="queue-position model of the paper exchange")
    prob_power: float = Field(2.0, gt=0, description="power of the prob queue model's f(x) = x**n")
    latency_model: Literal["constant", "lognormal", "empirical"] = Field(
        "constant", description="order latency model of the paper exchange")
    entry_latency_ms: float = Field(5.0, ge=0, description="order entry latency (median for lognormal)")
    response_latency_ms: float = Field(5.0, ge=0, description="order response latency (constant model)")
    latency_sigma: float = Field(0.5, ge=0, description="log-normal sigma")
    latency_samples_file: str | None = Field(None, description="JSON with latency samples_ms (empirical model)")
    seed: int = Field(0, ge=0, description="seed of the stochastic models")


class LadderConfig(Section):
    rungs: int = Field(1, ge=1, le=10, description="entry ladder rungs")
    step_ticks: int = Field(1, ge=1, description="ticks between rungs")
    exit_ticks: int = Field(2, ge=1, description="reduce-only exit placed this many ticks from the entry")
    order_ttl: Duration = Field(2.0, description="cancel resting entries older than this (market time)")
    exit_ttl: Duration = Field(5.0, description="cancel resting exits older than this (market time)")


class LiquidityBySideConfig(Section):
    enabled: bool = Field(True, description="refuse an entry when same-side book depth is too thin")
    alpha: float = Field(1.5, gt=0, description="required same-side depth as a multiple of order size")
    levels: int = Field(3, ge=1, le=50, description="book levels summed for the depth")


class HoldConfig(Section):
    positions: bool = Field(True, description="move an open position's exit to the touch once its model scores "
                                              "the side below tau_hold")
    entries: bool = Field(False, description="also cancel resting entries (and skip superseded signals) below "
                                             "tau_hold; off: it halved the demo's trades and cut their win rate "
                                             "(docs/release-policy.md)")


class ExecutorGatesConfig(Section):
    liquidity_by_side: LiquidityBySideConfig = LiquidityBySideConfig()


class ExecutorConfig(Section):
    warmup_seconds: Duration = Field(90.0, description="no trading this long after start-up")
    fail_safe_cooldown: Duration = Field(900.0, description="paper-only routing after a CRIT control event")
    sizing: SizingConfig = SizingConfig()
    gates: ExecutorGatesConfig = ExecutorGatesConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    ladder: LadderConfig = LadderConfig()
    hold: HoldConfig = HoldConfig()
    paper_free_balance_usd: float = Field(10000.0, gt=0, description="free balance of the paper account")
    maintenance_margin_rate: float = Field(0.005, ge=0, lt=1, description="for the liquidation estimate")
    max_signal_age: Duration = Field(5.0, description="approved signals older than this (market time) are dropped")
    metrics_port: int = Field(0, ge=0, le=65535, description="/metrics port (env METRICS_PORT wins)")
    health_port: int = Field(0, ge=0, le=65535, description="/healthz port (env HEALTH_PORT wins)")


class NearLiqGuardConfig(Section):
    enabled: bool = Field(True, description="block longs whose liquidation price is too near the entry")
    sl_buffer_multiplier: float = Field(1.5, gt=0, description="block longs nearer liquidation than this x SL")


class RiskConfig(Section):
    near_liq_guard: NearLiqGuardConfig = NearLiqGuardConfig()
    assumed_sl_pct: float = Field(0.003, gt=0, lt=1, description="assumed stop-loss distance, fraction")
    window_trades: int = Field(500, ge=1, description="closed trades in the rolling window")
    window_orders: int = Field(2000, ge=1, description="finished orders in the rolling fill-rate window")
    window_candidates: int = Field(2000, ge=10, description="candidates in the PSI/KS window")
    cluster_gap: Duration = Field(2.0, description="trades entered further apart start a new cluster "
                                                   "(cluster-robust win-rate variance)")
    publish_interval: Duration = Field(0.5, description="how often gauges are recomputed")
    gap_scan_interval: Duration = Field(300.0, description="how often the parquet gap scan runs")
    state_file: str | None = Field(None, description="where hourly trade counts per release persist")
    metrics_port: int = Field(0, ge=0, le=65535, description="/metrics port (env METRICS_PORT wins)")
    health_port: int = Field(0, ge=0, le=65535, description="/healthz port (env HEALTH_PORT wins)")


class ShadowConfig(Section):
    enabled: bool = Field(True, description="score every candidate with the shadow model too")
    use_threshold_from_meta: bool = Field(True, description="take tau_entry/tau_hold from model.json")
    tau_entry: float | None = Field(None, ge=0, le=1, description="override entry threshold")
    tau_hold: float | None = Field(None, ge=0, le=1, description="override hold threshold")


class AiScorerConfig(Section):
    shadow: ShadowConfig = ShadowConfig()
    tau_entry: float | None = Field(None, ge=0, le=1, description="active-model entry threshold (None: model.json)")
    batch_size: int = Field(256, ge=1, le=10000, description="candidates fetched and scored per batch")
    parity_sample_rate: float = Field(0.01, ge=0, le=1, description="share of rows re-scored by native LightGBM")
    parity_tolerance: float = Field(1e-5, gt=0, description="max |p_onnx - p_native| before a parity failure")
    registry_poll_interval: Duration = Field(1.0, description="how often registry slots are checked for changes")
    metrics_port: int = Field(0, ge=0, le=65535, description="/metrics port (env METRICS_PORT wins)")
    health_port: int = Field(0, ge=0, le=65535, description="/healthz port (env HEALTH_PORT wins)")


class RegistryConfig(Section):
    root: str = Field("models/registry", description="model registry directory")


class DataConfig(Section):
    capture_dir: str = Field("../shared/data/capture", description="recorded Binance capture directory")
    parquet_dir: str = Field("data/parquet", description="hive-partitioned parquet output")


class AppConfig(Section):
    """Root of config/app.yml."""

    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT"], min_length=1,
                               description="instruments traded and replayed (venue symbols)")
    exchange: ExchangeConfig = ExchangeConfig()
    nats: NatsConfig = NatsConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    rollout: RolloutConfig = RolloutConfig()
    rollout_guard: RolloutGuardConfig = RolloutGuardConfig()
    canary_pipeline: CanaryPipelineConfig = CanaryPipelineConfig()
    collector: CollectorConfig = CollectorConfig()
    signal_engine: SignalEngineConfig = SignalEngineConfig()
    executor: ExecutorConfig = ExecutorConfig()
    risk: RiskConfig = RiskConfig()
    ai_scorer: AiScorerConfig = AiScorerConfig()
    registry: RegistryConfig = RegistryConfig()
    data: DataConfig = DataConfig()
