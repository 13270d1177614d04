"""The registry on disk, with atomic writes and verification before anything serves.

Layout::

    models/registry/
      manifest.json          ordered history: models (benchmark metrics, windows, notes)
                             and slot switches (who pointed active/shadow where, and why)
      <model_id>/model.onnx
      <model_id>/model.json  ModelMetadata
      <model_id>/artifacts/  optional (native LightGBM model, reports)
      active -> <model_id>   relative symlinks, swapped atomically
      shadow -> <model_id>

A model whose ONNX bytes do not hash to ``model.json``'s sha256, or whose schema
hash differs from the live feature schema, is refused with an ArtifactError that
names the mismatch; the slot keeps pointing at the previous model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tidegate.atomic import atomic_symlink, atomic_write_json
from tidegate.registry.metadata import ModelMetadata

Slot = Literal["active", "shadow"]
SLOTS: tuple[Slot, ...] = ("active", "shadow")


class ArtifactError(ValueError):
    """A model artifact that must not serve; the message names the mismatch."""


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    created_at: str
    schema_hash: str
    thresholds: dict[str, float]
    path: str
    notes: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    evaluation_windows: dict[str, Any] = Field(default_factory=dict)
    regimes: list[str] = Field(default_factory=list)


class SlotChange(BaseModel):
    at: str
    slot: Slot
    from_id: str | None
    to_id: str | None
    reason: str = ""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")
    models: list[ManifestEntry] = Field(default_factory=list)
    slot_history: list[SlotChange] = Field(default_factory=list)
    releases: list[dict[str, Any]] = Field(default_factory=list)


COPIED_NOTE = "deployed by copying into the registry (recorded when first put in a slot)"


def _entry(meta: ModelMetadata, notes: str, evaluation_windows: dict[str, Any] | None) -> ManifestEntry:
    return ManifestEntry(id=meta.id, created_at=meta.created_at, schema_hash=meta.schema_hash,
                         thresholds=meta.thresholds.model_dump(), path=meta.id, notes=notes, metrics=meta.metrics,
                         evaluation_windows=evaluation_windows or dict(meta.training_window), regimes=meta.regimes)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> Manifest:
        if not self.manifest_path.exists():
            return Manifest()
        return Manifest.model_validate(json.loads(self.manifest_path.read_text()))

    def model_dir(self, model_id: str) -> Path:
        return self.root / model_id

    def has(self, model_id: str) -> bool:
        return (self.model_dir(model_id) / "model.json").is_file()

    def metadata(self, model_id: str) -> ModelMetadata:
        path = self.model_dir(model_id) / "model.json"
        if not path.is_file():
            raise ArtifactError(f"model {model_id!r} is not in the registry ({path} missing)")
        return ModelMetadata.model_validate(json.loads(path.read_text()))

    def slot(self, slot: Slot) -> str | None:
        link = self.root / slot
        if not link.is_symlink():
            return None
        return Path(link.readlink()).name

    def entry(self, model_id: str) -> ManifestEntry | None:
        return next((m for m in self.manifest().models if m.id == model_id), None)

    def previous(self, slot: Slot = "active") -> str | None:
        """The model the slot pointed at before its current one (the rollback target)."""
        current = self.slot(slot)
        for change in reversed(self.manifest().slot_history):
            if change.slot == slot and change.to_id == current and change.from_id != current:
                return change.from_id
        return None

    # -- verifying -------------------------------------------------------------------------
    def verify(self, model_id: str, *, expected_schema_hash: str | None = None) -> ModelMetadata:
        """Check ONNX bytes against model.json (and the live schema); raise ArtifactError."""
        meta = self.metadata(model_id)
        if meta.id != model_id:   # a directory copied by hand under another name
            raise ArtifactError(f"model {model_id!r}: {self.model_dir(model_id) / 'model.json'} is model {meta.id!r}; "
                                f"a model's directory is named by its id ({self.root / meta.id})")
        onnx_path = self.model_dir(model_id) / "model.onnx"
        if not onnx_path.is_file():
            raise ArtifactError(f"model {model_id!r}: model.onnx missing at {onnx_path}")
        actual = sha256_file(onnx_path)
        if actual != meta.sha256:
            raise ArtifactError(f"model {model_id!r}: sha256 mismatch: model.onnx hashes to {actual[:16]}..., "
                                f"model.json says {meta.sha256[:16]}...")
        if expected_schema_hash is not None and meta.schema_hash != expected_schema_hash:
            raise ArtifactError(f"model {model_id!r}: schema_hash mismatch: model has {meta.schema_hash[:16]}..., "
                                f"live feature schema is {expected_schema_hash[:16]}...")
        entry = self.entry(model_id)
        if entry is not None and entry.schema_hash != meta.schema_hash:
            raise ArtifactError(f"model {model_id!r}: schema_hash mismatch between manifest.json "
                                f"({entry.schema_hash[:16]}...) and model.json ({meta.schema_hash[:16]}...)")
        return meta

    # -- writing ---------------------------------------------------------------------------
    def _save(self, manifest: Manifest) -> None:
        atomic_write_json(self.manifest_path, manifest.model_dump(mode="json"))

    def register(self, source_dir: Path, *, notes: str = "", evaluation_windows: dict[str, Any] | None = None,
                 replace: bool = False) -> ManifestEntry:
        """Copy a trained model directory (model.onnx + model.json + extras) into the registry."""
        source_dir = Path(source_dir)
        meta = ModelMetadata.model_validate(json.loads((source_dir / "model.json").read_text()))
        if sha256_file(source_dir / "model.onnx") != meta.sha256:
            raise ArtifactError(f"model {meta.id!r}: sha256 of {source_dir / 'model.onnx'} does not match model.json")
        dest = self.model_dir(meta.id)
        if dest.exists() and not replace:
            raise ArtifactError(f"model {meta.id!r} is already registered at {dest}")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{meta.id}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source_dir, staging)
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
        entry = _entry(meta, notes or meta.notes, evaluation_windows)
        manifest = self.manifest()
        manifest.models = [m for m in manifest.models if m.id != meta.id] + [entry]
        self._save(manifest)
        return entry

    def set_slot(self, slot: Slot, model_id: str | None, *, reason: str = "",
                 expected_schema_hash: str | None = None) -> bool:
        """Point a slot at a verified model (None clears it). Returns False if nothing changed.

        Idempotent: repeating the same switch after a crash changes nothing and logs nothing.
        """
        if slot not in SLOTS:
            raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
        current = self.slot(slot)
        if current == model_id:
            return False
        link = self.root / slot
        manifest = self.manifest()
        if model_id is None:
            link.unlink(missing_ok=True)
        else:
            meta = self.verify(model_id, expected_schema_hash=expected_schema_hash)
            if not any(m.id == model_id for m in manifest.models):
                # the seed's "deploy by copying": a trained directory copied into the registry by
                # hand, verified above like a registered one, is recorded before it serves
                manifest.models.append(_entry(meta, meta.notes or COPIED_NOTE, None))
            atomic_symlink(model_id, link)
        manifest.slot_history.append(SlotChange(at=_now(), slot=slot, from_id=current, to_id=model_id,
                                                reason=reason))
        self._save(manifest)
        return True

    def append_release(self, record: dict[str, Any]) -> None:
        """Log a release (benchmark metrics, evaluation windows, regimes, notes) in manifest.json."""
        manifest = self.manifest()
        name = record.get("name")
        manifest.releases = [r for r in manifest.releases if r.get("name") != name or name is None] + [record]
        self._save(manifest)
