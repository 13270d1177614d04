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


def effective_state(stored: RolloutState | None, *, config_mode: Mode | None, canary_fraction: float,
                    rng_seed: int) -> RolloutState:
    """What the services route and score by: the engine's stored state under config/app.yml's ``rollout`` block.

    - Config mode unset: the stored state, or paper only while nothing is stored.
    - Nothing stored (no release has written a state): the config's mode, fraction and
      seed, the seed's static setup ("update config/app.yml ... ~10% of approved signals
      hash to route=canary"); the candidate is then the registry's shadow slot.
    - Config mode ``disabled``: paper-only routing whatever is stored. It is the
      operator's halt (runbook), and a running release cannot undo it; the models
      named in the stored state keep scoring so the paper route keeps its evidence.
    - Config mode ``full``: every signal on the stored *active* model, route ``full``,
      whatever the stored mode (the seed: "Re-enable full routing by setting
      rollout.mode=full", after a halt or a rollback left the stored state disabled).
      It never routes to a candidate, so it is as safe as the halt; a release under way
      then sees no canary trades and waits (or rolls back) on an insufficient sample.
    - Config mode ``canary`` (the shipped default): the stored state, as the release
      engine wrote it; the config's fraction applies only while nothing is stored.
    """
    if config_mode is None:
        return stored if stored is not None else RolloutState()
    if stored is None:
        return RolloutState(mode=config_mode, canary_fraction=canary_fraction if config_mode == "canary" else 0.0,
                            rng_seed=rng_seed, reason="config/app.yml rollout (no release state stored)")
    if config_mode == "disabled" and stored.mode != "disabled":
        return stored.model_copy(update={"mode": "disabled", "canary_fraction": 0.0,
                                         "reason": f"config/app.yml rollout.mode=disabled overrides "
                                                   f"{stored.mode!r} ({stored.reason})"})
    if config_mode == "full" and stored.mode != "full":
        return stored.model_copy(update={"mode": "full", "canary_fraction": 0.0,
                                         "reason": f"config/app.yml rollout.mode=full overrides "
                                                   f"{stored.mode!r} ({stored.reason})"})
    return stored

