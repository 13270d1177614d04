"""Labels for candidate post-only entries at the touch: does it fill, and is the fill worth having?

For every sampled book state (one candidate per ``sample_ms`` per side), a buy is
placed at the best bid (a sell at the best ask) and reaches the venue after
``latency_ms``. It fills within ``fill_horizon_ms`` by the first of (the
queue-ahead rule of nautilus_trader / hftbacktest, see
design/notes/trading-ml-anchors.md):

1. the touch crossing it: best ask <= our bid price (sell: best bid >= our ask);
2. a trade printing through it: a seller-aggressor trade strictly below our price;
3. the queue ahead being consumed: seller-aggressor volume at exactly our price,
   counted from placement, exceeding the quantity that was resting there
   (our order joined the back of the queue).

An order whose price the opposite touch has already reached when it arrives
(after ``latency_ms``) is a post-only rejection, as in the paper simulator
(tidegate/execution/simulator/exchange.py): it never fills.

The label is 1 when it fills and its markout at ``markout_ms`` after the fill,
``side * (mid(t_fill + h) - price) / price * 1e4 - maker_fee_bps``, is > 0 (mid(t)
is the last mid at or before t). Candidates whose horizon runs past the end of
their session are dropped, never labelled from a different recording.

Everything is vectorised: "first event in a window with value <= x" is a
binary-lifting search over a sparse table of range minima, queue consumption a
searchsorted over per-price cumulative volumes. No per-row Python loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from tidegate.features.formulas import model_matrix
from tidegate.features.schema import FEATURE_NAMES, MARKET_FEATURES, PARAMS

NONE = np.iinfo(np.int64).max


@dataclass(frozen=True)
class LabelParams:
    fill_horizon_ms: int = 2_000
    markout_ms: int = 1_000
    latency_ms: int = 5
    maker_fee_bps: float = 0.2
    sample_ms: int = 100
    warmup_ms: int = 5_000

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _sparse_min(values: np.ndarray, levels: int) -> list[np.ndarray]:
    table = [values]
    for k in range(1, levels + 1):
        prev = table[-1]
        step = 1 << (k - 1)
        nxt = prev.copy()
        nxt[:-step] = np.minimum(prev[:-step], prev[step:])
        table.append(nxt)
    return table


def first_leq(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, thresh: np.ndarray) -> np.ndarray:
    """Per query, the first index in [lo, hi) with values[idx] <= thresh, else -1 (vectorised)."""
    n = len(values)
    out = np.full(len(lo), -1, np.int64)
    if n == 0 or len(lo) == 0:
        return out
    span = int(np.max(hi - lo)) if len(lo) else 0
    levels = max(span, 1).bit_length()
    table = _sparse_min(values, levels)
    pos = lo.copy()
    for k in range(levels, -1, -1):
        size = 1 << k
        can = pos + size <= hi
        idx = np.minimum(pos, n - 1)
        skip = can & (table[k][idx] > thresh)
        pos = pos + np.where(skip, size, 0)
    ok = (pos < hi) & (values[np.minimum(pos, n - 1)] <= thresh)
    out[ok] = pos[ok]
    return out


def label_session(cols: dict[str, np.ndarray], params: LabelParams) -> dict[str, np.ndarray]:
    """Candidates (both sides) of one session with their labels; ``cols`` sorted by local_ns."""
    t = cols["local_ns"]
    book = cols["book_update"].astype(bool)
    bid, ask = cols["bid_px"], cols["ask_px"]
    scale = PARAMS.price_scale
    ms = 1_000_000
    lat, horizon, mk = params.latency_ms * ms, params.fill_horizon_ms * ms, params.markout_ms * ms
    t_start, t_end = (int(t[0]), int(t[-1])) if len(t) else (0, 0)

    brow = np.flatnonzero(book & (bid > 0) & (ask > bid))
    bt = t[brow]
    bid_u = np.rint(bid[brow] * scale).astype(np.int64)
    ask_u = np.rint(ask[brow] * scale).astype(np.int64)
    mid2 = bid_u + ask_u

    # candidates: first valid book row of each sample bucket, after warm-up, with a complete future
    ok = (bt >= t_start + params.warmup_ms * ms) & (bt + lat + horizon + mk <= t_end)
    bucket = (bt - t_start) // (params.sample_ms * ms)
    cand_b = np.flatnonzero(ok)
    _, first = np.unique(bucket[cand_b], return_index=True)
    cand_b = cand_b[first]  # index into book rows
    rows = brow[cand_b]  # index into the timeline

    is_trd = cols["kind"] == 1
    trow = np.flatnonzero(is_trd)
    tt = t[trow]
    tpx = np.rint(cols["trade_px"][trow] * scale).astype(np.int64)
    tq = np.rint(cols["trade_qty"][trow] * PARAMS.qty_scale).astype(np.int64)
    tag = cols["trade_aggressor"][trow].astype(np.int64)

    out: dict[str, list[np.ndarray]] = {k: [] for k in ("row", "side", "filled", "fill_ns", "markout_bps", "label")}
    t0 = bt[cand_b] + lat
    t1 = t0 + horizon
    b_lo = np.searchsorted(bt, t0, side="right")
    b_hi = np.searchsorted(bt, t1, side="right")
    t_lo = np.searchsorted(tt, t0, side="right")
    t_hi = np.searchsorted(tt, t1, side="right")
    big = np.iinfo(np.int64).max // 4
    for side in (1, -1):
        price = bid_u[cand_b] if side > 0 else ask_u[cand_b]
        queue = np.rint((cols["bid_qty"] if side > 0 else cols["ask_qty"])[rows] * PARAMS.qty_scale).astype(np.int64)
        # 1. touch crosses our price
        opp = ask_u if side > 0 else -bid_u
        j = first_leq(opp, b_lo, b_hi, price if side > 0 else -price)
        fill_cross = np.where(j >= 0, bt[np.maximum(j, 0)], NONE)
        # 2. trade through our price by an aggressor on the other side
        through_vals = np.where(tag == -side, side * tpx, big)
        j = first_leq(through_vals, t_lo, t_hi, side * price - 1)
        fill_through = np.where(j >= 0, tt[np.maximum(j, 0)], NONE) if len(tt) else np.full(len(price), NONE)
        # 3. queue ahead consumed by other-side aggressor volume at exactly our price
        fill_queue = np.full(len(price), NONE)
        sel = np.flatnonzero(tag == -side)
        if len(sel):
            ntr = len(tt) + 1
            key = tpx[sel] * ntr + sel  # sorted by (price, arrival rank)
            order = np.argsort(key, kind="stable")
            key_s, rank_s, q_s = key[order], sel[order], tq[sel][order]
            cs = np.concatenate([[0], np.cumsum(q_s)])
            lo = np.searchsorted(key_s, price * ntr + t_lo, side="left")
            hi = np.searchsorted(key_s, price * ntr + t_hi, side="left")
            m = np.searchsorted(cs, cs[lo] + queue, side="right") - 1
            hit = (m < hi) & (hi > lo)
            fill_queue[hit] = tt[rank_s[np.minimum(m[hit], len(rank_s) - 1)]]
        fill_ns = np.minimum(np.minimum(fill_cross, fill_through), fill_queue)
        # post-only: an order whose price the opposite touch has reached by the time it arrives
        # would take liquidity, so the venue rejects it (never a fill)
        arrived = np.searchsorted(bt, t0, side="right") - 1
        rejected = (arrived >= 0) & (opp[np.maximum(arrived, 0)] <= (price if side > 0 else -price))
        filled = (fill_ns < NONE) & ~rejected
        k = np.searchsorted(bt, np.where(filled, fill_ns + mk, 0), side="right") - 1
        mid_after = mid2[np.maximum(k, 0)] / 2.0
        markout = np.where(filled, side * (mid_after - price) / price * 1e4 - params.maker_fee_bps, np.nan)
        out["row"].append(rows)
        out["side"].append(np.full(len(rows), side, np.int8))
        out["filled"].append(filled)
        out["fill_ns"].append(np.where(filled, fill_ns - t[rows], -1))
        out["markout_bps"].append(markout)
        out["label"].append((filled & (markout > 0)).astype(np.int8))
    return {k: np.concatenate(v) for k, v in out.items()}


LABEL_INPUTS = ("local_ns", "book_update", "bid_px", "ask_px", "bid_qty", "ask_qty", "kind", "trade_px", "trade_qty",
                "trade_aggressor", *MARKET_FEATURES)


@dataclass(frozen=True)
class SessionColumns:
    session: str
    regime: str
    symbol: str
    cols: dict[str, np.ndarray]  # LABEL_INPUTS of one session, sorted by local_ns


def session_columns(table: pa.Table) -> Iterator[SessionColumns]:
    """The sessions of a parquet-layout table; they are contiguous because read_parquet sorts by (session, local_ns)."""
    sessions = table.column("session").to_numpy(zero_copy_only=False)
    arrays = {n: table.column(n).to_numpy(zero_copy_only=False) for n in LABEL_INPUTS}
    regimes = table.column("regime").to_numpy(zero_copy_only=False)
    symbols = table.column("symbol").to_numpy(zero_copy_only=False)
    bounds = np.flatnonzero(sessions[1:] != sessions[:-1]) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(sessions)]])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        yield SessionColumns(str(sessions[s]), str(regimes[s]), str(symbols[s]), {n: a[s:e] for n, a in arrays.items()})


def label_table(table: pa.Table, params: LabelParams = LabelParams()) -> pa.Table:
    """The training table: model features (FEATURE_NAMES), side, labels and bookkeeping, time-ordered."""
    parts: list[pa.Table] = []
    for sc in session_columns(table):
        cols = sc.cols
        lab = label_session(cols, params)
        if len(lab["row"]) == 0:
            continue
        rows = lab["row"]
        market = {n: cols[n][rows] for n in MARKET_FEATURES}
        x = model_matrix(market, lab["side"])
        data: dict[str, object] = {name: x[:, j] for j, name in enumerate(FEATURE_NAMES)}
        data.update({"local_ns": cols["local_ns"][rows], "session": np.full(len(rows), sc.session, object),
                     "regime": np.full(len(rows), sc.regime, object), "symbol": np.full(len(rows), sc.symbol, object),
                     "filled": lab["filled"], "fill_ms": lab["fill_ns"] / 1e6, "markout_bps": lab["markout_bps"],
                     "label": lab["label"]})
        parts.append(pa.table(data))
    if not parts:
        raise ValueError("labelling produced no candidates: sessions too short for warm-up plus horizons")
    out = pa.concat_tables(parts).sort_by([("local_ns", "ascending"), ("side", "descending")])
    return out.replace_schema_metadata({b"tidegate.label_params": str(params.as_dict()).encode()})
