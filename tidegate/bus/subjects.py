"""Subject and stream names: the wiring diagram of BRIEF §2 in one place.

Core NATS subjects carry market data (lossy by design: a stale tick is worthless);
JetStream streams carry what must not be lost: candidates (so the signal engine
can measure the scorer's backlog, the seed's ``sig:candidates``), orders, fills
and control events. The rollout state lives in a KV bucket (config: nats.kv_bucket).
"""

from __future__ import annotations

# core subjects (market data)
MD_BOOK = "md.book.{symbol}"        # top-of-book + depth levels after each diff
MD_TRADE = "md.trade.{symbol}"      # public trades

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


def subject(template: str, symbol: str) -> str:
    return template.format(symbol=symbol)
