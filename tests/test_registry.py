"""Registering trained models and promoting them: sha256 and schema-hash mismatches are refused by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tidegate.pipeline import train_end_to_end
from tidegate.registry import Registry
from tidegate.registry.promote import PromotionRefused, promote

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("reg")
    reg = Registry(base / "registry")
    for mid, degrade in (("m-good", False), ("m-bad", True)):
        reg.register(train_end_to_end(base / mid, seconds=60, cycles=2, model_id=mid, degrade=degrade))
    return reg.root


def _promote(root: Path, slot: str, mid: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "promote_model.py"), "--to", slot, "--id", mid,
                           "--registry", str(root), "--registry-only"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_manifest_records_both_models_with_benchmarks(registry: Path) -> None:
    manifest = json.loads((registry / "manifest.json").read_text())
    ids = [m["id"] for m in manifest["models"]]
    assert ids == ["m-good", "m-bad"]
    good = manifest["models"][0]
    assert {"tau_entry", "tau_hold"} <= set(good["thresholds"]) and good["metrics"]["test_pr_auc"] > 0
    assert good["path"] == "m-good" and good["regimes"]


def test_promote_script_moves_slots_and_records_history(registry: Path) -> None:
    r = _promote(registry, "active", "m-good")
    assert r.returncode == 0, r.stderr
    r = _promote(registry, "shadow", "m-bad")
    assert r.returncode == 0, r.stderr
    reg = Registry(registry)
    assert reg.slot("active") == "m-good" and reg.slot("shadow") == "m-bad"
    assert _promote(registry, "active", "m-good").stdout.strip().endswith("nothing changed")


def test_tampered_onnx_is_refused_and_the_slot_keeps_its_model(registry: Path) -> None:
    _promote(registry, "active", "m-good")
    onnx_path = registry / "m-bad" / "model.onnx"
    original = onnx_path.read_bytes()
    try:
        onnx_path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        r = _promote(registry, "active", "m-bad")
        assert r.returncode == 1 and "sha256 mismatch" in r.stderr
        assert Registry(registry).slot("active") == "m-good"
    finally:
        onnx_path.write_bytes(original)


def test_schema_hash_mismatch_is_refused_by_name(registry: Path) -> None:
    meta_path = registry / "m-bad" / "model.json"
    original = meta_path.read_text()
    try:
        meta = json.loads(original)
        meta["schema_hash"] = "0" * 64
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(PromotionRefused, match="schema_hash mismatch"):
            promote(registry, "active", "m-bad")
        r = _promote(registry, "shadow", "m-bad")
        assert r.returncode == 1 and "schema_hash mismatch" in r.stderr
    finally:
        meta_path.write_text(original)


def test_unknown_model_is_refused(registry: Path) -> None:
    r = _promote(registry, "active", "nope")
    assert r.returncode == 1 and "not in the registry" in r.stderr


def test_deploy_by_copying_a_trained_directory_then_promoting_and_loading_it(registry: Path, tmp_path: Path) -> None:
    """The seed's "deploy by copying the ONNX and metadata into models/": a train.py output directory
    copied into the registry by hand is verified like a registered one, recorded in manifest.json when
    it first takes a slot, and is what a restarted scorer loads. A copy under another name is refused."""
    import shutil

    from tidegate.features.schema import schema_hash
    from tidegate.registry.store import COPIED_NOTE
    from tidegate.services.scorer_models import load_model

    registry = Path(shutil.copytree(registry, tmp_path / "registry", symlinks=True))   # the module's stays as is
    latest = train_end_to_end(tmp_path / "latest", seconds=60, cycles=2, model_id="m-copied")
    _promote(registry, "active", "m-good")
    shutil.copytree(latest, registry / "copied-by-hand")
    r = _promote(registry, "active", "copied-by-hand")
    assert r.returncode == 1 and "is model 'm-copied'" in r.stderr, r.stderr
    assert Registry(registry).slot("active") == "m-good"
    shutil.copytree(latest, registry / "m-copied")
    assert Registry(registry).entry("m-copied") is None
    r = _promote(registry, "active", "m-copied")
    assert r.returncode == 0, r.stderr
    reg = Registry(registry)
    meta = json.loads((latest / "model.json").read_text())
    entry = reg.entry("m-copied")
    assert reg.slot("active") == "m-copied" and entry is not None
    assert (entry.schema_hash, entry.path, entry.thresholds["tau_entry"]) == (
        meta["schema_hash"], "m-copied", meta["thresholds"]["tau_entry"])
    assert entry.notes == (meta.get("notes") or COPIED_NOTE)
    assert reg.manifest().slot_history[-1].to_id == "m-copied"
    served = load_model(reg, reg.slot("active"), schema_hash())   # what ai_scorer loads at its restart
    assert served.meta.id == "m-copied"
