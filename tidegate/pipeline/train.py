"""Train the LightGBM scorer, export ONNX + metadata, check parity: one call, one output directory.

Split: strictly by time (train | validation | test = 70 | 15 | 15 % of rows by
receive time), with an embargo of one label horizon before each boundary, because
a label looks ``latency + fill horizon + markout`` into the future and would
otherwise leak the next slice's prices into training. Validation picks the
thresholds (precision first, evaluate.py) and early-stops the trees; the test
slice, the latest in time, is only measured, so the model card's PR-AUC is
out-of-time.

Output directory::

    model.onnx            ZipMap off, float32-exact thresholds (export.py)
    model.json            ModelMetadata (id, schema hash, features, thresholds, metrics, windows,
                          regimes, sha256 of model.onnx, drift reference bins, parity)
    lgbm_meta.json        the benchmark a release must meet or beat (seed release checklist)
    artifacts/model.lgbm.txt    native LightGBM model (parity reference)
    artifacts/parity_rows.npy   held-out rows for parity checks
    artifacts/parity.json       the parity report

A deliberately worse candidate for fault-injection demos: ``degrade=True``
(shuffled training labels, 5 trees).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tidegate.atomic import atomic_write_bytes, atomic_write_json
from tidegate.features.schema import FEATURE_DTYPES, FEATURE_NAMES, SCHEMA
from tidegate.pipeline.evaluate import choose_thresholds, reference_bins, score_metrics
from tidegate.pipeline.export import export_onnx
from tidegate.pipeline.labeling import LabelParams
from tidegate.pipeline.parity import NATIVE_MODEL, PARITY_ROWS, ParityReport, check_parity
from tidegate.registry.metadata import ModelMetadata, Thresholds

PARITY_SAMPLE = 2_000


class ParityFailure(RuntimeError):
    def __init__(self, report: ParityReport):
        super().__init__(report.summary())
        self.report = report


@dataclass(frozen=True)
class TrainParams:
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 200
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 100
    seed: int = 7
    n_jobs: int = 2
    shuffle_labels: bool = False
    target_precision: float | None = None


def _utc(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")


def time_split(t: np.ndarray, embargo_ns: int, fractions: tuple[float, float] = (0.70, 0.85)
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, validation, test) by time with an embargo before each boundary."""
    t_val, t_test = (float(np.quantile(t, f)) for f in fractions)
    train = t < t_val - embargo_ns
    val = (t >= t_val) & (t < t_test - embargo_ns)
    test = t >= t_test
    for name, mask in (("train", train), ("validation", val), ("test", test)):
        if mask.sum() < 50:
            raise ValueError(f"time split leaves only {int(mask.sum())} {name} rows: need more labelled data")
    return train, val, test


def _label_params(table: pa.Table) -> LabelParams:
    raw = (table.schema.metadata or {}).get(b"tidegate.label_params")
    if not raw:
        return LabelParams()
    import ast

    return LabelParams(**ast.literal_eval(raw.decode()))


def load_training(data: str | Path | pa.Table) -> pa.Table:
    table = data if isinstance(data, pa.Table) else pq.read_table(data)
    missing = [n for n in (*FEATURE_NAMES, "label", "local_ns") if n not in table.column_names]
    if missing:
        raise ValueError(f"training data lacks column(s) {missing}: was it produced by labeling.py?")
    return table.sort_by([("local_ns", "ascending"), ("side", "descending")])


def train_model(data: str | Path | pa.Table, output_dir: str | Path = "models/latest", *,
                params: TrainParams = TrainParams(), model_id: str | None = None, notes: str = "",
                degrade: bool = False) -> Path:
    """Train, export and parity-check; returns the output directory. Raises ParityFailure on a parity breach."""
    import lightgbm as lgb

    if degrade:
        params = TrainParams(**{**params.__dict__, "n_estimators": 5, "shuffle_labels": True,
                                "early_stopping_rounds": 0})
    table = load_training(data)
    lp = _label_params(table)
    x = np.column_stack([table.column(n).to_numpy().astype(np.float32) for n in FEATURE_NAMES])
    y = table.column("label").to_numpy().astype(np.int64)
    t = table.column("local_ns").to_numpy()
    embargo = (lp.latency_ms + lp.fill_horizon_ms + lp.markout_ms + lp.sample_ms) * 1_000_000
    tr, va, te = time_split(t, embargo)
    y_train = y[tr].copy()
    if params.shuffle_labels:
        np.random.default_rng(params.seed).shuffle(y_train)

    clf = lgb.LGBMClassifier(n_estimators=params.n_estimators, learning_rate=params.learning_rate,
                             num_leaves=params.num_leaves, min_child_samples=params.min_child_samples,
                             subsample=params.subsample, subsample_freq=1, colsample_bytree=params.colsample_bytree,
                             reg_lambda=params.reg_lambda, n_jobs=params.n_jobs, random_state=params.seed,
                             verbose=-1)
    callbacks = [lgb.early_stopping(params.early_stopping_rounds, verbose=False)] \
        if params.early_stopping_rounds else []
    clf.fit(x[tr], y_train, eval_X=(x[va],), eval_y=(y[va],), eval_metric="average_precision", callbacks=callbacks)
    booster = clf.booster_
    p_val = booster.predict(x[va])
    p_test = booster.predict(x[te])
    choice = choose_thresholds(y[va], p_val, target_precision=params.target_precision)
    metrics = {**score_metrics(y[va], p_val, choice.tau_entry, "val"),
               **score_metrics(y[te], p_test, choice.tau_entry, "test"),
               "train_rows": float(tr.sum()), "trees": float(booster.num_trees()),
               "pr_auc": 0.0, "precision_at_tau": 0.0}
    metrics["pr_auc"] = metrics["test_pr_auc"]
    metrics["precision_at_tau"] = metrics["test_precision_at_tau"]
    metrics["positive_rate"] = metrics["test_positive_rate"]

    out = Path(output_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
    try:
        (staging / "artifacts").mkdir()
        onnx_bytes, fixed = export_onnx(clf, len(FEATURE_NAMES), metadata={
            "schema_hash": SCHEMA.hash, "feature_names": ",".join(FEATURE_NAMES)})
        atomic_write_bytes(staging / "model.onnx", onnx_bytes)
        sha = hashlib.sha256(onnx_bytes).hexdigest()
        booster.save_model(str(staging / NATIVE_MODEL))
        rng = np.random.default_rng(params.seed)
        held = x[te][rng.choice(int(te.sum()), size=min(PARITY_SAMPLE, int(te.sum())), replace=False)]
        np.save(staging / PARITY_ROWS, held)
        now = dt.datetime.now(dt.UTC)
        mid = model_id or f"lgbm-{now:%Y%m%d-%H%M%S}-{sha[:6]}"
        sessions = sorted(set(table.column("session").to_pylist()))
        regimes = sorted(set(table.column("regime").to_pylist()))
        meta = ModelMetadata(
            id=mid, created_at=now.isoformat(timespec="seconds"), schema_hash=SCHEMA.hash,
            feature_names=list(FEATURE_NAMES), feature_dtypes=list(FEATURE_DTYPES),
            thresholds=Thresholds(tau_entry=choice.tau_entry, tau_hold=choice.tau_hold), metrics=metrics,
            training_window={"train_start": _utc(int(t[tr].min())), "train_end": _utc(int(t[tr].max())),
                             "validation_start": _utc(int(t[va].min())), "validation_end": _utc(int(t[va].max())),
                             "test_start": _utc(int(t[te].min())), "test_end": _utc(int(t[te].max()))},
            regimes=regimes, sha256=sha, reference_bins=reference_bins(x[tr], list(FEATURE_NAMES)),
            native_model=NATIVE_MODEL,
            notes=notes or ("DEGRADED candidate (shuffled labels, 5 trees) for fault injection" if degrade else ""),
        ).model_dump(mode="json")
        meta.update({"sessions": sessions, "label_params": lp.as_dict(), "train_params": params.__dict__,
                     "threshold_choice": choice.__dict__, "float32_thresholds_fixed": fixed,
                     "feature_schema": SCHEMA.sidecar(), "degraded": degrade})
        atomic_write_json(staging / "model.json", meta)
        report = check_parity(staging)
        atomic_write_json(staging / "artifacts" / "parity.json", report.as_dict())
        meta["parity"] = {"ok": report.ok, "max_abs_diff": report.max_abs_diff, "flips": report.flips,
                          "rows": report.rows, "threshold_rows": report.threshold_rows}
        atomic_write_json(staging / "model.json", meta)
        atomic_write_json(staging / "lgbm_meta.json", benchmark(meta))
        if not report.ok:
            raise ParityFailure(report)
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        staging.chmod(0o755)
        out.parent.mkdir(parents=True, exist_ok=True)
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def benchmark(meta: dict[str, object]) -> dict[str, object]:
    """lgbm_meta.json: what the release checklist compares a candidate against."""
    m = meta["metrics"]
    assert isinstance(m, dict)
    return {"id": meta["id"], "created_at": meta["created_at"], "schema_hash": meta["schema_hash"],
            "thresholds": meta["thresholds"], "pr_auc": m["test_pr_auc"],
            "precision_at_tau": m["test_precision_at_tau"], "positive_rate": m["test_positive_rate"],
            "recall_at_tau": m["test_recall_at_tau"], "evaluation_window": {
                k: v for k, v in dict(meta["training_window"]).items() if k.startswith("test")},  # type: ignore[arg-type]
            "regimes": meta["regimes"]}


def read_metadata(model_dir: str | Path) -> dict[str, object]:
    return json.loads((Path(model_dir) / "model.json").read_text())
