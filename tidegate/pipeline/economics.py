"""Does any entry pay in this market? The economics of post-only entries at the touch, before any model.

Why this exists: a model only chooses among the entries a market offers. When a
candidate fails the canary, the first question is whether it chose badly or
whether no entry in that market pays at our latency, queue position and fee (the
recorded capture is such a market, docs/release-policy.md section 7). This module
answers with numbers anyone can reproduce (``tidegate data economics``):

- per session, what approving *every* candidate entry would do (the canary's
  "market" reference), with labelling's own fill rule and markout;
- the *markout profile*: the mean fee-adjusted markout of the fills at several
  horizons after the fill, which shows whether a loss is adverse selection (the
  mid keeps moving against the fill) or the fee;
- a search over one-feature threshold rules ("approve when ``feature >= q``" or
  "``< q``" at each decile of every model feature): the simplest things a model
  can learn. Each rule is judged by the canary's own gates. A passing rule means
  the market has edge a model could find; none passing is evidence, not proof,
  that it has none (a model combines features; the canary itself is the proof
  for a given model).

Pure functions over labelled columns; the CLI (tidegate/pipeline/cli.py) reads
the data and draws the figure (:func:`plot`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tidegate.features.formulas import model_matrix
from tidegate.features.schema import FEATURE_NAMES, MARKET_FEATURES
from tidegate.pipeline.canary import CanaryGates, TradeOutcome, json_number, judge, outcome
from tidegate.pipeline.canary_days import LabelledDay
from tidegate.pipeline.labeling import LabelParams, label_session, session_columns
from tidegate.release.verdicts import Verdict

HORIZONS_MS = (0, 100, 250, 500, 1_000, 2_000, 5_000)
DECILES = tuple(np.round(np.arange(0.1, 1.0, 0.1), 1).tolist())


@dataclass(frozen=True)
class SessionEconomics:
    session: str
    symbol: str
    market: TradeOutcome  # every candidate entry approved
    profile_bps: dict[int, float]  # horizon ms -> mean fee-adjusted markout of the fills (NaN: no fill)
    profile_trades: dict[int, int]  # fills whose horizon stays inside the session

    def to_json(self) -> dict[str, object]:
        return {"session": self.session, "symbol": self.symbol, "market": self.market.to_json(),
                "markout_profile_bps": {str(h): json_number(v) for h, v in self.profile_bps.items()},
                "markout_profile_trades": {str(h): n for h, n in self.profile_trades.items()}}


@dataclass(frozen=True)
class RuleResult:
    feature: str
    op: str  # ">=" or "<"
    threshold: float
    quantile: float
    outcome: TradeOutcome
    verdict: Verdict  # the canary's gates (without the active-model comparison)

    @property
    def name(self) -> str:
        return f"{self.feature} {self.op} {self.threshold:.4g}"

    def to_json(self) -> dict[str, object]:
        return {"rule": self.name, "feature": self.feature, "op": self.op, "threshold": json_number(self.threshold),
                "quantile": self.quantile, "verdict": str(self.verdict), **self.outcome.to_json()}


def mid_series(cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(time, mid) of the valid book rows, as labelling reads the mid."""
    ok = cols["book_update"].astype(bool) & (cols["bid_px"] > 0) & (cols["ask_px"] > cols["bid_px"])
    return cols["local_ns"][ok], (cols["bid_px"][ok] + cols["ask_px"][ok]) / 2.0


def markout_profile(fill_t: np.ndarray, side: np.ndarray, price: np.ndarray, mid_t: np.ndarray, mid: np.ndarray,
                    horizons_ms: Sequence[int], fee_bps: float, end_ns: int) -> tuple[dict[int, float], dict[int, int]]:
    """Mean of ``side * (mid(t_fill + h) - price) / price * 1e4 - fee`` per horizon, over fills whose
    ``t_fill + h`` is at or before ``end_ns`` (the session's last event); mid(t) is the last mid at or
    before t, as in labelling."""
    means: dict[int, float] = {}
    counts: dict[int, int] = {}
    end = end_ns
    for h in horizons_ms:
        at = fill_t + h * 1_000_000
        inside = at <= end
        k = np.searchsorted(mid_t, at[inside], side="right") - 1
        ok = k >= 0
        m = side[inside][ok] * (mid[k[ok]] - price[inside][ok]) / price[inside][ok] * 1e4 - fee_bps
        means[h] = float(m.mean()) if len(m) else float("nan")
        counts[h] = len(m)
    return means, counts


def session_economics(table: pa.Table, params: LabelParams, horizons_ms: Sequence[int] = HORIZONS_MS
                      ) -> tuple[list[SessionEconomics], LabelledDay]:
    """Per-session market outcome and markout profile, and every candidate pooled (for the rule search)."""
    sessions: list[SessionEconomics] = []
    parts: list[LabelledDay] = []
    for sc in session_columns(table):
        cols = sc.cols
        lab = label_session(cols, params)
        if len(lab["row"]) == 0:
            continue
        rows, side, filled = lab["row"], lab["side"].astype(np.int64), lab["filled"]
        won = lab["label"].astype(bool)
        price = np.where(side > 0, cols["bid_px"][rows], cols["ask_px"][rows])
        fill_t = cols["local_ns"][rows] + lab["fill_ns"]
        mid_t, mid = mid_series(cols)
        prof, counts = markout_profile(fill_t[filled], side[filled], price[filled], mid_t, mid, horizons_ms,
                                       params.maker_fee_bps, int(cols["local_ns"][-1]))
        market = outcome(np.ones(len(rows), bool), filled, lab["markout_bps"], won)
        sessions.append(SessionEconomics(sc.session, sc.symbol, market, prof, counts))
        x = model_matrix({n: cols[n][rows] for n in MARKET_FEATURES}, lab["side"])
        parts.append(LabelledDay("economics", sc.regime, (sc.session,), x, filled, lab["markout_bps"], won))
    if not parts:
        raise ValueError("no candidate entries: sessions too short for warm-up plus horizons")
    return sessions, LabelledDay("economics", "all", tuple(s for p in parts for s in p.sessions),
                                 np.concatenate([p.features for p in parts]), np.concatenate([p.filled for p in parts]),
                                 np.concatenate([p.markout_bps for p in parts]), np.concatenate([p.won for p in parts]))


def rule_search(c: LabelledDay, gates: CanaryGates, quantiles: Sequence[float] = DECILES) -> list[RuleResult]:
    """Every one-feature threshold rule at the given quantiles of each model feature, judged by the gates."""
    plain = CanaryGates(gates.winrate_target, gates.markout_min_bps, gates.fill_rate_min, gates.min_trades, None)
    out: list[RuleResult] = []
    for j, name in enumerate(FEATURE_NAMES):
        col = c.features[:, j]
        seen: set[float] = set()
        for q in quantiles:
            thr = float(np.quantile(col, q, method="higher"))  # an observed value: no rule repeats another
            if thr in seen:  # a discrete feature repeats thresholds
                continue
            seen.add(thr)
            for op, approved in ((">=", col >= thr), ("<", col < thr)):
                if not approved.any() or approved.all():
                    continue
                o = outcome(approved, c.filled, c.markout_bps, c.won)
                verdicts = judge(o, None, plain)
                kinds = {v.verdict for v in verdicts}
                verdict = (Verdict.FAIL if Verdict.FAIL in kinds else
                           Verdict.INSUFFICIENT if Verdict.INSUFFICIENT in kinds else Verdict.PASS)
                out.append(RuleResult(name, op, thr, q, o, verdict))
    return out


def summarize(sessions: Sequence[SessionEconomics], rules: Sequence[RuleResult], gates: CanaryGates,
              params: LabelParams, top: int = 10) -> dict[str, object]:
    """The JSON report: sessions, the rule search's counts, its passing rules and its best ones."""
    judged = [r for r in rules if r.verdict != Verdict.INSUFFICIENT]
    passing = [r for r in judged if r.verdict == Verdict.PASS]
    by_markout = sorted(judged, key=lambda r: -r.outcome.avg_markout_bps)[:top]
    by_win = sorted(judged, key=lambda r: -r.outcome.win_rate)[:top]
    pooled = sum((s.market for s in sessions), TradeOutcome())
    return {"label_params": params.as_dict(), "gates": gates.as_dict(),
            "sessions": [s.to_json() for s in sessions], "market": pooled.to_json(),
            "rules": {"tested": len(rules), "judged": len(judged), "passing": len(passing),
                      "passing_rules": [r.to_json() for r in passing[:top]],
                      "best_by_markout": [r.to_json() for r in by_markout],
                      "best_by_win_rate": [r.to_json() for r in by_win]},
            "verdict": (f"{len(passing)} of {len(judged)} one-feature rules with >= {gates.min_trades} trades pass "
                        f"the canary gates" if passing else
                        f"no one-feature rule passes the canary gates ({len(judged)} rules with >= "
                        f"{gates.min_trades} trades; best avg markout "
                        f"{by_markout[0].outcome.avg_markout_bps:+.3f} bps, best win rate "
                        f"{by_win[0].outcome.win_rate:.3f})" if judged else
                        f"no rule reaches {gates.min_trades} trades")}


def plot(sessions: Sequence[SessionEconomics], rules: Sequence[RuleResult], gates: CanaryGates, title: str) -> bytes:
    """PNG: markout profile per session (left), every judged rule's win rate vs avg markout with the gates (right)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for s in sessions:
        hs = sorted(s.profile_bps)
        left.plot(hs, [s.profile_bps[h] for h in hs], marker="o", label=s.session)
    left.axhline(gates.markout_min_bps, color="#2e7d32", ls="--", lw=1, label=f"gate {gates.markout_min_bps:g} bps")
    left.set_xscale("symlog", linthresh=100)
    left.set_xlim(0, max(max(s.profile_bps, default=1) for s in sessions) if sessions else 1)
    left.set_xlabel("time after the fill (ms)")
    left.set_ylabel("mean markout of the fills, bps (net of maker fee)")
    left.set_title("Every entry at the touch: where the fills' markout goes")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    judged = [r for r in rules if r.verdict != Verdict.INSUFFICIENT]
    if judged:
        colors = ["#2e7d32" if r.verdict == Verdict.PASS else "#c62828" for r in judged]
        right.scatter([r.outcome.win_rate for r in judged], [r.outcome.avg_markout_bps for r in judged],
                      c=colors, s=12, alpha=0.6)
    else:
        right.text(0.5, 0.5, f"no rule reaches {gates.min_trades} trades", transform=right.transAxes, ha="center")
    right.axvline(gates.winrate_target, color="#2e7d32", ls="--", lw=1)
    right.axhline(gates.markout_min_bps, color="#2e7d32", ls="--", lw=1)
    x1 = max([gates.winrate_target + 0.1, *[r.outcome.win_rate + 0.02 for r in judged]])
    y1 = max([gates.markout_min_bps + 0.5, *[r.outcome.avg_markout_bps + 0.1 for r in judged]])
    right.fill_between([gates.winrate_target, x1], gates.markout_min_bps, y1, color="#c8e6c9", alpha=0.5,
                       label="passes win rate and markout gates")
    right.set_xlabel("win rate of the rule's fills")
    right.set_ylabel("avg markout, bps")
    right.set_title(f"One-feature rules with >= {gates.min_trades} trades ({len(judged)})")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()
