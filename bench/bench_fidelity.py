"""Simulator fidelity: PaperExchange against hftbacktest on the USD-M capture, order by order, and their speed.

Writes bench/results/fidelity.json and the report's plot docs/simulator-fidelity.png
(docs/simulator-fidelity.md explains every figure). One schedule (a post-only
touch order every 200 ms, alternating sides, 2 s lifetime) is driven through both
simulators from the same converted events:

- ``matched``: risk-averse queue, constant 5 ms entry/response latency, partial
  fills, one clock: the acceptance figures (agreement >= 99 %, fill rates within
  1 point);
- ``feed_latency``: hftbacktest's exchange on the venue's clock (our exchange
  stays on the receive clock, as the executor's does): what that choice costs;
- ``prob``: our ``prob`` queue beside hftbacktest's power-probability model with
  the same power and with the negated power (the same rule, see the report);
- ``optimistic``: our fill-on-touch baseline against hftbacktest's risk-averse
  model and its nearest probabilistic one.

Speed is best of ``--repeat`` runs of the matched comparison, each simulator
timed over the same events and schedule (hftbacktest after numba compilation),
reported as events/s and as the ratio ours / hftbacktest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidegate.execution import fidelity as fid  # noqa: E402

CAPTURE = REPO / ".." / "shared" / "data" / "capture" / "binance_usdm_btcusdt_20240808.gz"
CACHE = Path(os.environ.get("TIDEGATE_CACHE", Path.home() / ".cache" / "tidegate")) / "hftbacktest"


def _pair(a: fid.Outcomes, b: fid.Outcomes, lot: float) -> dict[str, Any]:
    c = fid.compare(a, b, lot)
    out = c.to_json()
    out["fill_rate_gap_pp"] = abs(c.fill_rate_a - c.fill_rate_b) * 100
    out["tidegate"], out["hftbacktest"] = a.name, b.name
    out["disagreeing_orders"] = c.disagree[:50]
    return out


def _fill_curve(o: fid.Outcomes, schedule: fid.Schedule, horizons_ms: np.ndarray) -> list[float]:
    """Share of orders whose first fill came within h ms of their submission."""
    delay = np.where(o.first_fill_ns >= 0, (o.first_fill_ns - schedule.submit_ns) / 1e6, np.inf)
    return [float(np.mean(delay <= h)) for h in horizons_ms]


def plot(path: Path, sched: fid.Schedule, runs: dict[str, fid.Outcomes], doc: dict[str, Any]) -> None:
    """Three panels: fill curves, fill-time differences with venue-clock hftbacktest, agreement per comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    h = np.linspace(0, fid.FidelitySettings().ttl_ms + 20, 300)
    ax = axes[0]
    styles = {"tidegate risk_averse": ("C0", "-"), "hftbacktest risk_averse": ("C1", "--"),
              "hftbacktest venue clock": ("C2", ":"), "tidegate prob(2)": ("C3", "-"),
              "hftbacktest power(-2)": ("C4", "--"), "tidegate optimistic": ("C5", "-")}
    for label, (color, ls) in styles.items():
        ax.plot(h, _fill_curve(runs[label], sched, h), color=color, ls=ls, label=label)
    ax.set_xlabel("ms since submission")
    ax.set_ylabel("share of orders filled")
    ax.set_title("fill curves, same schedule")
    ax.legend(fontsize=7)
    ax = axes[1]
    a, b = runs["tidegate risk_averse"], runs["hftbacktest venue clock"]
    both = a.filled & b.filled
    dt = (b.first_fill_ns[both] - a.first_fill_ns[both]) / 1e6
    ax.hist(dt, bins=60, color="C2")
    ax.set_yscale("log")
    ax.set_xlabel("hftbacktest (venue clock) − tidegate first fill, ms")
    ax.set_ylabel("orders")
    ax.set_title(f"fill-time difference ({both.sum()} orders both filled)")
    ax = axes[2]
    comps = doc["comparisons"]
    names = list(comps)
    vals = [comps[n]["fill_agreement"] * 100 for n in names]
    ax.barh(names, vals, color=["C0" if v >= 99 else "C7" for v in vals])
    ax.axvline(99, color="k", ls=":", lw=1)
    ax.set_xlim(min(vals) - 5, 100.5)
    ax.set_xlabel("order-by-order fill agreement, %")
    ax.set_title("agreement (dotted: 99 % floor)")
    for i, v in enumerate(vals):
        ax.text(v - 0.2, i, f"{v:.1f}", va="center", ha="right", fontsize=8, color="w")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", type=Path, default=CAPTURE)
    ap.add_argument("--cache-dir", type=Path, default=CACHE)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fidelity.json")
    ap.add_argument("--plot", type=Path, default=REPO / "docs" / "simulator-fidelity.png")
    args = ap.parse_args()
    if not args.capture.is_file():
        raise SystemExit(f"capture not found at {args.capture}: this benchmark needs the real recording")

    s = fid.FidelitySettings()
    raw = fid.convert_capture(args.capture, args.cache_dir)
    events = fid.same_clock(raw)
    sched = fid.build_schedule(events, s)
    lot = s.lot_size

    runs: dict[str, fid.Outcomes] = {}
    ours_best = hbt_best = None
    for _ in range(max(1, args.repeat)):
        a = fid.run_paper(events, sched, s)
        b = fid.run_hftbacktest(events, sched, s)
        ours_best = a if ours_best is None or a.seconds < ours_best.seconds else ours_best
        hbt_best = b if hbt_best is None or b.seconds < hbt_best.seconds else hbt_best
    assert ours_best is not None and hbt_best is not None
    runs["tidegate risk_averse"], runs["hftbacktest risk_averse"] = ours_best, hbt_best
    runs["hftbacktest venue clock"] = fid.run_hftbacktest(raw, sched, s, name="hftbacktest:venue-clock")
    runs["tidegate prob(2)"] = fid.run_paper(events, sched, s, queue_model="prob")
    runs["hftbacktest power(2)"] = fid.run_hftbacktest(events, sched, s, queue_model="power:2")
    runs["hftbacktest power(-2)"] = fid.run_hftbacktest(events, sched, s, queue_model="power:-2")
    runs["tidegate optimistic"] = fid.run_paper(events, sched, s, queue_model="optimistic")
    runs["hftbacktest power(-8)"] = fid.run_hftbacktest(events, sched, s, queue_model="power:-8")

    comparisons = {
        "matched": _pair(runs["tidegate risk_averse"], runs["hftbacktest risk_averse"], lot),
        "feed_latency": _pair(runs["tidegate risk_averse"], runs["hftbacktest venue clock"], lot),
        "prob_vs_power2": _pair(runs["tidegate prob(2)"], runs["hftbacktest power(2)"], lot),
        "prob_vs_power_neg2": _pair(runs["tidegate prob(2)"], runs["hftbacktest power(-2)"], lot),
        "optimistic_vs_risk_averse": _pair(runs["tidegate optimistic"], runs["hftbacktest risk_averse"], lot),
        "optimistic_vs_power_neg8": _pair(runs["tidegate optimistic"], runs["hftbacktest power(-8)"], lot),
    }
    m = comparisons["matched"]
    ours_eps, hbt_eps = ours_best.events_per_s, hbt_best.events_per_s
    doc: dict[str, Any] = {
        "source": args.capture.name,
        "settings": s.__dict__,
        "orders": len(sched),
        "events": len(events),
        "matched": {
            "fill_agreement": m["fill_agreement"], "accept_agreement": m["accept_agreement"],
            "qty_agreement": m["qty_agreement"], "fill_rate_tidegate": m["fill_rate_a"],
            "fill_rate_hftbacktest": m["fill_rate_b"], "fill_rate_gap_pp": m["fill_rate_gap_pp"],
            "mean_markout_1s_tidegate_bps": m["mean_markout_a_bps"],
            "mean_markout_1s_hftbacktest_bps": m["mean_markout_b_bps"],
            "fill_time_diff_ms_max": m["fill_time_diff_ms_max"],
        },
        "speed": {
            "tidegate_events_per_s": ours_eps, "hftbacktest_events_per_s": hbt_eps,
            "ratio_tidegate_over_hftbacktest": ours_eps / hbt_eps,
            "tidegate_run_s": ours_best.seconds, "hftbacktest_run_s": hbt_best.seconds,
            "repeat": args.repeat,
            "note": "same events and schedule; hftbacktest timed after numba compilation, its strategy loop "
                    "polling orders at every feed event and order response",
        },
        "comparisons": comparisons,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "hftbacktest": metadata.version("hftbacktest"), "numpy": np.__version__},
    }
    plot(args.plot, sched, runs, doc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"matched": doc["matched"], "speed": doc["speed"]}, indent=2))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
