"""Regime-specific thresholds (scripts/threshold_builder.py): precision-first tau_entry / tau_hold per regime.

- **Regimes.** Rows from the synthetic generator keep their regime (normal,
  event, high-vol), as the canary pipeline's synthetic days do. Recorded rows
  (regime ``capture``, or any value that is not a synthetic regime) carry no
  regime, so they are classified by window with the canary pipeline's own
  classification, :func:`tidegate.pipeline.canary_days.classify_table`, and
  ``canary_pipeline.replay_window`` / ``high_vol_quantile`` / ``event_quantile``;
  the quantiles are pooled over all the recorded rows, as the canary pools its
  replay. The classification reads features only, never labels or scores.
- **Split.** The training split (``train.time_split``, the same embargo of one
  label horizon). Thresholds are chosen on validation rows only, with the rule
  and target precision training used (``evaluate.choose_thresholds``); test
  rows are scored with the model's ONNX file and reported at the chosen
  thresholds, never used to choose them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from tidegate.features.schema import FEATURE_NAMES
from tidegate.market.synthetic import REGIMES
from tidegate.pipeline.canary_days import classify_table
from tidegate.pipeline.evaluate import choose_thresholds, score_metrics
from tidegate.pipeline.train import _label_params, _utc, load_training, read_metadata, time_split


def label_regimes(table: pa.Table, *, window_s: float, high_vol_quantile: float, event_quantile: float
                  ) -> np.ndarray:
    """Regime of every row: the synthetic label where there is one, else the canary's window classification."""
    regime = np.asarray(table.column("regime").to_pylist(), object)
    recorded = ~np.isin(regime, REGIMES)
    if recorded.any():
        regime[recorded] = classify_table(table.filter(pa.array(recorded)), window_s=window_s,
                                          high_vol_quantile=high_vol_quantile, event_quantile=event_quantile)
    return regime


def build_regime_thresholds(data: str | Path | pa.Table, model_dir: str | Path, *, window_s: float,
                            high_vol_quantile: float, event_quantile: float, min_rows: int = 200
                            ) -> dict[str, object]:
    """Thresholds per regime, chosen on the validation slice; the test slice is only reported."""
    from tidegate.pipeline.parity import onnx_proba, onnx_session

    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    table = load_training(data)
    lp = _label_params(table)
    t = table.column("local_ns").to_numpy()
    _, va, te = time_split(t, (lp.latency_ms + lp.fill_horizon_ms + lp.markout_ms + lp.sample_ms) * 1_000_000)
    regimes = label_regimes(table, window_s=window_s, high_vol_quantile=high_vol_quantile,
                            event_quantile=event_quantile)
    x = np.column_stack([table.column(n).to_numpy().astype(np.float32) for n in FEATURE_NAMES])
    y = table.column("label").to_numpy().astype(np.int64)
    session = onnx_session(model_dir / "model.onnx")
    p_va, p_te = onnx_proba(session, x[va]), onnx_proba(session, x[te])
    y_va, y_te, r_va, r_te = y[va], y[te], regimes[va], regimes[te]
    target = (meta.get("train_params") or {}).get("target_precision")  # type: ignore[union-attr]
    global_th = meta["thresholds"]
    recorded = ~np.isin(np.asarray(table.column("regime").to_pylist(), object), REGIMES)
    out: dict[str, object] = {
        "model_id": meta["id"], "global": global_th, "chosen_on": "validation",
        "split": {"validation_rows": int(va.sum()), "test_rows": int(te.sum()),
                  "validation_start": _utc(int(t[va].min())), "validation_end": _utc(int(t[va].max())),
                  "test_start": _utc(int(t[te].min())), "test_end": _utc(int(t[te].max()))},
        "regime_labels": {"synthetic_rows": int((~recorded).sum()), "classified_rows": int(recorded.sum()),
                          "window_s": window_s, "high_vol_quantile": high_vol_quantile,
                          "event_quantile": event_quantile},
        "regimes": {},
    }
    for regime in sorted(set(r_va) | set(r_te)):
        m, mt = r_va == regime, r_te == regime
        if m.sum() < min_rows or y_va[m].sum() == 0:
            why = "too few validation rows" if m.sum() < min_rows else "no positive validation rows"
            entry: dict[str, object] = {**global_th, "rows": int(m.sum()), "source": f"global ({why})"}
        else:
            c = choose_thresholds(y_va[m], p_va[m], target_precision=target)
            entry = {"tau_entry": c.tau_entry, "tau_hold": c.tau_hold, "precision": c.precision_entry,
                     "support": c.support_entry, "rows": int(m.sum()), "positive_rate": float(y_va[m].mean()),
                     "source": "regime (validation)"}
        if mt.any():  # reported only: the choice above never sees these rows
            test = score_metrics(y_te[mt], p_te[mt], float(entry["tau_entry"]), "test")  # type: ignore[arg-type]
            entry.update({k: int(v) if k in ("test_rows", "test_approved") else v for k, v in test.items()})
        out["regimes"][regime] = entry  # type: ignore[index]
    return out
