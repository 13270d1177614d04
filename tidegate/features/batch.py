"""Vectorised features for a whole MarketFrame: one row per event, in arrival order.

The only sequential part is the ladder: diffs are applied in order with the same
``BookState`` the online path uses (a few thousand messages per capture). Every
other aggregate is a cumulative sum or a ``searchsorted`` over event times, so a
row's value equals what ``OnlineFeatures`` holds after the same event:

- windowed trade volume: cumsum of integer volumes, differenced at
  (t - W, t] boundaries; the online deque evicts exactly the same trades;
- mid history: accepted tickers only (a ticker whose update id is not newer than
  the previous one is ignored by both paths), mid at or before t - W;
- touch and top-level depth: forward-filled from the last accepted ticker / diff.
"""

from __future__ import annotations

import numpy as np

from tidegate.features.formulas import RAW_FIELDS, market_features_batch
from tidegate.features.schema import PARAMS, FeatureParams
from tidegate.market.book import BookState
from tidegate.market.frame import KIND_DEPTH, KIND_TICKER, KIND_TRADE, MarketFrame


def _ffill_index(mask: np.ndarray) -> np.ndarray:
    """For each row, the index of the last row <= it where mask is true (-1 if none)."""
    idx = np.where(mask, np.arange(len(mask)), -1)
    return np.maximum.accumulate(idx) if len(idx) else idx


def _window_sum(cs: np.ndarray, times: np.ndarray, upto: np.ndarray, t: np.ndarray, window_ns: int) -> np.ndarray:
    """Sum of items with time in (t - W, t] among the first ``upto`` items (cs = cumsum with leading 0)."""
    lo = np.searchsorted(times, t - window_ns, side="right")
    lo = np.minimum(lo, upto)
    return cs[upto] - cs[lo]


def timeline_columns(frame: MarketFrame, params: FeatureParams = PARAMS) -> dict[str, np.ndarray]:
    """Per-event columns: times, kind, touch, trade fields, raw aggregates and market features."""
    kinds, index = frame.timeline_order()
    n = len(kinds)
    d, tr, tk = frame.depth, frame.trades, frame.tickers
    is_dep, is_trd, is_tck = kinds == KIND_DEPTH, kinds == KIND_TRADE, kinds == KIND_TICKER
    t = np.empty(n, np.int64)
    exch = np.empty(n, np.int64)
    for mask, cols in ((is_dep, d), (is_trd, tr), (is_tck, tk)):
        t[mask] = cols.local_ns[index[mask]]
        exch[mask] = cols.exch_ns[index[mask]]

    # tickers in arrival order; accept only strictly newer update ids
    tk_idx = index[is_tck]
    uid = tk.update_id[tk_idx]
    prev_max = np.concatenate([[-1], np.maximum.accumulate(uid)[:-1]]) if len(uid) else uid
    accepted_tk = uid > prev_max
    acc_row = np.zeros(n, bool)
    acc_row[np.flatnonzero(is_tck)[accepted_tk]] = True
    acc_pos = np.cumsum(acc_row)  # number of accepted tickers among rows <= i
    acc_src = tk_idx[accepted_tk]  # ticker-column index of each accepted ticker

    # sequential ladder over diffs, touch taken from the last accepted ticker before each diff
    dep_rows = np.flatnonzero(is_dep)
    n_dep = len(dep_rows)
    band_bid = np.zeros(n_dep)
    band_ask = np.zeros(n_dep)
    top_dep = np.zeros((n_dep, 4))
    state = BookState()
    sides = d.level_side.tolist()
    pxs = d.level_px.tolist()
    qtys = d.level_qty.tolist()
    offs = d.offsets.tolist()
    applied = 0
    for j, row in enumerate(dep_rows.tolist()):
        k = int(acc_pos[row])
        if k != applied:
            src = acc_src[k - 1]
            state.set_top(float(tk.bid_px[src]), float(tk.bid_qty[src]), float(tk.ask_px[src]),
                          float(tk.ask_qty[src]), int(tk.update_id[src]))
            applied = k
        m = int(index[row])
        lo, hi = offs[m], offs[m + 1]
        state.apply_depth(sides[lo:hi], pxs[lo:hi], qtys[lo:hi], int(d.first_id[m]), int(d.last_id[m]),
                          int(d.prev_id[m]))
        band_bid[j], band_ask[j] = state.bid_band_qty, state.ask_band_qty
        top_dep[j] = state.touch()

    # touch per row: last accepted ticker if any, else the ladder's own best as of the last diff
    last_tk = acc_pos - 1
    dep_pos = np.cumsum(is_dep) - 1  # index into dep arrays of the last diff at or before the row
    have_tk = last_tk >= 0
    have_dep = dep_pos >= 0
    src = acc_src[np.maximum(last_tk, 0)] if len(acc_src) else np.zeros(n, np.int64)
    dsafe = np.maximum(dep_pos, 0)
    top = np.zeros((n, 4))
    if n_dep:
        top[have_dep] = top_dep[dsafe[have_dep]]
    if len(acc_src):
        top[have_tk] = np.stack([tk.bid_px[src], tk.bid_qty[src], tk.ask_px[src], tk.ask_qty[src]], 1)[have_tk]
    bid_px, bid_qty, ask_px, ask_qty = top[:, 0], top[:, 1], top[:, 2], top[:, 3]
    bband = np.where(have_dep, band_bid[dsafe] if n_dep else 0.0, 0.0)
    aband = np.where(have_dep, band_ask[dsafe] if n_dep else 0.0, 0.0)

    scale, qscale = params.price_scale, params.qty_scale
    m2 = np.where((bid_px > 0) & (ask_px > 0),
                  np.rint(bid_px * scale).astype(np.int64) + np.rint(ask_px * scale).astype(np.int64), 0)

    # mid history over accepted tickers
    acc_t = t[acc_row]
    acc_m2 = np.rint(tk.bid_px[acc_src] * scale).astype(np.int64) + np.rint(tk.ask_px[acc_src] * scale).astype(
        np.int64)
    dm = np.diff(acc_m2, prepend=acc_m2[:1]) if len(acc_m2) else acc_m2
    sq_cs = np.concatenate([[0], np.cumsum(dm * dm)])

    def mid_at(window_ms: int) -> np.ndarray:
        j = np.searchsorted(acc_t, t - window_ms * 1_000_000, side="right") - 1
        j = np.minimum(j, acc_pos - 1)
        return np.where(j >= 0, acc_m2[np.maximum(j, 0)] if len(acc_m2) else 0, 0)

    # trades in arrival order
    trd_rows = np.flatnonzero(is_trd)
    trd_idx = index[is_trd]
    trd_t = t[trd_rows]
    q_u = np.rint(tr.qty[trd_idx] * qscale).astype(np.int64)
    aggr = tr.aggressor[trd_idx]
    buy_cs = np.concatenate([[0], np.cumsum(np.where(aggr > 0, q_u, 0))])
    sell_cs = np.concatenate([[0], np.cumsum(np.where(aggr > 0, 0, q_u))])
    cnt_cs = np.arange(len(trd_rows) + 1, dtype=np.int64)
    trd_upto = np.cumsum(is_trd)
    mid_ns, long_ns = params.mid_ms * 1_000_000, params.long_ms * 1_000_000
    last_trade_row = _ffill_index(is_trd)
    since = np.where(last_trade_row >= 0, t - t[np.maximum(last_trade_row, 0)], -1)

    raw = {
        "bid_px": bid_px, "bid_qty": bid_qty, "ask_px": ask_px, "ask_qty": ask_qty,
        "bid_band": bband, "ask_band": aband,
        "buy_1s": _window_sum(buy_cs, trd_t, trd_upto, t, mid_ns),
        "sell_1s": _window_sum(sell_cs, trd_t, trd_upto, t, mid_ns),
        "buy_5s": _window_sum(buy_cs, trd_t, trd_upto, t, long_ns),
        "sell_5s": _window_sum(sell_cs, trd_t, trd_upto, t, long_ns),
        "n_1s": _window_sum(cnt_cs, trd_t, trd_upto, t, mid_ns),
        "m2": m2, "m2_short": mid_at(params.short_ms), "m2_mid": mid_at(params.mid_ms),
        "m2_long": mid_at(params.long_ms),
        "sq_mid": _window_sum(sq_cs, acc_t, acc_pos, t, mid_ns),
        "sq_long": _window_sum(sq_cs, acc_t, acc_pos, t, long_ns),
        "since_trade_ns": since,
        "bid_qty_u": np.rint(bid_qty * qscale).astype(np.int64),
        "ask_qty_u": np.rint(ask_qty * qscale).astype(np.int64),
    }
    assert set(raw) == set(RAW_FIELDS)
    trade_px = np.zeros(n)
    trade_qty = np.zeros(n)
    trade_aggr = np.zeros(n, np.int8)
    trade_px[trd_rows] = tr.price[trd_idx]
    trade_qty[trd_rows] = tr.qty[trd_idx]
    trade_aggr[trd_rows] = aggr
    cols: dict[str, np.ndarray] = {
        "local_ns": t, "exch_ns": exch, "kind": kinds.astype(np.int8),
        "book_update": (is_dep | acc_row),
        "bid_px": bid_px, "bid_qty": bid_qty, "ask_px": ask_px, "ask_qty": ask_qty,
        "trade_px": trade_px, "trade_qty": trade_qty, "trade_aggressor": trade_aggr,
    }
    cols.update({f"raw_{k}": v for k, v in raw.items()})
    cols.update(market_features_batch(raw))
    cols["_depth_gaps"] = np.full(n, state.gaps, np.int64)
    return cols
