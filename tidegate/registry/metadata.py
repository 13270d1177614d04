"""``model.json``: everything a service or a release needs to trust an ONNX file.

The schema hash ties the model to the feature module that produced its inputs;
the sha256 ties the metadata to the exact ONNX bytes. Both are checked before a
model may serve (see Registry.verify).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tau_entry: float = Field(ge=0, le=1, description="approve an entry when p >= tau_entry")
    tau_hold: float = Field(ge=0, le=1, description="keep a resting order while p >= tau_hold")


class FeatureBins(BaseModel):
    """Reference histogram of one feature on the training window, for PSI/KS drift."""

    model_config = ConfigDict(extra="forbid")
    edges: list[float]
    fractions: list[float]


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    created_at: str
    schema_hash: str
    feature_names: list[str]
    feature_dtypes: list[str] = Field(default_factory=list)
    thresholds: Thresholds
    metrics: dict[str, float] = Field(default_factory=dict)
    training_window: dict[str, str] = Field(default_factory=dict)
    regimes: list[str] = Field(default_factory=list)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of model.onnx")
    reference_bins: dict[str, FeatureBins] = Field(default_factory=dict)
    native_model: str | None = Field(None, description="file name of the native LightGBM model, for parity")
    notes: str = ""
