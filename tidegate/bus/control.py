"""Control events on ``control.events``: versioned, validated at the edge.

MODE_SWITCH is written by the release engine (the one writer of rollout state)
on every mode change; CRIT trips the executor's fail-safe (all routing to paper
for the configured cooldown). CRITs come from the Alertmanager bridge (a firing
``severity: critical`` alert, tidegate.alerts.bridge) or from an operator
(``tidegate control crit``); both publish through :func:`publish_control`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, Field

from tidegate.bus.connection import ensure_streams
from tidegate.bus.subjects import Subjects

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
    # Free text for people (an alert's summary, an operator's words). ``reason`` stays short and
    # low-cardinality because the executor uses it as the ``fail_safe_switch_total{reason}`` label.
    detail: str = ""
    # A MODE_SWITCH's ``mode_switch_total{reason}`` label (a release's "advance", "promote", a
    # rollback's gate): a supervisor that mirrors the engines' counters reads it from here.
    label: str = ""

    def to_bytes(self) -> bytes:
        # Empty ``detail`` and ``label`` are left out, so an event without them keeps the exact bytes
        # older readers (extra="forbid") accept.
        exclude = {f for f in ("detail", "label") if not getattr(self, f)} or None
        return self.model_dump_json(by_alias=True, exclude=exclude).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ControlEvent:
        return cls.model_validate_json(data)


async def publish_control(js: JetStreamContext, event: ControlEvent, subjects: Subjects | None = None, *,
                          timeout: float = 2.0) -> tuple[bool, int]:
    """Store ``event`` on the namespace's control subject; (new, stream sequence).

    Waits for the stream's ack (the caller reports success only once the event is stored) and sends
    ``event_id`` as ``Nats-Msg-Id``, so a repeat inside the stream's duplicate window is dropped:
    ``new`` is False then. The CONTROL stream is declared first when nothing captures the subject
    (a bridge or a CLI may be the first client of a fresh server).
    """
    if not event.event_id:
        raise ValueError("a published control event needs an event_id (its idempotency key)")
    subjects = subjects or Subjects()
    try:
        await js.find_stream_name_by_subject(subjects.control)
    except NotFoundError:
        await ensure_streams(js, subjects)  # the same stream settings every service declares
    headers: dict[str, Any] = {"Nats-Msg-Id": event.event_id}
    ack = await js.publish(subjects.control, event.to_bytes(), timeout=timeout, headers=headers)
    return not bool(ack.duplicate), int(ack.seq)
