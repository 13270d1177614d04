"""`tidegate data economics`: the market's touch entries, their markout profile and the one-feature rule search.

The numbers must be labelling's own (the canary judges with them), so the tests
compare with ``label_table`` on the same sessions, check the profile and the rule
search on hand-built inputs, and run the command on synthetic sessions and on the
recorded capture (skipped with a reason when absent).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tidegate.features.schema import FEATURE_NAMES
from tidegate.market.synthetic import generate
from tidegate.pipeline.canary import CanaryGates
from tidegate.pipeline.canary_days import LabelledDay
from tidegate.pipeline.dump import frame_table
from tidegate.pipeline.economics import markout_profile, rule_search, session_economics, summarize
from tidegate.pipeline.labeling import LabelParams, label_table
from tidegate.release.verdicts import Verdict

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT.parent / "shared" / "data" / "capture"
GATES = CanaryGates(winrate_target=0.5, markout_min_bps=0.0, fill_rate_min=0.25, min_trades=10, winrate_delta_pp=5)


def _sessions() -> pa.Table:
    frames = [generate(seed=41 + i, regime=r, duration_s=40.0) for i, r in enumerate(("normal", "high-vol"))]
    table = pa.concat_tables([frame_table(f) for f in frames])
    return table.sort_by([("session", "ascending"), ("local_ns", "ascending")])


def test_market_and_profile_are_labellings_numbers() -> None:
    table, params = _sessions(), LabelParams()
    sessions, cands = session_economics(table, params)
    labelled = label_table(table, params)
    assert len(sessions) == 2 and len(cands.filled) == labelled.num_rows
    for s in sessions:
        rows = labelled.filter(pa.compute.equal(labelled.column("session"), s.session))
        filled = rows.column("filled").to_numpy()
        markout = rows.column("markout_bps").to_numpy()
        m = s.market
        wins = int(rows.column("label").to_numpy().sum())
        assert (m.entries, m.trades, m.wins) == (rows.num_rows, int(filled.sum()), wins)
        assert math.isclose(m.avg_markout_bps, float(np.mean(markout[filled])), abs_tol=1e-9)
        # at labelling's own horizon the profile is the label markout, over every fill
        assert s.profile_trades[params.markout_ms] == m.trades
        assert math.isclose(s.profile_bps[params.markout_ms], m.avg_markout_bps, abs_tol=1e-6)
    # the pooled candidates carry the training table's features, row for row (labelling's time order differs)
    x = np.column_stack([labelled.column(n).to_numpy() for n in FEATURE_NAMES])
    assert sorted(map(tuple, x.tolist())) == sorted(map(tuple, cands.features.tolist()))


def test_markout_profile_by_hand() -> None:
    ms = 1_000_000
    mid_t = np.array([0, 100, 200, 300], np.int64) * ms
    mid = np.array([100.0, 100.1, 99.9, 100.2])
    # a buy filled at 100.0 at t=0 and a sell filled at 100.1 at t=100 ms; fee 1 bps
    means, counts = markout_profile(np.array([0, 100 * ms]), np.array([1, -1]), np.array([100.0, 100.1]),
                                    mid_t, mid, (0, 100, 250), 1.0, end_ns=300 * ms)
    buy0, sell0 = 0.0 - 1.0, (100.1 - 100.1) / 100.1 * 1e4 - 1.0
    buy100, sell100 = 10.0 - 1.0, (100.1 - 99.9) / 100.1 * 1e4 - 1.0
    assert math.isclose(means[0], (buy0 + sell0) / 2) and counts[0] == 2
    assert math.isclose(means[100], (buy100 + sell100) / 2)
    # 250 ms after the sell (t = 350 ms) is past the session's end: only the buy (mid 99.9 at 250 ms) counts
    assert counts[250] == 1 and math.isclose(means[250], -10.0 - 1.0)


def test_rule_search_finds_the_feature_that_separates_winners() -> None:
    n = 400
    x = np.zeros((n, len(FEATURE_NAMES)), np.float32)
    j = FEATURE_NAMES.index("imbalance_l1")
    x[:, j] = np.linspace(-1, 1, n, dtype=np.float32)
    x[:, 0] = np.where(np.arange(n) % 2 == 0, 1, -1)  # side: two values, thresholds dedupe
    filled = np.ones(n, bool)
    good = x[:, j] >= 0.6  # the top 20 %: +1 bps winners; everything else loses 2 bps
    markout = np.where(good, 1.0, -2.0)
    rules = rule_search(LabelledDay("t", "all", (), x, filled, markout, good), GATES)
    by_name = {r.name: r for r in rules}
    top = next(r for r in rules if r.feature == "imbalance_l1" and r.op == ">=" and math.isclose(r.quantile, 0.8))
    assert top.verdict == Verdict.PASS and top.outcome.trades == 80 and top.outcome.win_rate == 1.0
    assert math.isclose(top.outcome.avg_markout_bps, 1.0)
    # q0.9 (winners only) and q0.7 (80 winners, 40 losers: markout exactly 0) pass too; q0.6 (80/80) does not
    passing = {(r.quantile, r.outcome.trades, r.outcome.wins) for r in rules if r.verdict == Verdict.PASS}
    assert passing == {(0.7, 120, 80), (0.8, 80, 80), (0.9, 40, 40)}
    q6 = next(r for r in rules if r.feature == "imbalance_l1" and r.op == ">=" and math.isclose(r.quantile, 0.6))
    assert q6.verdict == Verdict.FAIL and math.isclose(q6.outcome.avg_markout_bps, -0.5)
    assert len([r for r in rules if r.feature == "side"]) == 2  # side >= 1 and side < 1, once
    assert all(r.verdict == Verdict.FAIL for r in rules if r.feature == "side")
    flat = [name for name in by_name if name.startswith("spread_bps")]
    assert flat == []  # a constant feature approves all or nothing: no rule
    report = summarize([], rules, GATES, LabelParams())
    assert report["rules"]["passing"] == 3 and report["verdict"].startswith("3 of ")
    few = rule_search(LabelledDay("t", "all", (), x[:30], filled[:30], markout[:30], good[:30]), GATES)
    assert {r.verdict for r in few} <= {Verdict.INSUFFICIENT, Verdict.FAIL}
    assert any(r.verdict == Verdict.INSUFFICIENT for r in few)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tidegate.cli", "data", "economics", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_command_writes_the_report_and_the_figure(tmp_path: Path) -> None:
    proc = _run("--synthetic", "--seconds", "60", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "economics.json").read_text())
    assert [s["session"].split("-seed")[0] for s in report["sessions"]] == [
        "synthetic-event", "synthetic-high-vol", "synthetic-normal"]
    assert report["market"]["entries"] == sum(s["market"]["entries"] for s in report["sessions"])
    assert report["rules"]["tested"] > len(FEATURE_NAMES) and report["verdict"] in proc.stdout.replace("\n", " ")
    assert (tmp_path / "economics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not CAPTURE.is_dir(), reason=f"real capture not present at {CAPTURE}")
def test_capture_no_touch_entry_rule_pays(tmp_path: Path) -> None:
    """The claim of docs/release-policy.md section 7, kept true by the data: every fill loses on average."""
    proc = _run("--capture-dir", str(CAPTURE), "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "economics.json").read_text())
    assert len(report["sessions"]) == 5
    for s in report["sessions"]:
        profile = s["markout_profile_bps"]
        assert all(profile[h] < 0 for h in ("100", "1000", "5000")), s["session"]
        assert profile["1000"] < profile["0"]  # the loss grows after the fill: adverse selection, not the fee
    assert report["rules"]["judged"] > 100 and report["rules"]["passing"] == 0
    assert report["rules"]["best_by_markout"][0]["avg_markout_bps"] < 0
