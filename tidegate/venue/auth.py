"""Request authentication and the per-key rate limit, as Bybit v5 applies them.

REST (v5 "Integration guidance"): the client sends ``X-BAPI-API-KEY``,
``X-BAPI-TIMESTAMP``, ``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN``, where the
signature is hex HMAC-SHA256 over ``timestamp + apiKey + recvWindow + payload``;
the payload is the raw query string of a GET and the raw JSON body of a POST. The
server checks the bytes exactly as received (re-encoding the query would accept
signatures Bybit refuses). The timestamp must satisfy
``server - recvWindow <= timestamp < server + 1000``.

WebSocket ``auth`` op: ``args = [apiKey, expires, signature]`` with the signature
over ``"GET/realtime" + expires`` and ``expires`` in the future.

Rate limit (v5 rate-limit page): a rolling one-second window per UID and
endpoint; every private response carries ``X-Bapi-Limit`` (the limit),
``X-Bapi-Limit-Status`` (remaining) and ``X-Bapi-Limit-Reset-Timestamp`` (when
the window frees a slot if exceeded, else now); past the limit the answer is
``retCode 10006 "Too many visits!"``. Refused requests do not use a slot.

No secret is ever logged or included in a message; refusal messages name only
what the client itself sent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from tidegate.venue import codes
from tidegate.venue.codes import VenueRejected

# Bybit's published per-UID limits (req/s) for the endpoints served; unknown paths get DEFAULT_LIMIT.
DEFAULT_LIMITS: dict[str, int] = {
    "/v5/order/create": 10, "/v5/order/amend": 10, "/v5/order/cancel": 10,
    "/v5/order/realtime": 50, "/v5/order/history": 50, "/v5/execution/list": 50,
    "/v5/position/list": 50, "/v5/account/wallet-balance": 50,
}
DEFAULT_LIMIT = 50


def sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def check_rest(headers: Mapping[str, str], payload: str, keys: Mapping[str, str], now_ms: int) -> str:
    """The API key of a correctly signed, timely request; else ``VenueRejected`` with Bybit's code."""
    key = headers.get("X-BAPI-API-KEY", "")
    secret = keys.get(key)
    if not key or secret is None:
        raise VenueRejected(codes.INVALID_KEY, "API key is invalid.")
    ts_text = headers.get("X-BAPI-TIMESTAMP", "")
    window_text = headers.get("X-BAPI-RECV-WINDOW", "5000")
    try:
        ts, window = int(ts_text), int(window_text)
    except ValueError:
        raise VenueRejected(codes.PARAMS, "empty value: apiTimestamp[] apiKey[] apiSignature[]") from None
    if not (now_ms - window <= ts < now_ms + 1000):
        raise VenueRejected(codes.TIMESTAMP, f"invalid request, please check your server timestamp or recv_window "
                                             f"param. req_timestamp[{ts}],server_timestamp[{now_ms}],"
                                             f"recv_window[{window}]")
    origin = ts_text + key + window_text + payload
    if not hmac.compare_digest(sign(secret, origin), headers.get("X-BAPI-SIGN", "")):
        raise VenueRejected(codes.INVALID_SIGN, f"error sign! origin_string[{origin}]")
    return key


def check_ws(args: object, keys: Mapping[str, str], now_ms: int) -> str:
    """The API key of a valid ``auth`` op; ``ValueError`` with the venue's ``ret_msg`` otherwise."""
    if not isinstance(args, list) or len(args) != 3:
        raise ValueError("Params Error")
    key, expires, signature = (str(a) for a in args)
    secret = keys.get(key)
    if secret is None:
        raise ValueError("Invalid apikey")
    try:
        if int(expires) <= now_ms:
            raise ValueError("Params Error")
    except ValueError:
        raise ValueError("Params Error") from None
    if not hmac.compare_digest(sign(secret, "GET/realtime" + expires), signature):
        raise ValueError("Request not authorized")
    return key


@dataclass
class RateLimiter:
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    _hits: dict[tuple[str, str], deque[int]] = field(default_factory=dict)

    def limit(self, path: str) -> int:
        return self.limits.get(path, DEFAULT_LIMIT)

    def take(self, key: str, path: str, now_ms: int) -> tuple[bool, dict[str, str]]:
        """Use one slot if one is free: (allowed, the X-Bapi-Limit-* headers to send)."""
        limit = self.limit(path)
        hits = self._hits.setdefault((key, path), deque())
        while hits and hits[0] <= now_ms - 1000:
            hits.popleft()
        allowed = len(hits) < limit
        if allowed:
            hits.append(now_ms)
        reset = now_ms if allowed else hits[0] + 1000
        return allowed, {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(max(0, limit - len(hits))),
                         "X-Bapi-Limit-Reset-Timestamp": str(reset)}
