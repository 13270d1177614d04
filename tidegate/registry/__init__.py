"""Model registry: ``models/registry/<model_id>/`` + ``manifest.json`` + ``active``/``shadow`` slots."""

from tidegate.registry.metadata import ModelMetadata, Thresholds
from tidegate.registry.store import ArtifactError, ManifestEntry, Registry

__all__ = ["ArtifactError", "ManifestEntry", "ModelMetadata", "Registry", "Thresholds"]
