"""ONNX vs native LightGBM parity: held-out rows plus adversarial rows at every split threshold.

Random rows almost never land on a threshold, so they cannot catch the float32
rounding bug (export.py). For every split (feature f, threshold t) we add two rows
built from a typical row: f set to the largest float32 <= t (must go left) and to
the next float32 above it (must go right). The gate (anchors §2): max |Δp| <= 1e-5
and no decision flip at ``tau_entry``; the report lists the worst rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tidegate.features.formulas import FLUSH_BELOW
from tidegate.pipeline.export import booster_splits, float32_floor

MAX_ABS_DIFF = 1e-5
PARITY_ROWS = "artifacts/parity_rows.npy"
NATIVE_MODEL = "artifacts/model.lgbm.txt"


@dataclass(frozen=True)
class WorstRow:
    index: int
    kind: str  # "held-out" | "threshold-at" | "threshold-above"
    native: float
    onnx: float
    abs_diff: float
    feature: str | None = None


@dataclass(frozen=True)
class ParityReport:
    model_id: str
    rows: int
    threshold_rows: int
    max_abs_diff: float
    flips: int
    tau_entry: float
    tolerance: float
    worst: list[WorstRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.flips == 0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        lines = [f"parity {verdict} for {self.model_id}: {self.rows} rows ({self.threshold_rows} at/above split "
                 f"thresholds), max |dp| = {self.max_abs_diff:.3g} (limit {self.tolerance:g}), "
                 f"flips at tau_entry={self.tau_entry:.4f}: {self.flips}"]
        for w in self.worst[:5]:
            lines.append(f"  row {w.index} [{w.kind}{' ' + w.feature if w.feature else ''}]: native {w.native:.8f} "
                         f"onnx {w.onnx:.8f} |dp| {w.abs_diff:.3g}")
        return "\n".join(lines)


def _probe_values(t: float) -> list[np.float32]:
    """float32 inputs that bracket threshold t, restricted to the feature domain (tiny values are flushed)."""
    at = float32_floor(t)
    above = np.nextafter(at, np.float32(np.inf))
    values = [v if abs(v) >= FLUSH_BELOW else np.float32(0.0) for v in (at, above)]
    if abs(t) < FLUSH_BELOW:  # LightGBM's zero threshold (+-1e-35): probe both sides of zero
        values += [-FLUSH_BELOW, FLUSH_BELOW]
    return values


def threshold_rows(booster: object, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows at and one float32 step above every split threshold; (rows, feature index, kind 0=at 1=above)."""
    splits = sorted({(f, t) for tree in booster_splits(booster) for f, t, _ in tree})
    rows: list[np.ndarray] = []
    feats: list[int] = []
    kinds: list[int] = []
    base32 = base.reshape(-1).astype(np.float32)
    for f, t in splits:
        for kind, v in enumerate(_probe_values(t)):
            row = base32.copy()
            row[f] = v
            rows.append(row)
            feats.append(f)
            kinds.append(min(kind, 1))
    if not rows:
        return np.zeros((0, len(base32)), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int8)
    return np.vstack(rows), np.asarray(feats, np.int64), np.asarray(kinds, np.int8)


def onnx_session(path: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_proba(session: object, x: np.ndarray) -> np.ndarray:
    out = session.run(["probabilities"], {"input": np.ascontiguousarray(x, np.float32)})[0]  # type: ignore[attr-defined]
    return np.asarray(out)[:, 1].astype(np.float64)


def compare(native: np.ndarray, onnx_p: np.ndarray, tau: float, kinds: list[str], features: list[str | None],
            model_id: str, n_threshold: int, tolerance: float = MAX_ABS_DIFF) -> ParityReport:
    diff = np.abs(native - onnx_p)
    flips = int(np.count_nonzero((native >= tau) != (onnx_p >= tau)))
    worst_idx = np.argsort(-diff, kind="stable")[:10]
    worst = [WorstRow(int(i), kinds[i], float(native[i]), float(onnx_p[i]), float(diff[i]), features[i])
             for i in worst_idx]
    return ParityReport(model_id=model_id, rows=len(native), threshold_rows=n_threshold,
                        max_abs_diff=float(diff.max()) if len(diff) else 0.0, flips=flips, tau_entry=tau,
                        tolerance=tolerance, worst=worst)


def check_parity(model_dir: str | Path, *, tolerance: float = MAX_ABS_DIFF, onnx_path: str | Path | None = None,
                 extra_rows: np.ndarray | None = None) -> ParityReport:
    """Compare model.onnx with the native LightGBM model saved beside it (see train.py)."""
    import lightgbm as lgb

    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    names: list[str] = meta["feature_names"]
    booster = lgb.Booster(model_file=str(model_dir / (meta.get("native_model") or NATIVE_MODEL)))
    held = np.load(model_dir / PARITY_ROWS).astype(np.float32)
    if extra_rows is not None:
        held = np.vstack([held, np.asarray(extra_rows, np.float32)])
    base = np.median(held, axis=0).astype(np.float32)
    adv, feats, kinds_adv = threshold_rows(booster, base)
    x = np.vstack([held, adv])
    native = booster.predict(x)
    session = onnx_session(Path(onnx_path) if onnx_path else model_dir / "model.onnx")
    onnx_p = onnx_proba(session, x)
    kinds = ["held-out"] * len(held) + ["threshold-at" if k == 0 else "threshold-above" for k in kinds_adv]
    features: list[str | None] = [None] * len(held) + [names[f] for f in feats]
    return compare(native, onnx_p, float(meta["thresholds"]["tau_entry"]), kinds, features, meta["id"], len(adv),
                   tolerance)
