"""Train the demo's baseline and candidate from one labelled table, and register them.

Both models learn from the same capture (or synthetic days), so the release compares
two honest models; the ``winrate`` and ``parity`` injections derive a faulty
candidate from the same data instead of faking a metric.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tidegate.market.capture import list_captures, read_capture
from tidegate.market.synthetic import generate
from tidegate.pipeline.dump import dump, read_parquet
from tidegate.pipeline.labeling import LabelParams, label_table
from tidegate.pipeline.train import TrainParams, train_model
from tidegate.registry import Registry
from tidegate.registry.metadata import ModelMetadata

SYNTHETIC_REGIME = "high-vol"
SYNTHETIC_SECONDS = 600.0


def training_table(capture_dir: Path | None, work: Path, *, market: str | None = None,
                   synthetic_seconds: float = SYNTHETIC_SECONDS) -> tuple[pa.Table, str]:
    """Labelled entries from the recordings of ``market`` (file-name prefix), else synthetic days.

    Training on the market the collector replays matters: a model trained on spot and
    coin-margined books sees queue sizes in other units, and the drift gate (rightly)
    rejects it on the USD-M replay.
    """
    files = list_captures(capture_dir) if capture_dir is not None and Path(capture_dir).is_dir() else []
    if market is not None:
        files = [f for f in files if Path(f).name.startswith(market)]
    # Without the capture, train on the synthetic regime the collector will replay ("event":
    # the calm "normal" regime has no winning maker entries to learn from), so the live market
    # is the training market and only the drift injection changes it.
    frames = [read_capture(p) for p in files] if files else [
        generate(regime=SYNTHETIC_REGIME, duration_s=synthetic_seconds)]   # the collector's own stream
    source = f"capture ({len(files)} recordings)" if files else f"synthetic {SYNTHETIC_REGIME}-regime days " \
        "(capture absent)"
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        dump(Path(tmp) / "parquet", frames)
        return label_table(read_parquet(Path(tmp) / "parquet"), LabelParams()), source


def invert_labels(table: pa.Table) -> pa.Table:
    """The classic sign bug: a model taught that losers are winners."""
    i = table.column_names.index("label")
    flipped = pc.subtract(pa.scalar(1, type=table.column("label").type), table.column("label"))
    return table.set_column(i, "label", flipped)


def swap_reference_model(model_dir: Path, other_dir: Path) -> None:
    """Replace a model's native LightGBM reference with another model's (the parity fault)."""
    meta = ModelMetadata.model_validate_json((model_dir / "model.json").read_text())
    other = ModelMetadata.model_validate_json((other_dir / "model.json").read_text())
    if not meta.native_model or not other.native_model:
        raise RuntimeError("both models need a native LightGBM artifact for the parity injection")
    for sub in ("", "artifacts"):
        target = model_dir / sub / meta.native_model
        if target.is_file():
            shutil.copyfile(other_dir / sub / other.native_model, target)
            return
    raise FileNotFoundError(f"native model {meta.native_model} not found under {model_dir}")


def train_pair(table: pa.Table, out: Path, *, tag: str, inject: str | None) -> tuple[Path, Path]:
    base = train_model(table, out / f"base-{tag}", model_id=f"base-{tag}", notes="demo baseline (active)")
    if inject == "winrate":
        cand = train_model(invert_labels(table), out / f"cand-{tag}", model_id=f"cand-{tag}",
                           notes="demo candidate trained on INVERTED labels (win-rate fault injection)")
    else:
        # A retrain with another seed: statistically the baseline's equal, which is what a
        # healthy release looks like (a bigger model overfits 6k labelled rows and trades worse).
        cand = train_model(table, out / f"cand-{tag}", model_id=f"cand-{tag}", params=TrainParams(seed=11),
                           notes="demo candidate (retrained with a new seed)")
    return base, cand


def register_pair(registry: Registry, base: Path, cand: Path) -> tuple[str, str]:
    base_entry = registry.register(base, replace=True)
    cand_entry = registry.register(cand, replace=True)
    registry.set_slot("active", base_entry.id, reason="demo: baseline is the serving model")
    return base_entry.id, cand_entry.id
