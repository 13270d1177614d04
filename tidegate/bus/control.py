"""Control events on ``control.events``: versioned, validated at the edge.

MODE_SWITCH is written by the release engine (the one writer of rollout state)
on every mode change; CRIT is raised by supervision and trips the executor's
fail-safe (all routing to paper for the configured cooldown).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CONTROL_SCHEMA_VERSION = 1


class ControlEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    v: Literal[1] = CONTROL_SCHEMA_VERSION
    kind: Literal["MODE_SWITCH", "CRIT", "INFO"]
    severity: Literal["INFO", "WARN", "CRIT"] = "INFO"
    from_mode: str | None = Field(None, alias="from")
    to_mode: str | None = Field(None, alias="to")
    reason: str = ""
    release: str | None = None
    at: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))
    # Idempotency key: the same effect replayed after a crash carries the same id and is
    # de-duplicated by JetStream (Nats-Msg-Id header).
    event_id: str = ""

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ControlEvent:
        return cls.model_validate_json(data)
