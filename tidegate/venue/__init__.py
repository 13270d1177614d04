"""A faithful Bybit v5 emulator for linear perpetuals, served on loopback to real ccxt clients.

BRIEF §5 allows one fake of the venue: a simulator of its *API*, with tests of its
own, that the project's unchanged ccxt code talks to over real HTTP and WebSocket.

- ``codes``: the retCodes and rejectReasons used, with their sources;
- ``instruments``: Bybit's own instruments-info rows, exact-decimal validation;
- ``records``: order / position / execution records and their v5 JSON shapes;
- ``account``: the account (rules, margin, position, wallet) around the paper engine;
- ``auth``: HMAC signatures (REST and WebSocket) and the per-key rate limit;
- ``queries``: the read endpoints' filters and limits;
- ``server``: the aiohttp app (``BybitEmulator``), market feed and private stream;
- ``client``: a ccxt bybit pointed at the emulator by its URLs only.

Start it with ``tidegate venue emulate --port N``; see docs/venue-emulator.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported lazily (PEP 562): the server pulls in aiohttp and ccxt, which ``tidegate --help``
# (it registers ``tidegate venue``) would otherwise pay for on every start.
_EXPORTS = {"BybitAccount": "account", "emulator_client": "client", "emulator_urls": "client",
            "Instrument": "instruments", "load_instruments": "instruments", "BybitEmulator": "server"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tidegate.venue.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tidegate.venue' has no attribute {name!r}")
