"""A ccxt bybit client pointed at the emulator by its URLs only.

Nothing else about the client changes: the same class (``ccxt.async_support.bybit``
or ``ccxt.pro.bybit``), the same signing, the same options the project uses
against Bybit (linear markets, ``defaultType`` swap). Only ``urls['api']`` is
replaced, REST and WebSocket, which is the one knob ccxt exposes for a venue's
address (it is how ccxt itself switches to testnet or demo trading).
"""

from __future__ import annotations

from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

REST_APIS = ("spot", "futures", "v2", "public", "private")


def emulator_urls(rest_url: str, ws_url: str) -> dict[str, Any]:
    """ccxt bybit's ``urls['api']`` with every REST and WebSocket entry on the emulator."""
    rest = rest_url.rstrip("/")
    ws = ws_url.rstrip("/")
    private = f"{ws}/v5/private"
    return {
        **{name: rest for name in REST_APIS},
        "ws": {
            "public": {kind: f"{ws}/v5/public/{kind}" for kind in ("spot", "inverse", "option", "linear")},
            "private": {"spot": {"unified": private, "nonUnified": private}, "contract": private,
                        "usdc": private, "trade": f"{ws}/v5/trade"},
        },
    }


def emulator_client(rest_url: str, ws_url: str, *, api_key: str, secret: str, pro: bool = True,
                    options: dict[str, Any] | None = None) -> ccxt_pro.bybit | ccxt_async.bybit:
    """A ccxt bybit (``ccxt.pro`` when ``pro``, else ``ccxt.async_support``) talking to the emulator.

    Options are the project's own (tidegate.execution.venue): linear markets only, swap by default.
    The caller closes it (``await client.close()``)."""
    cls = ccxt_pro.bybit if pro else ccxt_async.bybit
    config: dict[str, Any] = {"apiKey": api_key, "secret": secret,
                              "options": {"fetchMarkets": {"types": ["linear"]}, "defaultType": "swap",
                                          **(options or {})}}
    client = cls(config)
    client.urls["api"] = emulator_urls(rest_url, ws_url)
    return client
