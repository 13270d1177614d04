"""docs/model_card.md, rendered from model.json alone, so the card cannot disagree with the model."""

from __future__ import annotations

from typing import Any


def _f(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, int | float) else str(v)


def render(meta: dict[str, Any]) -> str:
    m = meta.get("metrics", {})
    w = meta.get("training_window", {})
    th = meta.get("thresholds", {})
    lp = meta.get("label_params", {})
    par = meta.get("parity", {})
    lift = (m.get("test_pr_auc", 0.0) / m["test_positive_rate"]) if m.get("test_positive_rate") else 0.0
    lines = [
        f"# Model card: `{meta['id']}`",
        "",
        "Generated from `model.json` by `tidegate.pipeline.model_card` (do not edit by hand; rerun `train.py`).",
        "",
        "## What it scores",
        "",
        "The probability that a post-only order placed at the touch (buy at the best bid, sell at the best ask)",
        f"fills within {lp.get('fill_horizon_ms', '?')} ms and shows a positive markout "
        f"{lp.get('markout_ms', '?')} ms after the fill, net of a {lp.get('maker_fee_bps', '?')} bps maker fee.",
        f"Order latency assumed: {lp.get('latency_ms', '?')} ms; one candidate per {lp.get('sample_ms', '?')} ms "
        "per side. Fills follow the queue-ahead rule (touch crossed, trade through, or the queue ahead consumed);",
        "an order the touch has already crossed when it arrives is a post-only rejection, never a fill.",
        "",
        "## Dataset",
        "",
        f"- Sessions: {', '.join(f'`{s}`' for s in meta.get('sessions', []))}",
        f"- Regimes covered: {', '.join(meta.get('regimes', [])) or 'n/a'}",
        f"- Train: {w.get('train_start')} → {w.get('train_end')} ({int(m.get('train_rows', 0))} rows)",
        f"- Validation (thresholds, early stopping): {w.get('validation_start')} → {w.get('validation_end')} "
        f"({int(m.get('val_rows', 0))} rows)",
        f"- Test (later time slice, measured only): {w.get('test_start')} → {w.get('test_end')} "
        f"({int(m.get('test_rows', 0))} rows)",
        "- Split strictly by receive time with an embargo of one label horizon before each boundary.",
        "",
        "## Metrics (test slice, out of time)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| PR-AUC | {_f(m.get('test_pr_auc'))} |",
        f"| positive-rate baseline (PR-AUC of a random scorer) | {_f(m.get('test_positive_rate'))} |",
        f"| PR-AUC lift over baseline | {_f(lift, 2)}x |",
        f"| precision at tau_entry | {_f(m.get('test_precision_at_tau'))} |",
        f"| recall at tau_entry | {_f(m.get('test_recall_at_tau'))} |",
        f"| approved candidates | {int(m.get('test_approved', 0))} |",
        f"| ROC-AUC | {_f(m.get('test_roc_auc'))} |",
        f"| Brier score | {_f(m.get('test_brier'))} |",
        "",
        f"Validation: PR-AUC {_f(m.get('val_pr_auc'))} vs base rate {_f(m.get('val_positive_rate'))}, "
        f"precision at tau_entry {_f(m.get('val_precision_at_tau'))}.",
        "",
        "## Thresholds (precision first)",
        "",
        f"- `tau_entry` = {_f(th.get('tau_entry'), 6)}, `tau_hold` = {_f(th.get('tau_hold'), 6)}",
        "- tau_entry is the lowest score whose validation precision reaches the target (else the best precision",
        "  with at least 1% support); tau_hold keeps a resting order while precision beats the midpoint between",
        "  the base rate and the entry precision.",
        "",
        "## Artifact",
        "",
        f"- Feature schema hash: `{meta.get('schema_hash')}` ({len(meta.get('feature_names', []))} float32 "
        f"features: {', '.join(meta.get('feature_names', []))})",
        f"- `model.onnx` sha256: `{meta.get('sha256')}`",
        f"- Trees: {int(m.get('trees', 0))}; float32 thresholds rounded down at export: "
        f"{meta.get('float32_thresholds_fixed', '?')}",
        f"- ONNX parity vs native LightGBM: {'PASS' if par.get('ok') else 'FAIL'}, max |Δp| = "
        f"{par.get('max_abs_diff', float('nan')):.3g} over {par.get('rows')} rows "
        f"({par.get('threshold_rows')} at/above split thresholds), flips at tau_entry: {par.get('flips')}",
        "",
        "## Assumptions and limits",
        "",
        "- Fills are simulated from public L2 diffs, book tickers and trades; our own orders have no market impact.",
        "- The ladder is rebuilt without a snapshot and is partial until levels are touched; the touch comes",
        "  from bookTicker.",
        "- Labels are rare events; small test slices make PR-AUC noisy. Compare against the baseline, not 1.0.",
        f"- {meta.get('notes') or 'No further notes.'}",
        "",
    ]
    return "\n".join(lines)
