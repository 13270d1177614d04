"""``tidegate venue emulate``: serve the Bybit v5 emulator on loopback until interrupted.

API keys come from the environment only (``BYBIT_API_KEY``/``BYBIT_API_SECRET``,
the same variables the executor reads), never from the command line, where any
process could read them. The market is replayed from a capture file or the
synthetic generator, or fed over HTTP (``POST /_emulator/book`` and ``/trade``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

import click

from tidegate.execution.venue import MARKETS_FILE


def _fees(markets_file: Path = MARKETS_FILE) -> tuple[float, float]:
    """Maker and taker rates of the parsed markets file (the rates the paper engine charges)."""
    markets = json.loads(Path(markets_file).read_text())
    return float(markets[0]["maker"]), float(markets[0]["taker"])


@click.group()
def venue() -> None:
    """The emulated trading venue (Bybit v5, linear perpetuals)."""


@venue.command("emulate")
@click.option("--port", type=int, default=0, show_default=True, help="TCP port (0: a free one, printed)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (loopback by default)")
@click.option("--balance", type=float, default=10_000.0, show_default=True, help="starting USDT wallet balance")
@click.option("--leverage", type=float, default=10.0, show_default=True, help="leverage of every position")
@click.option("--queue-model", type=click.Choice(["risk_averse", "prob", "optimistic"]), default="risk_averse",
              show_default=True, help="the paper engine's queue model (as executor.simulator.queue_model)")
@click.option("--replay", "replay", default=None,
              help="market to replay: a capture file, or 'synthetic[:REGIME]'; none: fed over HTTP")
@click.option("--symbol", default="BTCUSDT", show_default=True, help="instrument the replayed market drives")
@click.option("--speed", type=float, default=1.0, show_default=True, help="replay speed (0: as fast as possible)")
def emulate(port: int, host: str, balance: float, leverage: float, queue_model: str, replay: str | None,
            symbol: str, speed: float) -> None:
    """Serve Bybit v5 REST and WebSocket on HOST:PORT; point ccxt at it with tidegate.venue.emulator_client."""
    import os

    from tidegate.venue import BybitAccount, BybitEmulator, load_instruments

    key, secret = os.environ.get("BYBIT_API_KEY", ""), os.environ.get("BYBIT_API_SECRET", "")
    if not key or not secret:
        click.echo("error: set BYBIT_API_KEY and BYBIT_API_SECRET: the emulator accepts only that key", err=True)
        sys.exit(2)
    instruments = load_instruments()
    if symbol not in instruments:
        click.echo(f"error: --symbol {symbol} is not one of {sorted(instruments)}", err=True)
        sys.exit(2)
    maker, taker = _fees()
    account = BybitAccount(instruments, balance=balance, leverage=leverage, maker_fee=maker, taker_fee=taker,
                           queue_model=queue_model)
    emulator = BybitEmulator(account, keys={key: secret})

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await emulator.start(host, port)
        click.echo(f"bybit v5 emulator on {emulator.rest_url} (ws {emulator.ws_url})", err=True)
        task = None
        if replay:
            frame = _market(replay, symbol)
            task = asyncio.create_task(emulator.replay(frame, symbol=symbol, speed=speed, stop=stop))
        await stop.wait()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await emulator.stop()

    asyncio.run(serve())


def _market(spec: str, symbol: str):  # type: ignore[no-untyped-def]
    if spec.startswith("synthetic"):
        from tidegate.market.synthetic import generate

        regime = spec.split(":", 1)[1] if ":" in spec else "normal"
        return generate(symbol=symbol, regime=regime, duration_s=600.0)
    from tidegate.market.capture import read_capture

    return read_capture(spec)
