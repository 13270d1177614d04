"""The Binance capture reader on the real recordings (skipped when ../shared/data/capture is absent)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tidegate.market import CaptureError, feed_latency_ms, iter_events, list_captures, read_capture
from tidegate.market.events import BookTicker, DepthUpdate, Trade

CAPTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "capture"
USDM = CAPTURE / "binance_usdm_btcusdt_20240808.gz"
SPOT = CAPTURE / "binance_spot_btcusdt_20240808.gz"

needs_capture = pytest.mark.skipif(not USDM.is_file(), reason=f"real capture not present at {CAPTURE.resolve()}")


def _write_capture(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress("\n".join(lines).encode() + b"\n"))
    return path


def test_reader_parses_every_stream_of_a_hand_written_capture(tmp_path: Path) -> None:
    lines = [
        '100 {"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":5,"T":4,"s":"BTCUSDT","U":10,"u":12,'
        '"pu":9,"b":[["100.1","2.5"],["99.9","0"]],"a":[["100.2","1.25"]]}}',
        '200 {"stream":"btcusdt@bookTicker","data":{"u":13,"e":"bookTicker","s":"BTCUSDT","b":"100.1","B":"2.5",'
        '"a":"100.2","A":"1.25","T":6,"E":7}}',
        '300 {"stream":"btcusdt@trade","data":{"e":"trade","E":8,"s":"BTCUSDT","t":77,"p":"100.2","q":"0.5",'
        '"T":8,"m":true}}',
    ]
    frame = read_capture(_write_capture(tmp_path / "binance_usdm_btcusdt_20240808.gz", lines))
    events = list(iter_events(frame))
    assert [e.kind for e in events] == ["depth", "ticker", "trade"]
    d, k, t = events
    assert isinstance(d, DepthUpdate) and d.bids == ((100.1, 2.5), (99.9, 0.0)) and d.asks == ((100.2, 1.25),)
    assert (d.local_ns, d.exch_ns, d.first_id, d.last_id, d.prev_id) == (100, 5_000_000, 10, 12, 9)
    assert isinstance(k, BookTicker) and (k.bid_px, k.bid_qty, k.ask_px, k.ask_qty, k.update_id) == (
        100.1, 2.5, 100.2, 1.25, 13)
    # m=true: the buyer was the maker, so the seller crossed
    assert isinstance(t, Trade) and t.aggressor == -1 and (t.price, t.qty, t.trade_id) == (100.2, 0.5, 77)


def test_malformed_capture_is_refused_with_the_file_named(tmp_path: Path) -> None:
    bad = _write_capture(tmp_path / "bad.gz", ['1 {"stream":"x@trade","data":{"p":"1","q":"x","m":true,"T":1}}',
                                               '2 {"stream":"x@trade","data":{"p":"1","q":"1","m":tru'])
    with pytest.raises(CaptureError, match=r"bad\.gz"):
        read_capture(bad)
    (tmp_path / "plain.gz").write_bytes(b"not gzip")
    with pytest.raises(CaptureError, match=r"not a readable gzip"):
        read_capture(tmp_path / "plain.gz")
    with pytest.raises(CaptureError, match="does not exist"):
        list_captures(tmp_path / "missing")


@needs_capture
def test_usdm_capture_counts_and_order_match_the_raw_file() -> None:
    frame = read_capture(USDM)
    assert (len(frame.depth), len(frame.trades), len(frame.tickers)) == (6551, 21313, 66089)
    assert frame.symbol == "BTCUSDT"
    # spot-check the exploded levels of the 100th diff against json parsing of the raw line
    with gzip.open(USDM, "rt") as fh:
        raw = [line for line in fh if "@depth" in line][99]
    data = json.loads(raw.split(" ", 1)[1])["data"]
    ev = next(e for i, e in enumerate(e for e in iter_events(frame) if e.kind == "depth") if i == 99)
    assert ev.bids == tuple((float(p), float(q)) for p, q in data["b"])
    assert ev.asks == tuple((float(p), float(q)) for p, q in data["a"])
    # arrival order is receive-time order
    kinds_times = [e.local_ns for e in iter_events(frame)]
    assert kinds_times == sorted(kinds_times)


@needs_capture
def test_feed_latency_is_offset_corrected_to_milliseconds() -> None:
    lat = feed_latency_ms(read_capture(USDM))
    # README: median about 4 ms, p99 about 94 ms on the USD-M file (once the recorder's -1.27 s offset is removed)
    assert 1.0 < float(np.median(lat)) < 10.0
    assert 10.0 < float(np.quantile(lat, 0.99)) < 200.0


@needs_capture
def test_spot_ticker_has_no_exchange_time_and_is_marked_so() -> None:
    frame = read_capture(SPOT)
    assert (frame.tickers.exch_ns == -1).all()
    assert (frame.trades.exch_ns > 0).all()
