"""The ai_scorer's models: verified loading, one-thread ONNX sessions, hot swap, decisions.

A model serves only after ``Registry.verify`` accepts it (sha256 of the ONNX
bytes, and its schema hash equal to the live feature schema). A refused model
raises ``ModelRefused``; the caller counts it
(``parquet_schema_version_mismatch_total`` for a schema mismatch) and keeps the
previous model serving: the swap is a single reference assignment made only
after the new session is fully built, so no candidate is ever scored by a
half-loaded model and none is dropped.

Which model decides (BRIEF §4.3), given the rollout state:

- ``disabled``: the active model, route ``paper``;
- ``canary``: route(state, id) = ``canary`` → the candidate model, else the active one (``paper``);
- ``full``: the active model, route ``full``.

The shadow model (the registry's ``shadow`` slot, when ``ai_scorer.shadow.enabled``)
scores every candidate too; its decisions are recorded, never executed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tidegate.config.schema import AiScorerConfig
from tidegate.registry import ArtifactError, Registry
from tidegate.registry.metadata import ModelMetadata
from tidegate.rollout import RolloutState


class ModelRefused(ArtifactError):
    def __init__(self, model_id: str, reason: str, *, schema_mismatch: bool):
        super().__init__(f"model {model_id!r} refused: {reason}")
        self.model_id = model_id
        self.schema_mismatch = schema_mismatch


def onnx_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


@dataclass
class LoadedModel:
    meta: ModelMetadata
    session: ort.InferenceSession
    input_name: str
    output_name: str
    native: object | None = None  # lightgbm.Booster for online parity

    @property
    def id(self) -> str:
        return self.meta.id

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(win) for each row of a float32 matrix."""
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        out = np.asarray(out)
        return out[:, 1] if out.ndim == 2 else out

    def predict_native(self, x: np.ndarray) -> np.ndarray | None:
        if self.native is None:
            return None
        return np.asarray(self.native.predict(x.astype(np.float64), num_threads=1))  # type: ignore[attr-defined]


def load_model(registry: Registry, model_id: str, live_schema_hash: str) -> LoadedModel:
    try:
        meta = registry.verify(model_id, expected_schema_hash=live_schema_hash)
    except ArtifactError as exc:
        raise ModelRefused(model_id, str(exc), schema_mismatch="schema_hash mismatch" in str(exc)) from None
    model_dir = registry.model_dir(model_id)
    try:
        session = onnx_session(model_dir / "model.onnx")
    except Exception as exc:  # a corrupt ONNX file is a refused artifact
        raise ModelRefused(model_id, f"ONNX Runtime cannot load model.onnx: {exc}", schema_mismatch=False) from None
    outputs = [o.name for o in session.get_outputs()]
    output = "probabilities" if "probabilities" in outputs else outputs[-1]
    native = None
    if meta.native_model:
        for candidate in (model_dir / meta.native_model, model_dir / "artifacts" / meta.native_model):
            if candidate.is_file():
                import lightgbm

                native = lightgbm.Booster(model_file=str(candidate))
                break
    return LoadedModel(meta, session, session.get_inputs()[0].name, output, native)


@dataclass(frozen=True)
class Thresholds:
    tau_entry: float
    tau_hold: float


def active_thresholds(model: LoadedModel, state: RolloutState, cfg: AiScorerConfig) -> Thresholds:
    """Rollout state overrides (frozen by the release engine) > config (when not from meta) > model.json."""
    meta = model.meta.thresholds
    entry = meta.tau_entry if cfg.shadow.use_threshold_from_meta or cfg.tau_entry is None else cfg.tau_entry
    hold = meta.tau_hold
    if state.tau_entry is not None:
        entry = state.tau_entry
    if state.tau_hold is not None:
        hold = state.tau_hold
    return Thresholds(entry, hold)


def shadow_thresholds(model: LoadedModel, cfg: AiScorerConfig) -> Thresholds:
    sh = cfg.shadow
    meta = model.meta.thresholds
    if sh.use_threshold_from_meta:
        return Thresholds(meta.tau_entry, meta.tau_hold)
    return Thresholds(sh.tau_entry if sh.tau_entry is not None else meta.tau_entry,
                      sh.tau_hold if sh.tau_hold is not None else meta.tau_hold)


class ModelSet:
    """The models in service (active, candidate, shadow), swapped whole when the wanted ids change."""

    def __init__(self, registry: Registry, live_schema_hash: str):
        self.registry = registry
        self.live_schema_hash = live_schema_hash
        self.loaded: dict[str, LoadedModel] = {}
        self.active: LoadedModel | None = None
        self.candidate: LoadedModel | None = None
        self.shadow: LoadedModel | None = None
        self.refused: dict[str, str] = {}

    def wanted(self, state: RolloutState, shadow_enabled: bool) -> tuple[str | None, str | None, str | None]:
        active = state.active_model_id or self.registry.slot("active")
        shadow = self.registry.slot("shadow") if shadow_enabled else None
        candidate = state.candidate_model_id or shadow if state.mode == "canary" else None
        return active, candidate, shadow

    def stale(self, state: RolloutState, shadow_enabled: bool) -> bool:
        """Whether ``resolve`` would change anything (two readlinks: cheap enough to poll on the event loop)."""
        for attr, model_id in zip(("active", "candidate", "shadow"), self.wanted(state, shadow_enabled), strict=True):
            current: LoadedModel | None = getattr(self, attr)
            if (current.id if current else None) != model_id and (model_id is None or model_id not in self.refused):
                return True
        return False

    def get(self, model_id: str | None) -> LoadedModel | None:
        """Load (or reuse) a model; raises ModelRefused for a bad one (remembered, so it is refused once)."""
        if model_id is None:
            return None
        if model_id in self.loaded:
            return self.loaded[model_id]
        model = load_model(self.registry, model_id, self.live_schema_hash)
        self.loaded[model_id] = model
        self.refused.pop(model_id, None)
        return model

    def resolve(self, state: RolloutState, shadow_enabled: bool) -> list[ModelRefused]:
        """Point the slots at the wanted models; a refused one leaves its slot as it was."""
        problems: list[ModelRefused] = []
        active_id, candidate_id, shadow_id = self.wanted(state, shadow_enabled)
        for attr, model_id in (("active", active_id), ("candidate", candidate_id), ("shadow", shadow_id)):
            current: LoadedModel | None = getattr(self, attr)
            if current is not None and current.id == model_id:
                continue
            if model_id is None:
                setattr(self, attr, None)
                continue
            if model_id in self.refused:
                continue
            try:
                setattr(self, attr, self.get(model_id))
            except ModelRefused as exc:
                self.refused[model_id] = str(exc)
                problems.append(exc)
        keep = {m.id for m in (self.active, self.candidate, self.shadow) if m is not None}
        self.loaded = {k: v for k, v in self.loaded.items() if k in keep}
        return problems
