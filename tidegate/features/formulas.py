"""Market features from raw aggregates: one formula, written once for arrays and once for scalars.

Why two spellings of one formula: the batch path evaluates whole columns with
numpy, the online path one event at a time where numpy's per-call overhead
(~1 µs per op) would dominate. Both use only IEEE-754 operations that are
correctly rounded (+, -, *, /, sqrt, int->float), in the same order, on the same
inputs, so they agree bit for bit; tests/test_features.py checks it on real and
synthetic streams. The raw aggregates themselves are exact integers where they
are sums (volumes, squared mid moves), so neither path depends on summation order.

Raw aggregates (``RAW_FIELDS``), as of one event:
  bid_px, bid_qty, ask_px, ask_qty    touch (floats, venue units)
  bid_band, ask_band                  ladder qty of the 10 best levels per side
  buy_1s, sell_1s, buy_5s, sell_5s    aggressor volume in the window (int, qty units)
  n_1s                                trades in the last 1 s
  m2, m2_short, m2_mid, m2_long       2*mid now and at/before t-100ms, t-1s, t-5s (int price units; 0 = none)
  sq_mid, sq_long                     sum of squared 2*mid changes in the window (int)
  since_trade_ns                      time since the last trade (-1 = no trade yet)
  bid_qty_u, ask_qty_u                touch qty in integer qty units
"""

from __future__ import annotations

import math

import numpy as np

from tidegate.features.schema import FEATURE_NAMES, MARKET_FEATURES, ORIENTED, PARAMS

RAW_FIELDS: tuple[str, ...] = ("bid_px", "bid_qty", "ask_px", "ask_qty", "bid_band", "ask_band", "buy_1s",
                               "sell_1s", "buy_5s", "sell_5s", "n_1s", "m2", "m2_short", "m2_mid", "m2_long",
                               "sq_mid", "sq_long", "since_trade_ns", "bid_qty_u", "ask_qty_u")
NO_TRADE_MS = PARAMS.no_trade_ms
SPREAD_STEP = PARAMS.spread_step_bps
# LightGBM's dense predictor reads any |x| <= 1e-35 as 0 while ONNX Runtime does not; features never
# legitimately get that small (the smallest real magnitudes are ~1e-16), so both paths flush them to 0
# and the domain the parity check must cover stays {0} U {|x| >= FLUSH_BELOW}.
FLUSH_BELOW = np.float32(1e-30)


def flush_tiny(values: np.ndarray) -> np.ndarray:
    """float32 values with |v| < FLUSH_BELOW set to exactly 0 (in place and returned)."""
    values[np.abs(values) < FLUSH_BELOW] = 0.0
    return values


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b), 0 where both are 0."""
    den = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (a - b) / np.where(den > 0, den, 1.0), 0.0)


def _ret(m2: np.ndarray, then: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(then > 0, (m2 - then) / np.where(then > 0, then, 1.0) * 1e4, 0.0)


def market_features_batch(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns of market features (float32) from columns of raw aggregates."""
    bid, ask = raw["bid_px"], raw["ask_px"]
    bq, aq = raw["bid_qty"], raw["ask_qty"]
    valid = (bid > 0) & (ask > bid)
    mid = (bid + ask) * 0.5
    safe_mid = np.where(valid, mid, 1.0)
    qsum = bq + aq
    safe_q = np.where(qsum > 0, qsum, 1.0)
    micro = (bid * aq + ask * bq) / safe_q
    m2 = raw["m2"].astype(np.float64)
    safe_m2 = np.where(m2 > 0, m2, 1.0)
    vol5 = (raw["buy_5s"] + raw["sell_5s"]).astype(np.float64)
    bqu = raw["bid_qty_u"].astype(np.float64)
    aqu = raw["ask_qty_u"].astype(np.float64)
    since = raw["since_trade_ns"]
    out = {
        "spread_bps": np.where(valid, np.floor((ask - bid) / safe_mid * 1e4 / SPREAD_STEP + 0.5) * SPREAD_STEP, 0.0),
        "imbalance_l1": _ratio(bq, aq),
        "microprice_offset_bps": np.where(valid & (qsum > 0), (micro - mid) / safe_mid * 1e4, 0.0),
        "depth_imbalance_l10": _ratio(raw["bid_band"], raw["ask_band"]),
        "trade_flow_imb_1s": _ratio(raw["buy_1s"].astype(np.float64), raw["sell_1s"].astype(np.float64)),
        "trade_flow_imb_5s": _ratio(raw["buy_5s"].astype(np.float64), raw["sell_5s"].astype(np.float64)),
        "trade_count_1s": raw["n_1s"].astype(np.float64),
        "ret_100ms_bps": _ret(m2, raw["m2_short"].astype(np.float64)),
        "ret_1s_bps": _ret(m2, raw["m2_mid"].astype(np.float64)),
        "ret_5s_bps": _ret(m2, raw["m2_long"].astype(np.float64)),
        "vol_1s_bps": np.where(m2 > 0, np.sqrt(raw["sq_mid"].astype(np.float64)) / safe_m2 * 1e4, 0.0),
        "vol_5s_bps": np.where(m2 > 0, np.sqrt(raw["sq_long"].astype(np.float64)) / safe_m2 * 1e4, 0.0),
        "bid_queue_share": np.where(bqu + vol5 > 0, bqu / np.where(bqu + vol5 > 0, bqu + vol5, 1.0), 0.0),
        "ask_queue_share": np.where(aqu + vol5 > 0, aqu / np.where(aqu + vol5 > 0, aqu + vol5, 1.0), 0.0),
        "time_since_trade_ms": np.where(since >= 0, np.minimum(since / 1e6, NO_TRADE_MS), NO_TRADE_MS),
    }
    return {name: flush_tiny(out[name].astype(np.float32)) for name in MARKET_FEATURES}


def _r(a: float, b: float) -> float:
    den = a + b
    return (a - b) / den if den > 0 else 0.0


def market_features_row(r: dict[str, float | int]) -> list[float]:
    """The same features for one event (Python floats, rounded to float32 by the caller)."""
    bid, ask, bq, aq = float(r["bid_px"]), float(r["ask_px"]), float(r["bid_qty"]), float(r["ask_qty"])
    valid = bid > 0 and ask > bid
    mid = (bid + ask) * 0.5
    qsum = bq + aq
    m2 = float(r["m2"])
    vol5 = float(int(r["buy_5s"]) + int(r["sell_5s"]))
    bqu, aqu = float(r["bid_qty_u"]), float(r["ask_qty_u"])
    since = int(r["since_trade_ns"])

    def ret(then_raw: float | int) -> float:
        then = float(then_raw)
        return (m2 - then) / then * 1e4 if then > 0 else 0.0

    micro = (bid * aq + ask * bq) / qsum if qsum > 0 else 0.0
    return [
        math.floor((ask - bid) / mid * 1e4 / SPREAD_STEP + 0.5) * SPREAD_STEP if valid else 0.0,
        _r(bq, aq),
        (micro - mid) / mid * 1e4 if valid and qsum > 0 else 0.0,
        _r(float(r["bid_band"]), float(r["ask_band"])),
        _r(float(r["buy_1s"]), float(r["sell_1s"])),
        _r(float(r["buy_5s"]), float(r["sell_5s"])),
        float(r["n_1s"]),
        ret(r["m2_short"]),
        ret(r["m2_mid"]),
        ret(r["m2_long"]),
        math.sqrt(float(r["sq_mid"])) / m2 * 1e4 if m2 > 0 else 0.0,
        math.sqrt(float(r["sq_long"])) / m2 * 1e4 if m2 > 0 else 0.0,
        bqu / (bqu + vol5) if bqu + vol5 > 0 else 0.0,
        aqu / (aqu + vol5) if aqu + vol5 > 0 else 0.0,
        min(since / 1e6, NO_TRADE_MS) if since >= 0 else NO_TRADE_MS,
    ]


_MF_INDEX = {name: i for i, name in enumerate(MARKET_FEATURES)}


def model_matrix(market: dict[str, np.ndarray] | np.ndarray, side: np.ndarray | int) -> np.ndarray:
    """The model input (n, len(FEATURE_NAMES)) float32 for candidates on ``side`` (+1 buy, -1 sell).

    ``market`` is either a dict of market-feature columns or an (n, len(MARKET_FEATURES)) float32 array.
    Orientation multiplies float32 values by +-1, which is exact, so the batch and
    online vectors stay identical.
    """
    if isinstance(market, dict):
        cols = [np.asarray(market[name], np.float32) for name in MARKET_FEATURES]
        n = len(cols[0])
    else:
        arr = np.asarray(market, np.float32).reshape(-1, len(MARKET_FEATURES))
        cols = [arr[:, i] for i in range(arr.shape[1])]
        n = arr.shape[0]
    s = np.broadcast_to(np.asarray(side, np.float32), (n,))
    buy = s > 0
    out = np.empty((n, len(FEATURE_NAMES)), np.float32)
    for j, name in enumerate(FEATURE_NAMES):
        if name == "side":
            out[:, j] = s
        elif name == "queue_same_share":
            out[:, j] = np.where(buy, cols[_MF_INDEX["bid_queue_share"]], cols[_MF_INDEX["ask_queue_share"]])
        elif name == "queue_opp_share":
            out[:, j] = np.where(buy, cols[_MF_INDEX["ask_queue_share"]], cols[_MF_INDEX["bid_queue_share"]])
        elif name in ORIENTED:
            out[:, j] = cols[_MF_INDEX[name]] * s
        else:
            out[:, j] = cols[_MF_INDEX[name]]
    return out
