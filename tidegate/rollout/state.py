"""The rollout state: what every service needs to know to route and score a signal.

One small document, written only by the release engine (through either driver)
and read by the ai_scorer and the executor through a NATS KV watch. It is a single
KV value rather than one key per field so that a reader can never observe a
half-applied switch (say ``mode=full`` with the old ``active_model_id``).

``revision`` is the engine's own monotone counter (not the KV revision): a reader
that sees a lower revision than the one it holds ignores it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["disabled", "canary", "full"]
MODES: tuple[Mode, ...] = ("disabled", "canary", "full")


class RolloutState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = Field("disabled", description="disabled: paper only; canary: fraction to the candidate; full: all")
    canary_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of signals routed to the candidate")
    rng_seed: int = Field(1337, ge=0, description="salt of the deterministic routing hash")
    active_model_id: str | None = Field(None, description="the stable model (decides paper/full routes)")
    candidate_model_id: str | None = Field(None, description="the model under release (shadow/canary)")
    tau_entry: float | None = Field(None, ge=0, le=1, description="entry threshold in force (None: from model.json)")
    tau_hold: float | None = Field(None, ge=0, le=1, description="hold threshold in force (None: from model.json)")
    release: str | None = Field(None, description="name of the ModelRelease that wrote this state")
    revision: int = Field(0, ge=0, description="engine's monotone write counter")
    reason: str = Field("", description="why the last change was made")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RolloutState:
        return cls.model_validate_json(data)

    def same_routing(self, other: RolloutState) -> bool:
        """True when two states route and score identically (revision and reason aside)."""
        skip = {"revision", "reason"}
        return self.model_dump(exclude=skip) == other.model_dump(exclude=skip)
