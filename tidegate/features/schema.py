"""The feature schema: names, order, dtypes and parameters, and the hash that pins them.

A model is only valid for the exact vector it was trained on. The schema hash
covers every feature name in model-input order, its dtype, and the parameters
that change a feature's meaning (windows, depth levels, integer scales), so a
parquet sidecar, a model.json and the live scorer can prove they agree by
comparing one string. Change anything here and the hash changes; the registry
then refuses older models for the new schema and vice versa.

Two layers:
- *market features* (``MARKET_FEATURES``): properties of the market at an
  event, stored per event in parquet (no side);
- *model features* (``FEATURE_NAMES``): the vector for one candidate order,
  ``side`` first, directional features multiplied by the side so that "positive"
  always means "in the candidate's favour", queue sizes taken for the
  candidate's own and the opposite side.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

FEATURE_DTYPE = np.float32
PRICE_SCALE = 10_000  # prices become integers in units of 1e-4 quote currency (exact sums of squared moves)
QTY_SCALE = 100_000_000  # quantities become integers in units of 1e-8 (exact windowed volume sums)
NO_TRADE_MS = 10_000.0  # time_since_trade_ms is capped here (and used before the first trade)


@dataclass(frozen=True)
class FeatureParams:
    short_ms: int = 100
    mid_ms: int = 1_000
    long_ms: int = 5_000
    depth_levels: int = 10
    price_scale: int = PRICE_SCALE
    qty_scale: int = QTY_SCALE
    no_trade_ms: float = NO_TRADE_MS
    # The spread is rounded to this grid. A one-tick spread in bps is tick / price, i.e. a
    # proxy for the price level: unrounded, it drifts with the price and the PSI gate
    # would read every new price range as feature drift.
    spread_step_bps: float = 0.05


PARAMS = FeatureParams()

MARKET_FEATURES: tuple[str, ...] = (
    "spread_bps",  # (ask - bid) / mid, bps
    "imbalance_l1",  # (bid_qty - ask_qty) / (bid_qty + ask_qty) at the touch
    "microprice_offset_bps",  # size-weighted microprice minus mid, bps
    "depth_imbalance_l10",  # same imbalance over the 10 best ladder levels per side
    "trade_flow_imb_1s",  # (buy - sell aggressor volume) / total, last 1 s
    "trade_flow_imb_5s",  # same, last 5 s
    "trade_count_1s",  # trades in the last 1 s
    "ret_100ms_bps",  # mid return since 100 ms ago, bps
    "ret_1s_bps",
    "ret_5s_bps",
    "vol_1s_bps",  # realised volatility of the mid over 1 s, bps
    "vol_5s_bps",
    "bid_queue_share",  # bid touch qty / (bid touch qty + 5 s traded volume)
    "ask_queue_share",
    "time_since_trade_ms",  # capped at no_trade_ms
)

FEATURE_NAMES: tuple[str, ...] = (
    "side",  # +1 buy at the bid, -1 sell at the ask
    "spread_bps",
    "imbalance_l1",
    "microprice_offset_bps",
    "depth_imbalance_l10",
    "trade_flow_imb_1s",
    "trade_flow_imb_5s",
    "trade_count_1s",
    "ret_100ms_bps",
    "ret_1s_bps",
    "ret_5s_bps",
    "vol_1s_bps",
    "vol_5s_bps",
    "queue_same_share",  # the candidate's own side's queue share
    "queue_opp_share",
    "time_since_trade_ms",
)

# model features that are a market feature multiplied by the side
ORIENTED: frozenset[str] = frozenset({"imbalance_l1", "microprice_offset_bps", "depth_imbalance_l10",
                                      "trade_flow_imb_1s", "trade_flow_imb_5s", "ret_100ms_bps", "ret_1s_bps",
                                      "ret_5s_bps"})

FEATURE_DTYPES: tuple[str, ...] = tuple(np.dtype(FEATURE_DTYPE).name for _ in FEATURE_NAMES)


@dataclass(frozen=True)
class FeatureSchema:
    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    params: FeatureParams
    version: int = 1

    def as_dict(self) -> dict[str, object]:
        return {"version": self.version, "names": list(self.names), "dtypes": list(self.dtypes),
                "params": asdict(self.params)}

    @property
    def hash(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def sidecar(self) -> dict[str, object]:
        """The JSON written beside parquet archives and into model metadata."""
        return {**self.as_dict(), "schema_hash": self.hash, "market_features": list(MARKET_FEATURES)}


SCHEMA = FeatureSchema(FEATURE_NAMES, FEATURE_DTYPES, PARAMS)


def schema_hash() -> str:
    """The live feature schema hash (what a model's ``schema_hash`` must equal to serve)."""
    return SCHEMA.hash
