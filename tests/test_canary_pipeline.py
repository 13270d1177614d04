"""scripts/canary_pipeline.py: a good candidate passes every gate, bad ones fail, silence is not a pass.

Pure tests of the decision (tidegate.pipeline.canary) on hand-built numbers, then real
trained models (tests/canary_models.py) through the real ONNX Runtime on synthetic
days (always) and on the recorded capture (skipped with a reason when absent).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from canary_models import trained

from tidegate.config.schema import AppConfig
from tidegate.pipeline.canary import CanaryGates, DayOutcome, TradeOutcome, evaluate, judge, outcome
from tidegate.pipeline.canary_days import classify_windows, parse_days, synthetic_days
from tidegate.pipeline.canary_run import CanaryError, build_days, run_canary
from tidegate.registry import Registry
from tidegate.release.verdicts import Verdict

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT.parent / "shared" / "data" / "capture"
SCRIPT = ROOT / "scripts" / "canary_pipeline.py"
GATES = CanaryGates(winrate_target=0.5, markout_min_bps=0.0, fill_rate_min=0.25, min_trades=10, winrate_delta_pp=5)


def _by_gate(verdicts) -> dict[str, Verdict]:
    return {v.gate: v.verdict for v in verdicts}


def test_outcome_counts_entries_fills_wins_and_markout_of_fills_only() -> None:
    approved = np.array([1, 1, 1, 0, 1], bool)
    filled = np.array([1, 0, 1, 1, 1], bool)
    markout = np.array([0.5, np.nan, -0.25, 9.0, 0.0])
    won = filled & (np.nan_to_num(markout) > 0)
    o = outcome(approved, filled, markout, won)
    assert (o.candidates, o.entries, o.trades, o.wins) == (5, 4, 3, 1)
    assert o.fill_rate == 0.75 and math.isclose(o.win_rate, 1 / 3)
    assert math.isclose(o.avg_markout_bps, (0.5 - 0.25 + 0.0) / 3)  # unfilled and unapproved rows ignored
    assert math.isnan(TradeOutcome().win_rate)  # no trades is no rate, never zero
    pooled = o + o
    assert (pooled.trades, pooled.win_rate) == (6, o.win_rate)


def test_judge_boundaries_insufficient_and_the_active_comparison() -> None:
    ok = TradeOutcome(candidates=100, entries=40, trades=20, wins=10, markout_sum_bps=0.0)
    v = _by_gate(judge(ok, None, GATES))
    assert v == {"winrate": Verdict.PASS, "markout": Verdict.PASS, "fill_rate": Verdict.PASS}  # >= at the limits
    worse = TradeOutcome(candidates=100, entries=100, trades=20, wins=9, markout_sum_bps=-0.2)
    v = _by_gate(judge(worse, None, GATES))
    assert v == {"winrate": Verdict.FAIL, "markout": Verdict.FAIL, "fill_rate": Verdict.FAIL}
    thin = TradeOutcome(candidates=100, entries=12, trades=9, wins=0, markout_sum_bps=-50.0)
    assert set(_by_gate(judge(thin, None, GATES)).values()) == {Verdict.INSUFFICIENT}
    strong_active = TradeOutcome(candidates=100, entries=40, trades=20, wins=12, markout_sum_bps=5.0)
    vs = {g.gate: g for g in judge(ok, strong_active, GATES)}["winrate_vs_active"]
    assert vs.verdict == Verdict.FAIL and math.isclose(vs.threshold, 0.55)  # 0.60 - 5pp
    close_active = TradeOutcome(candidates=100, entries=40, trades=20, wins=11)
    assert _by_gate(judge(ok, close_active, GATES))["winrate_vs_active"] == Verdict.PASS  # 0.50 >= 0.55 - 0.05
    assert _by_gate(judge(ok, thin, GATES))["winrate_vs_active"] == Verdict.INSUFFICIENT


def test_evaluate_tolerates_an_abstaining_regime_but_not_a_silent_source() -> None:
    good = TradeOutcome(candidates=500, entries=60, trades=40, wins=30, markout_sum_bps=8.0)
    none = TradeOutcome(candidates=500)
    days = [DayOutcome("synthetic", "normal", ("n",), none, None),
            DayOutcome("synthetic", "event", ("e",), good, None)]
    groups, passed, summary = evaluate(days, GATES)
    verdicts = {g.name: g.verdict for g in groups}
    assert verdicts == {"synthetic/normal": Verdict.INSUFFICIENT, "synthetic/event": Verdict.PASS,
                        "synthetic/all": Verdict.PASS, "all/all": Verdict.PASS}
    assert passed and summary.startswith("canary PASS: 40 trades")
    quiet = TradeOutcome(candidates=500, entries=5, trades=3, wins=3, markout_sum_bps=3.0)
    groups, passed, summary = evaluate([*days, DayOutcome("replay", "high-vol", ("r",), quiet, None)], GATES)
    assert not passed and "replay/all: not enough evidence (3 trades < min_trades 10)" in summary
    losing = TradeOutcome(candidates=500, entries=60, trades=40, wins=30, markout_sum_bps=-1.0)
    _, passed, summary = evaluate([*days, DayOutcome("synthetic", "high-vol", ("h",), losing, None)], GATES)
    assert not passed and "synthetic/high-vol markout FAIL" in summary


def test_the_market_reference_is_pooled_and_named_only_when_it_fails_too() -> None:
    good = TradeOutcome(candidates=500, entries=60, trades=40, wins=30, markout_sum_bps=8.0)
    weak = TradeOutcome(candidates=500, entries=60, trades=40, wins=10, markout_sum_bps=-20.0)
    losing_market = TradeOutcome(candidates=500, entries=500, trades=200, wins=20, markout_sum_bps=-250.0)
    paying_market = TradeOutcome(candidates=500, entries=500, trades=200, wins=120, markout_sum_bps=40.0)
    days = [DayOutcome("replay", "normal", ("a",), weak, None, losing_market),
            DayOutcome("replay", "event", ("b",), weak, None, losing_market)]
    groups, passed, summary = evaluate(days, GATES)
    pooled = {g.name: g for g in groups}["replay/all"]
    assert pooled.market == TradeOutcome(1000, 1000, 400, 40, -500.0)
    assert pooled.to_json()["market"]["avg_markout_bps"] == -1.25
    assert not passed and summary.endswith(
        "| market: replay/all: every entry approved would fail winrate, markout too "
        "(win rate 0.100, avg markout -1.250 bps, fill rate 0.400 over 400 trades)")
    # the model chose badly in a market that pays: no market note
    _, passed, summary = evaluate([DayOutcome("replay", "normal", ("a",), weak, None, paying_market)], GATES)
    assert not passed and "market:" not in summary
    # a passing run never carries one, and days without a reference have none
    _, passed, summary = evaluate([DayOutcome("replay", "normal", ("a",), good, None, losing_market)], GATES)
    assert passed and "market:" not in summary
    assert evaluate([DayOutcome("replay", "normal", ("a",), weak, None)], GATES)[0][0].market is None


def test_classify_windows_by_volatility_then_trade_rate() -> None:
    t = np.arange(10, dtype=np.int64) * 10 ** 9  # one row per second, 1 s windows
    session = np.array(["a"] * 10, object)
    vol = np.array([1, 1, 1, 1, 1, 1, 1, 1, 9, 9], float)
    trades = np.array([1, 1, 1, 1, 1, 1, 8, 8, 1, 1], float)
    r = classify_windows(session, t, vol, trades, window_ns=10 ** 9, high_vol_quantile=0.8, event_quantile=0.75)
    assert r.tolist() == ["normal"] * 6 + ["event"] * 2 + ["high-vol"] * 2


def test_days_selection_and_its_errors() -> None:
    sel = parse_days(["synthetic:event", "replay:*0809*"])
    assert sel.synthetic_regimes == ("event",) and sel.replay_patterns == ("*0809*",) and sel.replay_required
    default = parse_days(None)
    assert default.synthetic_regimes == ("normal", "event", "high-vol") and not default.replay_required
    with pytest.raises(ValueError, match="unknown regime 'calm'"):
        parse_days(["synthetic:calm"])
    with pytest.raises(CanaryError, match="replay days requested but no capture files"):
        build_days(AppConfig(), Path("/nonexistent"), ["replay"])
    days, notes = build_days(AppConfig.model_validate({"canary_pipeline": {"synthetic_seconds": 30}}),
                             Path("/nonexistent"), None)
    assert [d.regime for d in days] == ["normal", "event", "high-vol"] and "replay skipped" in notes[0]


def test_days_use_labelling_fill_and_markout() -> None:
    (day,) = synthetic_days(seed=5, days=1, seconds=40, regimes=("high-vol",))
    assert day.rows > 100 and day.features.shape[1] == 16 and day.features.dtype == np.float32
    assert np.array_equal(day.won, day.filled & (np.nan_to_num(day.markout_bps, nan=-1) > 0))
    assert np.isnan(day.markout_bps[~day.filled]).all() and np.isfinite(day.markout_bps[day.filled]).all()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("canary") / "registry")
    for kind in ("baseline", "good", "bad", "approve_all"):
        reg.register(trained(kind))
    reg.set_slot("active", "baseline-1", reason="test")
    return reg


@pytest.fixture(scope="module")
def synthetic(registry: Registry) -> tuple:
    return build_days(AppConfig(), None, ["synthetic"])


def _run(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--registry", str(registry.root), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_script_passes_the_good_candidate_on_synthetic_days(registry: Registry, tmp_path: Path) -> None:
    proc = _run(registry, "--model-id", "good-1", "--days", "synthetic", "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and report["active"]["id"] == "baseline-1"
    groups = {g["group"]: g for g in report["groups"]}
    assert set(groups) == {"synthetic/normal", "synthetic/event", "synthetic/high-vol", "synthetic/all", "all/all"}
    pooled = groups["synthetic/all"]["candidate"]
    assert pooled["trades"] == sum(groups[f"synthetic/{r}"]["candidate"]["trades"]
                                   for r in ("normal", "event", "high-vol"))
    assert pooled["trades"] >= 50 and pooled["win_rate"] >= 0.5 and pooled["avg_markout_bps"] >= 0
    assert pooled["fill_rate"] >= 0.25
    for g in groups.values():
        assert g["verdict"] in ("PASS", "INSUFFICIENT") and not g["in_sample_sessions"]
        assert {x["gate"] for x in g["gates"]} == {"winrate", "markout", "fill_rate", "winrate_vs_active"}
    assert proc.stdout.strip().splitlines()[-1].startswith("canary PASS")


def test_bad_candidates_fail_with_the_gates_named(registry: Registry, synthetic: tuple) -> None:
    cfg = AppConfig()
    good = run_canary(registry, "good-1", cfg=cfg, prebuilt=synthetic)
    for model_id in ("bad-1", "approve-all-1"):
        run = run_canary(registry, model_id, cfg=cfg, prebuilt=synthetic)
        assert not run.passed
        pooled = {g["group"]: g for g in run.report["groups"]}["synthetic/all"]
        verdicts = {x["gate"]: x["verdict"] for x in pooled["gates"]}
        assert verdicts["winrate"] == verdicts["markout"] == verdicts["winrate_vs_active"] == "FAIL"
        assert pooled["candidate"]["avg_markout_bps"] < 0 < good.report["groups"][-2]["candidate"]["avg_markout_bps"]
        assert "winrate FAIL" in run.summary
    everything = run_canary(registry, "approve-all-1", cfg=cfg, prebuilt=synthetic).report["groups"][-1]["candidate"]
    assert everything["entries"] == everything["candidates"] == sum(d.rows for d in synthetic[0])


def test_script_refuses_unknown_and_tampered_models(registry: Registry, tmp_path: Path) -> None:
    proc = _run(registry, "--model-id", "nope", "--days", "synthetic:event")
    assert proc.returncode == 2 and "'nope' is not in the registry" in proc.stderr
    reg = Registry(tmp_path / "reg")
    reg.register(trained("good"))
    (reg.model_dir("good-1") / "model.onnx").write_bytes(b"not onnx")
    proc = _run(reg, "--model-id", "good-1", "--days", "synthetic:event")
    assert proc.returncode == 2 and "sha256 mismatch" in proc.stderr
    proc = _run(registry, "--model-id", "good-1", "--days", "synthetic:calm")
    assert proc.returncode == 2 and "unknown regime" in proc.stderr


@pytest.mark.skipif(not CAPTURE.is_dir(), reason=f"real capture not present at {CAPTURE}")
def test_capture_bad_candidates_fail_and_silence_is_not_a_pass(registry: Registry, tmp_path: Path) -> None:
    cfg = AppConfig()
    replay = build_days(cfg, CAPTURE, ["replay"])
    assert {d.regime for d in replay[0]} == {"normal", "event", "high-vol"}
    for model_id in ("bad-1", "approve-all-1"):
        run = run_canary(registry, model_id, cfg=cfg, prebuilt=replay)
        groups = {g["group"]: g for g in run.report["groups"]}
        assert not run.passed
        # the market reference is every labelled candidate of the replay, so it equals the labelling's counts
        day_rows = sum(d.rows for d in replay[0])
        fills = sum(int(d.filled.sum()) for d in replay[0])
        market = groups["replay/all"]["market"]
        assert (market["candidates"], market["entries"], market["trades"]) == (day_rows, day_rows, fills)
        assert market["avg_markout_bps"] < 0 and "| market: replay/all: every entry approved would fail" in run.summary
        for name in ("replay/normal", "replay/event", "replay/high-vol", "replay/all"):
            assert groups[name]["verdict"] == "FAIL" and groups[name]["candidate"]["trades"] >= 50
            assert groups[name]["candidate"]["avg_markout_bps"] < 0
    approve_all = {g["group"]: g for g in run_canary(registry, "approve-all-1", cfg=cfg, prebuilt=replay)
                   .report["groups"]}["replay/all"]
    assert approve_all["candidate"] == approve_all["market"]  # approving everything is the market
    # the synthetic-trained good model hardly trades the real market: not enough evidence is not a pass
    good = run_canary(registry, "good-1", cfg=cfg, prebuilt=replay)
    pooled = {g["group"]: g for g in good.report["groups"]}["replay/all"]
    assert not good.passed and pooled["verdict"] in ("INSUFFICIENT", "FAIL")
    proc = _run(registry, "--model-id", "bad-1", "--days", "replay:*20240809*", "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 1 and "replay/" in proc.stdout.strip().splitlines()[-1]
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(s.endswith("20240809.gz") for d in report["days"] for s in d["sessions"])
