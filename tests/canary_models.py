"""Real trained models shared by the canary-pipeline and release-checklist tests, trained once per process.

- ``baseline``: ``train_end_to_end`` defaults (the active model / benchmark);
- ``good``: the same recipe on 1.5x more synthetic market (6 cycles x 200 s per regime);
- ``bad``: ``degrade=True`` (shuffled labels, 5 trees);
- ``approve_all``: the good model's ONNX with thresholds that approve every entry.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from tidegate.pipeline import train_end_to_end

_ROOT = Path(tempfile.mkdtemp(prefix="tidegate-test-models-"))
atexit.register(shutil.rmtree, _ROOT, True)

RECIPES: dict[str, dict[str, object]] = {
    "baseline": {},
    "good": {"seconds": 200.0, "cycles": 6},
    "bad": {"degrade": True},
}


@functools.cache
def trained(kind: str) -> Path:
    """The model directory (model.onnx, model.json, lgbm_meta.json, artifacts/) of a recipe; id ``<kind>-1``."""
    if kind == "approve_all":
        out = _ROOT / kind
        shutil.copytree(trained("good"), out)
        meta = json.loads((out / "model.json").read_text())
        meta.update(id="approve-all-1", thresholds={"tau_entry": 0.0, "tau_hold": 0.0},
                    notes="the good model's ONNX with thresholds that approve everything")
        (out / "model.json").write_text(json.dumps(meta))
        return out
    return train_end_to_end(_ROOT / kind, model_id=f"{kind}-1", **RECIPES[kind])  # type: ignore[arg-type]


@functools.cache
def trained_on_capture(capture_dir: Path, pattern: str, *, degrade: bool = False) -> Path:
    """A model trained on the capture files matching ``pattern`` (symlinked into a private directory)."""
    name = f"capture-{'bad' if degrade else 'good'}"
    src = _ROOT / f"{name}-files"
    src.mkdir(exist_ok=True)
    for p in sorted(Path(capture_dir).resolve().glob(pattern)):
        (src / p.name).symlink_to(p)
    return train_end_to_end(_ROOT / name, capture_dir=src, model_id=f"{name}-1", degrade=degrade)
