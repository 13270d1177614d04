"""Bybit v5 return codes the emulator answers with, and where each one was taken from.

A fake venue is only useful if it fails the way the real one does: the client's
error handling (ccxt maps ``retCode`` to an exception class, the executor maps the
exception to a decision) is exercised by these exact numbers. Every code here is
one Bybit itself returns for the situation; the source is named beside it so that
a reviewer can check it, and docs/venue-emulator.md repeats the table.

Sources: [err] the v5 error-code page (bybit-exchange.github.io/docs/v5/error);
[rl] the v5 rate-limit page (…/docs/v5/rate-limit); [ccxt] the comment beside the
code in ccxt's own ``bybit.exceptions`` table, which quotes a real response;
[seen] a real response quoted by several public client test suites.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = 0
PARAMS = 10001             # [err] "Request parameter error" (qty/price precision, missing fields)
TIMESTAMP = 10002          # [err] "The request time exceeds the time window range."
INVALID_KEY = 10003        # [err] "API key is invalid."
INVALID_SIGN = 10004       # [err] "Error sign, please check your signature generation algorithm."
RATE_LIMIT = 10006         # [rl] "Too many visits!" (with X-Bapi-Limit-* headers)
ROUTE_NOT_FOUND = 10017    # [err] "Route not found."
ORDER_NOT_FOUND = 110001   # [ccxt] "Order does not exist"
PRICE_RANGE = 110003       # [ccxt] "Order price is out of permissible range"
INSUFFICIENT = 110007      # [ccxt] {"retCode":110007,"retMsg":"ab not enough for new order"}
MODIFY_BELOW_FILLED = 110064  # [ccxt] "The number of contracts modified cannot be less than or equal to
#                                       the filled quantity"
REDUCE_ONLY = 110017       # [seen] "current position is zero, cannot fix reduce-only order qty"
DUPLICATE_LINK_ID = 110072  # [seen] {"retCode":110072,"retMsg":"OrderLinkedID is duplicate"}
MIN_NOTIONAL = 110094      # [ccxt] "Order notional value below the lower limit"

# Not a retCode: a PostOnly order that would take liquidity is *accepted* (retCode 0) and then
# ends ``Cancelled`` with this ``rejectReason`` on the order stream and in the order history
# (the v5 enum page lists it; a public production log shows a linear PostOnly acknowledged and
# then cancelled with it).
POST_ONLY_WOULD_TAKE = "EC_PostOnlyWillTakeLiquidity"
NO_ERROR = "EC_NoError"


@dataclass(frozen=True)
class VenueRejected(Exception):
    """A request the venue refuses: the retCode and retMsg Bybit answers with."""

    code: int
    msg: str

    def __str__(self) -> str:
        return f"{self.code} {self.msg}"
