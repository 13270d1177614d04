"""Market days for the canary pipeline: labelled candidate entries per regime, synthetic and replayed.

Why labelled candidates and not a second simulator: the question the canary asks
of a model ("if the scorer approves this post-only entry at the touch, does it
fill, and is the fill worth having?") is exactly the question labelling answers
for every sampled book state. So a day is built the way training data is built
(``tidegate.features`` batch path via ``dump.frame_table``, then
``labeling.label_table`` with its vectorised queue-aware fill rule and its
fee-adjusted markout), and scoring a day later is only "which rows would the
model approve". One fill rule and one markout formula serve training, the canary
and the risk service's definitions (tidegate/risk/trading.py states them).

Day types:

- *synthetic*: ``tidegate.market.synthetic`` in each regime (normal, event,
  high-vol), seeded apart from the training seeds so the canary is out of sample;
- *replay*: the recorded capture. A recording has no regime label, so each
  session is cut into fixed windows and every window classified from its own
  features: the most volatile windows (``vol_5s_bps`` at or above the
  ``high_vol_quantile`` of all windows) are ``high-vol``, the busiest of the
  rest (``trade_count_1s`` at or above ``event_quantile``) are ``event`` (bursts
  of trading, as news produces), the others ``normal``. Quantiles are pooled
  over the whole replay, so the labels are relative to the recorded market.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from tidegate.features.schema import FEATURE_NAMES
from tidegate.market.capture import list_captures, read_capture
from tidegate.market.frame import MarketFrame
from tidegate.market.synthetic import REGIMES, generate
from tidegate.pipeline.dump import frame_table
from tidegate.pipeline.labeling import LabelParams, label_table

SOURCES = ("synthetic", "replay")
LABELS = LabelParams()  # the training labels' fill horizon, markout horizon, latency and fee


@dataclass(frozen=True)
class LabelledDay:
    """Candidate entries of one (source, regime): model inputs and what each entry would have done."""

    source: str
    regime: str
    sessions: tuple[str, ...]
    features: np.ndarray  # float32 (n, len(FEATURE_NAMES)), model-input order
    filled: np.ndarray  # bool: the post-only entry fills within the horizon
    markout_bps: np.ndarray  # fee-adjusted markout at the close horizon (NaN when unfilled)
    won: np.ndarray  # bool: filled and markout > 0 (labeling's label)

    @property
    def rows(self) -> int:
        return len(self.filled)


@dataclass(frozen=True)
class DaySelection:
    """Which days to build: synthetic regimes and/or replay file patterns."""

    synthetic_regimes: tuple[str, ...] = REGIMES
    replay_patterns: tuple[str, ...] = ("*",)
    replay_required: bool = False  # an explicit ``replay`` request fails when the capture is absent


def parse_days(specs: Sequence[str] | None) -> DaySelection:
    """``synthetic``, ``synthetic:<regime>``, ``replay``, ``replay:<file glob>``; None: synthetic + replay."""
    if not specs:
        return DaySelection()
    regimes: list[str] = []
    patterns: list[str] = []
    for raw in specs:
        for spec in (s.strip() for s in raw.split(",")):
            if not spec:
                continue
            kind, _, arg = spec.partition(":")
            if kind == "synthetic":
                if arg and arg not in REGIMES:
                    raise ValueError(f"--days {spec!r}: unknown regime {arg!r} (one of {', '.join(REGIMES)})")
                regimes.extend([arg] if arg else REGIMES)
            elif kind in ("replay", "capture"):
                patterns.append(arg or "*")
            else:
                raise ValueError(f"--days {spec!r}: expected synthetic[:REGIME] or replay[:FILE_GLOB]")
    return DaySelection(tuple(dict.fromkeys(regimes)), tuple(dict.fromkeys(patterns)), replay_required=bool(patterns))


def labelled_table(frames: Sequence[MarketFrame], params: LabelParams) -> pa.Table:
    """Features (batch path) and labels of the candidates in ``frames``, each frame its own session."""
    table = pa.concat_tables([frame_table(f) for f in frames])
    return label_table(table.sort_by([("session", "ascending"), ("local_ns", "ascending")]), params)


def _day(table: pa.Table, source: str, regime: str, mask: np.ndarray | None = None) -> LabelledDay:
    def col(name: str) -> np.ndarray:
        arr = table.column(name).to_numpy(zero_copy_only=False)
        return arr if mask is None else arr[mask]

    x = np.column_stack([col(n).astype(np.float32) for n in FEATURE_NAMES])
    sessions = tuple(sorted(set(col("session").tolist())))
    return LabelledDay(source=source, regime=regime, sessions=sessions, features=x,
                       filled=col("filled").astype(bool), markout_bps=col("markout_bps").astype(np.float64),
                       won=col("label").astype(bool))


def synthetic_days(*, seed: int, days: int, seconds: float, regimes: Sequence[str] = REGIMES,
                   params: LabelParams = LABELS) -> list[LabelledDay]:
    """One LabelledDay per regime, pooling ``days`` generated sessions of ``seconds`` each."""
    out = []
    for i, regime in enumerate(REGIMES):
        if regime not in regimes:
            continue
        frames = [generate(seed=seed + 100 * i + k, regime=regime, duration_s=seconds) for k in range(days)]
        out.append(_day(labelled_table(frames, params), "synthetic", regime))
    return out


def classify_windows(session: np.ndarray, t_ns: np.ndarray, vol: np.ndarray, trades: np.ndarray, *,
                     window_ns: int, high_vol_quantile: float, event_quantile: float) -> np.ndarray:
    """Regime of every row from its window's mean volatility and trade rate (quantiles over all windows)."""
    n = len(t_ns)
    regime = np.full(n, "normal", object)
    if n == 0:
        return regime
    start = {s: int(t_ns[session == s].min()) for s in np.unique(session)}
    offset = np.fromiter((start[s] for s in session), np.int64, n)
    keys = np.char.add(session.astype(str), np.char.add("#", ((t_ns - offset) // window_ns).astype(str)))
    uniq, inv = np.unique(keys, return_inverse=True)
    counts = np.bincount(inv, minlength=len(uniq))
    w_vol = np.bincount(inv, weights=vol, minlength=len(uniq)) / counts
    w_trd = np.bincount(inv, weights=trades, minlength=len(uniq)) / counts
    hot = w_vol >= np.quantile(w_vol, high_vol_quantile)
    busy = ~hot & (w_trd >= np.quantile(w_trd[~hot], event_quantile)) if (~hot).any() else np.zeros_like(hot)
    w_regime = np.where(hot, "high-vol", np.where(busy, "event", "normal"))
    return w_regime[inv]


def classify_table(table: pa.Table, *, window_s: float, high_vol_quantile: float,
                   event_quantile: float) -> np.ndarray:
    """Regime of every row of a labelled (or feature) table: :func:`classify_windows` on its columns.

    The one classification of recorded data: the canary's replay days and
    scripts/threshold_builder.py both call it, with ``canary_pipeline``'s
    ``replay_window``, ``high_vol_quantile`` and ``event_quantile``.
    """
    return classify_windows(table.column("session").to_numpy(zero_copy_only=False),
                            table.column("local_ns").to_numpy(),
                            table.column("vol_5s_bps").to_numpy().astype(np.float64),
                            table.column("trade_count_1s").to_numpy().astype(np.float64),
                            window_ns=int(window_s * 1e9), high_vol_quantile=high_vol_quantile,
                            event_quantile=event_quantile)


def replay_files(capture_dir: Path, patterns: Sequence[str]) -> list[Path]:
    files = list_captures(capture_dir) if Path(capture_dir).is_dir() else []
    return [p for p in files if any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]


def replay_days(files: Sequence[Path], *, window_s: float, high_vol_quantile: float, event_quantile: float,
                params: LabelParams = LABELS) -> list[LabelledDay]:
    """The capture files as one LabelledDay per regime present (windows classified by classify_windows)."""
    if not files:
        return []
    table = labelled_table([read_capture(p) for p in files], params)
    regime = classify_table(table, window_s=window_s, high_vol_quantile=high_vol_quantile,
                            event_quantile=event_quantile)
    return [_day(table, "replay", r, regime == r) for r in REGIMES if (regime == r).any()]
