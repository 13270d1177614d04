"""Promotion with the live feature schema: the check ``scripts/promote_model.py`` and the release engine share."""

from __future__ import annotations

from pathlib import Path

from tidegate.features.schema import schema_hash
from tidegate.registry.store import ArtifactError, Registry, Slot


class PromotionRefused(ArtifactError):
    """The model may not take the slot; the message names the mismatch."""


def promote(root: str | Path, slot: Slot, model_id: str, *, reason: str = "") -> tuple[bool, str | None]:
    """Verify sha256 and schema hash against the live feature schema, then switch the slot atomically.

    Returns (changed, previous model id). On refusal the slot is untouched.
    """
    registry = Registry(root)
    if not registry.has(model_id):
        raise PromotionRefused(f"model {model_id!r} is not in the registry at {registry.root}")
    previous = registry.slot(slot)
    try:
        # verify even when the slot already points here: a file tampered in place must not keep a clean bill
        registry.verify(model_id, expected_schema_hash=schema_hash())
        changed = registry.set_slot(slot, model_id, reason=reason, expected_schema_hash=schema_hash())
    except ArtifactError as exc:
        raise PromotionRefused(str(exc)) from exc
    return changed, previous
