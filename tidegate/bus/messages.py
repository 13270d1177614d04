"""Versioned message schemas for every subject on the bus.

Each message carries ``v`` (its schema version) and is validated at the edge:
a consumer parses bytes with ``decode`` and a message that does not validate
is a *malformed message*: counted in ``bad_message_total{service,subject}`` and
dropped (see tidegate.bus.consumer). The core never sees unvalidated data.

Schemas are deliberately flat and numeric (floats, ints, short strings): they
are parsed on the hot path, once per tick or candidate. Timestamps are integer
nanoseconds in *exchange time* (``ts_ns``) unless the field says otherwise
(``recv_ns`` is the local receive time of the market-data message); the whole
pipeline runs in exchange time so that a replay at any speed makes the same
decisions and the same markouts.

Bumping a schema: add a new ``v`` literal and accept both while producers
migrate; a consumer never guesses at an unknown version.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tidegate.market.events import BookTicker, DepthUpdate, Trade

Side = Literal["buy", "sell"]
Route = Literal["paper", "canary", "full"]
Level = tuple[float, float]  # (price, quantity)
Probability = Annotated[float, Field(ge=0, le=1)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class BookMsg(Message):
    """Book after one depth update: top levels plus the level changes that produced it.

    ``bid_changes``/``ask_changes`` are the raw diffs (quantity 0 deletes a level): the
    paper simulator needs them to clear a queue when its level disappears. A
    ``ticker`` message carries the touch as its changes (first/last id = update id).
    ``to_event`` rebuilds the market event so that the signal engine's online
    features see exactly what the training pipeline saw.
    """

    v: Literal[1] = 1
    symbol: str = Field(min_length=1)
    kind: Literal["depth", "ticker"] = "depth"
    ts_ns: int = Field(ge=0)
    recv_ns: int = Field(ge=0)
    seq: int = Field(ge=0)
    first_id: int = -1  # venue update ids, passed through so consumers can rebuild the exact event
    last_id: int = -1
    prev_id: int = -1
    bids: list[Level]
    asks: list[Level]
    bid_changes: list[Level] = Field(default_factory=list)
    ask_changes: list[Level] = Field(default_factory=list)

    def to_event(self) -> DepthUpdate | BookTicker:
        if self.kind == "ticker":
            (bp, bq), (ap, aq) = self.bid_changes[0], self.ask_changes[0]
            return BookTicker(self.recv_ns, self.ts_ns, self.symbol, self.last_id, bp, bq, ap, aq)
        return DepthUpdate(self.recv_ns, self.ts_ns, self.symbol, self.first_id, self.last_id, self.prev_id,
                           tuple(map(tuple, self.bid_changes)), tuple(map(tuple, self.ask_changes)))  # type: ignore[arg-type]

    @property
    def mid(self) -> float | None:
        if not self.bids or not self.asks:
            return None
        return (self.bids[0][0] + self.asks[0][0]) / 2.0


class TradeMsg(Message):
    """A public trade. ``aggressor`` is the taker's side (Binance ``m=true`` → seller)."""

    v: Literal[1] = 1
    symbol: str = Field(min_length=1)
    ts_ns: int = Field(ge=0)
    recv_ns: int = Field(ge=0)
    price: float = Field(gt=0)
    qty: float = Field(gt=0)
    aggressor: Side
    trade_id: int = -1

    def to_event(self) -> Trade:
        return Trade(self.recv_ns, self.ts_ns, self.symbol, self.trade_id, self.price, self.qty,
                     1 if self.aggressor == "buy" else -1)


class CandidateMsg(Message):
    """A candidate signal with the feature vector the scorer needs, in schema order."""

    v: Literal[1] = 1
    signal_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    side: Side
    ts_ns: int = Field(ge=0)
    recv_ns: int = Field(ge=0)
    emitted_ns: int = Field(ge=0, description="wall clock (time.time_ns) when published, for latency")
    price: float = Field(gt=0, description="mid price when the signal fired")
    schema_hash: str
    features: list[float]


class ApprovedMsg(Message):
    """A candidate a model approved, with the route the routing hash assigned."""

    v: Literal[1] = 1
    signal_id: str = Field(min_length=1)
    symbol: str
    side: Side
    ts_ns: int = Field(ge=0)
    recv_ns: int = Field(ge=0)
    emitted_ns: int = Field(ge=0)
    scored_ns: int = Field(ge=0, description="wall clock when scored")
    price: float = Field(gt=0)
    route: Route
    model_id: str
    score: float = Field(ge=0, le=1)
    tau_entry: float = Field(ge=0, le=1)
    bucket: int = Field(ge=0, lt=10000)


class HoldMark(Message):
    """A live model's newest score for one side of one symbol, with the hold threshold in force."""

    model_id: str = Field(min_length=1)
    side: Side
    ts_ns: int = Field(ge=0, description="exchange time of the newest candidate of this side in the batch")
    score: Probability
    tau_hold: Probability


class HoldMsg(Message):
    """The live models' view of each side after one scored batch (core ``sig.hold.<symbol>``).

    ``tau_hold`` is the hysteresis of an entry: a signal enters at ``tau_entry`` and its
    resting entry and open position are kept while the model still scores that side at or
    above ``tau_hold``. The scorer sees every candidate, approved or not, so it publishes
    each live model's newest score per side (one record per batch and symbol); the
    executor cancels an entry, or exits a position at the touch, whose model has since
    scored its side below ``tau_hold``. Core NATS, like market data: a lost mark only
    leaves an order to its TTL, and a stale mark is worthless.
    """

    v: Literal[1] = 1
    symbol: str = Field(min_length=1)
    marks: list[HoldMark] = Field(min_length=1)


class ShadowMsg(Message):
    """What the shadow model decided about one candidate: recorded, never executed.

    The v1 ``sig.shadow`` record, one per candidate. The ai_scorer now publishes
    ``ShadowBatchMsg`` (v2); readers go through ``shadow_decisions``, which yields
    these per-candidate records from either version.
    """

    v: Literal[1] = 1
    signal_id: str
    symbol: str
    ts_ns: int = Field(ge=0)
    model_id: str
    score: float = Field(ge=0, le=1)
    approved: bool
    live_model_id: str
    live_score: float = Field(ge=0, le=1)


class ShadowBatchMsg(Message):
    """The shadow model's decisions about one scored batch of candidates of one symbol (v2 ``sig.shadow``).

    Columns aligned by index: ``signal_ids[i]`` was scored ``scores[i]`` by ``model_id``
    (``approved[i]``: at or above ``tau_entry``) and ``live_scores[i]`` by the live model.
    One record per batch costs one JetStream publish instead of one per candidate, which
    is what shadow scoring at full candidate rate needs. After a scorer crash a candidate
    may appear in two records (at-least-once, like every stream): key readers by signal id.
    """

    v: Literal[2] = 2
    symbol: str = Field(min_length=1)
    model_id: str
    live_model_id: str
    tau_entry: Probability
    signal_ids: list[str] = Field(min_length=1)
    ts_ns: list[Annotated[int, Field(ge=0)]]
    scores: list[Probability]
    approved: list[bool]
    live_scores: list[Probability]

    @model_validator(mode="after")
    def _aligned(self) -> ShadowBatchMsg:
        n = len(self.signal_ids)
        for name in ("ts_ns", "scores", "approved", "live_scores"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, signal_ids has {n}")
        return self

    def decisions(self) -> list[ShadowMsg]:
        return [ShadowMsg(signal_id=sid, symbol=self.symbol, ts_ns=ts, model_id=self.model_id, score=score,
                          approved=ok, live_model_id=self.live_model_id, live_score=live)
                for sid, ts, score, ok, live in zip(self.signal_ids, self.ts_ns, self.scores, self.approved,
                                                    self.live_scores, strict=True)]


OrderStatus = Literal["new", "accepted", "rejected", "cancelled", "filled"]


class OrderMsg(Message):
    """One order lifecycle event from the executor (JetStream; de-duplicated by id)."""

    v: Literal[1] = 1
    client_order_id: str = Field(min_length=1)
    signal_id: str
    symbol: str
    route: Route
    venue: Literal["paper", "real"]
    side: Side
    price: float = Field(gt=0)
    qty: float = Field(gt=0)
    status: OrderStatus
    reason: str = ""
    reduce_only: bool = False
    post_only: bool = True
    rung: int = Field(0, ge=0)
    bucket: str = ""
    model_id: str = ""
    score: float = Field(0.0, ge=0, le=1)
    ts_ns: int = Field(ge=0)


class FillMsg(Message):
    """A (partial) fill. ``fee`` is quote currency, computed as qty × price × rate."""

    v: Literal[1] = 1
    fill_id: str = Field(min_length=1)
    client_order_id: str
    signal_id: str
    symbol: str
    route: Route
    venue: Literal["paper", "real"]
    side: Side
    price: float = Field(gt=0)
    qty: float = Field(gt=0)
    fee: float
    fee_rate: float
    liquidity: Literal["maker", "taker"]
    reduce_only: bool = False
    model_id: str = ""
    score: float = Field(0.0, ge=0, le=1)
    ts_ns: int = Field(ge=0)


M = TypeVar("M", bound=Message)


class MalformedMessage(ValueError):
    """Bytes that do not parse as the subject's schema; the text says why (first error only)."""


def first_error(exc: ValidationError, root: str) -> str:
    """``field.path: problem`` of a validation error's first failure (``root`` when it is the whole input)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or root
    return f"{where}: {err['msg']}"


def decode(schema: type[M], data: bytes) -> M:
    """Parse one message or raise MalformedMessage naming the field that failed."""
    try:
        return schema.model_validate_json(data)
    except ValidationError as exc:
        raise MalformedMessage(f"{schema.__name__}.{first_error(exc, '<message>')}") from None


def shadow_decisions(data: bytes) -> list[ShadowMsg]:
    """The per-candidate decisions in one ``sig.shadow`` record of either version (v1 or v2)."""
    try:
        version = json.loads(data).get("v") if data.lstrip().startswith(b"{") else None
    except ValueError:
        version = None
    if version == 2:
        return decode(ShadowBatchMsg, data).decisions()
    return [decode(ShadowMsg, data)]
