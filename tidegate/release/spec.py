"""The ModelRelease document: one pydantic model for the local YAML file and the CRD.

``apiVersion: tidegate.dev/v1alpha1, kind: ModelRelease, metadata, spec, status``.
The same file runs locally (``tidegate release run release.yaml``) and can be
``kubectl apply``-ed unchanged; the CRD's OpenAPI schema is generated from (and
checked against) these models, so the two cannot drift. Field names are camelCase
as Kubernetes users expect; durations accept ``30s``/``15m``/``2h`` or bare seconds.

Guard-rail fields are optional: an unset field takes its default from
``rollout_guard`` in config/app.yml (the seed's home for them) when the release is
resolved (:func:`effective_limits`), so one config change moves every release.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tidegate.config.schema import RolloutGuardConfig
from tidegate.durations import Duration
from tidegate.release.sequential import DEFAULT_TAU

API_VERSION = "tidegate.dev/v1alpha1"
KIND = "ModelRelease"
GATES = ("winrate", "parity", "psi", "ks", "fill_rate", "markout", "ece")
GateName = Literal["winrate", "parity", "psi", "ks", "fill_rate", "markout", "ece"]
Phase = Literal["Pending", "Validating", "Shadow", "Canary", "Ramping", "Promoted", "RolledBack", "Paused", "Failed"]
TERMINAL_PHASES = ("Promoted", "RolledBack", "Failed")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(BaseModel):
    """Kubernetes object metadata; the API server adds fields, which are kept as-is."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
                      description="release name (a DNS subdomain, as Kubernetes requires)")
    namespace: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class StageSpec(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="stage name, unique in the release")
    weight: int = Field(0, ge=0, le=100, description="percent of signals routed to the candidate; 0 = shadow")
    duration: Duration | None = Field(
        None, description="minimum time in the stage with all gates passing; unset = wait for a manual promote")
    maxDuration: Duration | None = Field(
        None, description="longest the stage may wait for enough samples (INSUFFICIENT) before onInsufficient")

    @model_validator(mode="after")
    def _max_after_min(self) -> StageSpec:
        if self.maxDuration is not None and self.duration is not None and self.maxDuration < self.duration:
            raise ValueError(f"stage {self.name!r}: maxDuration must be >= duration")
        return self


def default_stages() -> list[StageSpec]:
    """The seed's release policy: a trading day in shadow, 10% canary 2-4 h, then 25 -> 50 -> 100%."""
    return [StageSpec(name="shadow", weight=0, duration=86400),
            StageSpec(name="canary", weight=10, duration=7200, maxDuration=14400),
            StageSpec(name="ramp-25", weight=25, duration=3600, maxDuration=7200),
            StageSpec(name="ramp-50", weight=50, duration=3600, maxDuration=7200),
            StageSpec(name="full", weight=100)]


class Validations(_Model):
    skip: bool = Field(False, description="skip the release checklist (release.sh --skip-validations)")
    requireAll: bool = Field(False, description="treat a skipped check (tool not available) as a failure")
    firstRelease: bool = Field(False, description="no active model yet: the benchmark check passes without one "
                                                  "(otherwise a missing benchmark fails it)")


class RolloutToggle(_Model):
    enabled: bool = Field(True, description="false: stop after validation with rollout disabled")
    rngSeed: int | None = Field(None, ge=0, description="routing salt; unset: rollout.rng_seed from config")


class PrometheusSpec(_Model):
    url: str | None = Field(None, description="Prometheus base URL; unset: prometheus.url from config")
    timeout: Duration | None = Field(None, description="per-query timeout; unset: prometheus.timeout_s from config")


class Windows(_Model):
    parity: Duration | None = Field(None, description="increase(onnx_parity_fail_total[...]) window")
    drift: Duration | None = Field(None, description="max_over_time(psi_feature/ks_feature[...]) window")


class Analysis(_Model):
    interval: Duration = Field(30.0, description="time between guard-rail evaluations")
    staleAfter: Duration = Field(120.0, description="a series whose newest sample is older is UNAVAILABLE")
    prometheus: PrometheusSpec = PrometheusSpec()
    windows: Windows = Windows()
    labels: dict[str, str] | None = Field(
        None, description="label matchers added to every guard-rail selector, e.g. {namespace: prod}")


class OnUnavailable(_Model):
    action: Literal["hold", "rollback"] = Field("hold", description="what an UNAVAILABLE gate does at once")
    maxHold: Duration = Field(600.0, description="how long to hold before 'then'")
    then: Literal["rollback", "pause"] = "rollback"


class OnInsufficient(_Model):
    then: Literal["rollback", "pause"] = Field(
        "rollback", description="when a stage reaches maxDuration without enough samples")


class WinrateGate(_Model):
    """How the win-rate gate decides (docs/release-policy.md, "The win-rate gate")."""

    test: Literal["sequential", "threshold"] | None = Field(
        None, description="sequential: always-valid mSPRT (default); threshold: the seed's rule at every look")
    alpha: float | None = Field(None, gt=0, lt=0.5, description="false-rollback probability over the release")
    tau: float | None = Field(None, gt=0, le=0.5, description="mixing sd of the mSPRT (fraction; default 0.08)")
    earlyPromote: bool = Field(False, description="advance before the stage duration once the canary is "
                                                  "shown non-inferior (lower bound > -winrateDeltaPP)")


class GuardRails(_Model):
    winrate: WinrateGate = WinrateGate()
    winrateDeltaPP: float | None = Field(None, ge=0, le=100, description="percentage points")
    minSample: int | None = Field(None, ge=1)
    psiBlock: float | None = Field(None, gt=0)
    ksBlock: float | None = Field(None, gt=0, le=1)
    eceMax: float | None = Field(None, gt=0, le=1)
    fillRateMin: float | None = Field(None, ge=0, le=1)
    markoutMinBps: float | None = None
    gates: list[GateName] = Field(default_factory=lambda: list(GATES), description="gates evaluated")
    failureLimit: int = Field(1, ge=1, description="consecutive FAILs of a non-critical gate before rollback")
    onUnavailable: OnUnavailable = OnUnavailable()
    onInsufficient: OnInsufficient = OnInsufficient()

    @field_validator("gates")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("gates must not repeat")
        return v


class Adaptive(_Model):
    enabled: bool = False
    maxStep: float = Field(0.01, gt=0, le=0.1, description="largest change of tau_entry/tau_hold per step")
    interval: Duration = Field(3600.0, description="time between adaptive steps")
    targetPrecision: float = Field(0.55, gt=0, lt=1, description="rolling_precision{route=\"full\"} to aim for")
    band: float = Field(0.02, ge=0, lt=0.5, description="no step while precision is within target +- band")
    minTau: float = Field(0.5, ge=0, le=1)
    maxTau: float = Field(0.95, ge=0, le=1)


class ThresholdPolicy(_Model):
    freezeFor: Duration = Field(86400.0, description="thresholds are frozen this long after the ramp")
    adaptive: Adaptive = Adaptive()


class ReleaseSpec(_Model):
    modelId: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="candidate model id")
    previousModelId: str | None = Field(None, description="rollback target; unset: the active model at start")
    notes: str = Field("", description="free text logged with the release in manifest.json")
    validations: Validations = Validations()
    rollout: RolloutToggle = RolloutToggle()
    stages: list[StageSpec] = Field(default_factory=default_stages, min_length=1)
    analysis: Analysis = Analysis()
    guardRails: GuardRails = GuardRails()
    cooldown: Duration | None = Field(None, description="no retry/new release this long after a rollback")
    thresholds: ThresholdPolicy = ThresholdPolicy()
    decisionLogLimit: int = Field(200, ge=10, le=2000, description="decisions kept in status")

    @model_validator(mode="after")
    def _stages(self) -> ReleaseSpec:
        names = [s.name for s in self.stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stages: duplicate stage name(s) {dup}")
        for i in range(1, len(self.stages)):
            if self.stages[i].weight < self.stages[i - 1].weight:
                raise ValueError(f"stages[{i}] ({self.stages[i].name}): weight {self.stages[i].weight} is below "
                                 f"the previous stage's {self.stages[i - 1].weight}; weights must never decrease")
        for i, s in enumerate(self.stages[:-1]):
            if s.weight == 100:
                raise ValueError(f"stages[{i}] ({s.name}): weight 100 promotes; it must be the last stage")
        return self


class DecisionRecord(_Model):
    """One line of the decision log: why the release did (or did not do) something."""

    at: str
    stage: str
    gate: str = ""
    verdict: str = ""
    value: float | None = None
    sample: float | None = None
    threshold: float | None = None
    evidence: dict[str, float | None] | None = None
    query: str = ""
    action: str = ""
    reason: str = ""


class Condition(_Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    lastTransitionTime: str = ""


class GateStatus(_Model):
    verdict: str
    value: float | None = None
    sample: float | None = None
    threshold: float | None = None
    evidence: dict[str, float | None] | None = None
    at: str = ""
    consecutiveFailures: int = 0


class PendingEffect(_Model):
    """An effect decided and saved but not yet known to be applied (write-ahead log)."""

    id: str
    kind: str
    args: dict[str, Any] = Field(default_factory=dict)


class ReleaseStatus(_Model):
    phase: Phase = "Pending"
    canaryStartedAt: str | None = Field(None, description="when this attempt's first weighted stage began: "
                                                          "the win-rate evidence counts from here")
    stage: str = ""
    stageIndex: int = Field(-1, description="-1 before the first stage")
    weight: int = 0
    startedAt: str | None = None
    stageStartedAt: str | None = None
    holdSince: str | None = None
    pausedAt: str | None = None
    pausedFrom: Phase | None = None
    pauseReason: Literal["manual", "rolloutDisabled", "unavailable", "insufficient"] | None = None
    mode: Literal["disabled", "canary", "full"] | None = Field(None, description="rollout mode last written")
    promotedAt: str | None = None
    finishedAt: str | None = None
    cooldownUntil: str | None = None
    lastAdaptiveAt: str | None = None
    observedGeneration: int | None = None
    previousModelId: str | None = None
    tauEntry: float | None = None
    tauHold: float | None = None
    rollbackReason: str | None = None
    message: str = ""
    retries: int = 0
    sequence: int = Field(0, description="effects decided so far (makes effect ids unique)")
    rolloutRevision: int = 0
    lastCommand: str | None = Field(None, description="id of the last manual command handled (local driver)")
    conditions: list[Condition] = Field(default_factory=list)
    gates: dict[str, GateStatus] = Field(default_factory=dict)
    validation: list[dict[str, Any]] = Field(default_factory=list)
    pendingEffects: list[PendingEffect] = Field(default_factory=list)
    decisions: list[DecisionRecord] = Field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The status as strict JSON: a rate with no trades yet is NaN and a bound with no evidence
        is infinite, and JSON has neither. The Kubernetes API refuses a patch that holds one
        ("invalid character 'N'"), which froze a release's status while its effects went on, so
        every store writes this form: a non-finite number becomes null ("not defined yet")."""
        return json.loads(self.model_dump_json())


class ModelRelease(_Model):
    apiVersion: Literal["tidegate.dev/v1alpha1"] = API_VERSION
    kind: Literal["ModelRelease"] = KIND
    metadata: Metadata
    spec: ReleaseSpec
    status: ReleaseStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


class SpecError(ValueError):
    """A release document that does not validate; the message names every bad field."""


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_release(doc: Any) -> ModelRelease:
    """Validate a parsed YAML/JSON document; raise SpecError naming each bad field."""
    from pydantic import ValidationError

    if not isinstance(doc, dict):
        raise SpecError(f"a ModelRelease must be a mapping, got {type(doc).__name__}")
    try:
        return ModelRelease.model_validate(doc)
    except ValidationError as exc:
        lines = [f"{_loc(e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        raise SpecError("invalid ModelRelease:\n  - " + "\n  - ".join(lines)) from None


def load_release(path: str) -> ModelRelease:
    """Read a release file (the first ModelRelease document in it)."""
    import yaml

    with open(path) as fh:
        try:
            docs = [d for d in yaml.safe_load_all(fh) if d is not None]
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML: {exc}") from None
    releases = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if not releases:
        raise SpecError(f"{path}: no document with kind: {KIND}")
    try:
        return parse_release(releases[0])
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


_NAME_RE = re.compile(r"[^a-z0-9-]+")


def release_name_for(model_id: str) -> str:
    """A valid release name derived from a model id (release.sh --shadow-id)."""
    name = _NAME_RE.sub("-", model_id.lower()).strip("-")
    return name[:63] or "release"


class Limits(BaseModel):
    """Guard rails with every default resolved: what the gates and the engine compare against."""

    model_config = ConfigDict(frozen=True)
    winrate_delta_pp: float
    min_sample: int
    psi_block: float
    ks_block: float
    ece_max: float
    fill_rate_min: float
    markout_min_bps: float
    parity_window: float
    drift_window: float
    stale_after: float
    cooldown: float
    gates: tuple[str, ...]
    labels: tuple[tuple[str, str], ...] = ()
    winrate_test: str = "sequential"
    winrate_alpha: float = 0.05
    winrate_tau: float = DEFAULT_TAU
    early_promote: bool = False
    winrate_window: float = 1800.0


def effective_limits(spec: ReleaseSpec, defaults: RolloutGuardConfig | None = None) -> Limits:
    """Spec overrides on top of config/app.yml's rollout_guard (schema defaults when None)."""
    d = defaults or RolloutGuardConfig()
    g = spec.guardRails

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return Limits(winrate_delta_pp=pick(g.winrateDeltaPP, d.winrate_delta_pp),
                  min_sample=pick(g.minSample, d.min_sample),
                  psi_block=pick(g.psiBlock, d.psi_block), ks_block=pick(g.ksBlock, d.ks_block),
                  ece_max=pick(g.eceMax, d.ece_max), fill_rate_min=pick(g.fillRateMin, d.fill_rate_min),
                  markout_min_bps=pick(g.markoutMinBps, d.markout_min_bps),
                  parity_window=pick(spec.analysis.windows.parity, d.parity_window),
                  drift_window=pick(spec.analysis.windows.drift, d.drift_window),
                  stale_after=spec.analysis.staleAfter, cooldown=pick(spec.cooldown, d.cooldown),
                  gates=tuple(g.gates), labels=tuple(sorted((spec.analysis.labels or {}).items())),
                  winrate_test=pick(g.winrate.test, d.winrate_test),
                  winrate_alpha=pick(g.winrate.alpha, d.winrate_alpha),
                  winrate_tau=pick(g.winrate.tau, DEFAULT_TAU), early_promote=g.winrate.earlyPromote,
                  winrate_window=d.winrate_window)
