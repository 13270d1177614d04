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

from tidegate.venue.account import BybitAccount
from tidegate.venue.client import emulator_client, emulator_urls
from tidegate.venue.instruments import Instrument, load_instruments
from tidegate.venue.server import BybitEmulator

__all__ = ["BybitAccount", "BybitEmulator", "Instrument", "emulator_client", "emulator_urls", "load_instruments"]
