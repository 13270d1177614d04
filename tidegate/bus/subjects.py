"""Subject and stream names: the wiring diagram of BRIEF §2 in one place.

Core NATS subjects carry market data (lossy by design: a stale tick is worthless);
JetStream streams carry what must not be lost: candidates (so the signal engine
can measure the scorer's backlog, the seed's ``sig:candidates``), orders, fills
and control events. The rollout state lives in a KV bucket (config: nats.kv_bucket).

``Subjects(namespace)`` prefixes every subject and stream name, so that several
environments (or test cases) can share one NATS server without seeing each
other's messages; the empty namespace gives exactly the names below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# core subjects (market data, and the scorer's hold marks: lossy by design too)
MD_BOOK = "md.book.{symbol}"        # top-of-book + depth levels after each diff
MD_TRADE = "md.trade.{symbol}"      # public trades
SIG_HOLD = "sig.hold.{symbol}"      # ai_scorer -> executor: live models' newest score per side (tau_hold)

# JetStream subjects
SIG_CANDIDATES = "sig.candidates.{symbol}"  # signal_engine -> ai_scorer
SIG_APPROVED = "sig.approved.{symbol}"      # ai_scorer -> executor (route decided)
SIG_SHADOW = "sig.shadow.{symbol}"          # shadow decisions, recorded never executed
ORDERS = "orders.{symbol}"                  # executor order events (new/ack/reject/cancel)
FILLS = "fills.{symbol}"                    # executor fills
CONTROL = "control.events"                  # MODE_SWITCH, CRIT, ...

# stream name -> subjects it captures
STREAMS: dict[str, list[str]] = {
    "SIGNALS": ["sig.candidates.>", "sig.approved.>", "sig.shadow.>"],
    "ORDERS": ["orders.>"],
    "FILLS": ["fills.>"],
    "CONTROL": ["control.>"],
}

_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]*$")


def subject(template: str, symbol: str) -> str:
    return template.format(symbol=symbol)


@dataclass(frozen=True)
class Subjects:
    """All subject and stream names of one namespace ("" = the production names above)."""

    namespace: str = ""

    def __post_init__(self) -> None:
        if not _NAMESPACE.match(self.namespace):
            raise ValueError(f"nats.namespace must match [A-Za-z0-9_-]*, got {self.namespace!r}")

    def _s(self, name: str) -> str:
        return f"{self.namespace}.{name}" if self.namespace else name

    def stream(self, name: str) -> str:
        return f"{self.namespace}_{name}" if self.namespace else name

    def streams(self) -> dict[str, list[str]]:
        return {self.stream(n): [self._s(s) for s in subs] for n, subs in STREAMS.items()}

    def book(self, symbol: str) -> str:
        return self._s(MD_BOOK.format(symbol=symbol))

    def trade(self, symbol: str) -> str:
        return self._s(MD_TRADE.format(symbol=symbol))

    def hold(self, symbol: str = "*") -> str:
        return self._s(SIG_HOLD.format(symbol=symbol))

    def candidates(self, symbol: str = "*") -> str:
        return self._s(SIG_CANDIDATES.format(symbol=symbol))

    def approved(self, symbol: str = "*") -> str:
        return self._s(SIG_APPROVED.format(symbol=symbol))

    def shadow(self, symbol: str = "*") -> str:
        return self._s(SIG_SHADOW.format(symbol=symbol))

    def orders(self, symbol: str = "*") -> str:
        return self._s(ORDERS.format(symbol=symbol))

    def fills(self, symbol: str = "*") -> str:
        return self._s(FILLS.format(symbol=symbol))

    @property
    def control(self) -> str:
        return self._s(CONTROL)
