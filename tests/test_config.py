"""config/app.yml: schema, interpolation, and the validate command's error reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tidegate.config import ConfigError, load_config
from tidegate.config.loader import parse_config
from tidegate.durations import DurationError, format_duration, parse_duration

REPO = Path(__file__).resolve().parents[1]
APP_YML = REPO / "config" / "app.yml"


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "validate_config.py"), *args],
                          capture_output=True, text=True, cwd=REPO, check=False)


def test_shipped_config_is_valid_and_has_the_seed_values():
    cfg = load_config(APP_YML, env={})
    assert cfg.exchange.mode == "paper" and cfg.exchange.venue == "bybit_v5"
    assert cfg.exchange.post_only and cfg.exchange.maker_only and cfg.exchange.reduce_only
    assert (cfg.rollout.mode, cfg.rollout.canary_fraction, cfg.rollout.rng_seed) == ("canary", 0.10, 1337)
    s = cfg.executor.sizing
    assert (s.leverage, s.notional_cap_usd, s.use_all_in, s.min_free_balance_usd, s.lot_size_rounding) == (
        10, 20000, True, 200, "floor")
    lbs = cfg.executor.gates.liquidity_by_side
    assert (lbs.enabled, lbs.alpha, lbs.levels) == (True, 1.5, 3)
    assert cfg.risk.near_liq_guard.sl_buffer_multiplier == 1.5 and cfg.risk.assumed_sl_pct == 0.003
    sh = cfg.ai_scorer.shadow
    assert sh.enabled and sh.use_threshold_from_meta and sh.tau_entry is None and sh.tau_hold is None
    assert cfg.rollout_guard.cooldown == 900.0
    assert cfg.nats.url.startswith("nats://") and cfg.prometheus.url.startswith("http://")


def test_every_seed_key_is_written_in_the_shipped_file():
    """The seed's keys must be visible in app.yml itself, not only as schema defaults."""
    doc = yaml.safe_load(APP_YML.read_text())
    for dotted in ["exchange.mode", "exchange.venue", "exchange.maker_only", "exchange.reduce_only",
                   "exchange.post_only", "rollout.mode", "rollout.canary_fraction", "rollout.rng_seed",
                   "executor.sizing.leverage", "executor.sizing.notional_cap_usd", "executor.sizing.use_all_in",
                   "executor.sizing.min_free_balance_usd", "executor.sizing.lot_size_rounding",
                   "executor.gates.liquidity_by_side.enabled", "executor.gates.liquidity_by_side.alpha",
                   "executor.gates.liquidity_by_side.levels", "risk.near_liq_guard.enabled",
                   "risk.near_liq_guard.sl_buffer_multiplier", "risk.assumed_sl_pct",
                   "ai_scorer.shadow.enabled", "ai_scorer.shadow.use_threshold_from_meta",
                   "ai_scorer.shadow.tau_entry", "ai_scorer.shadow.tau_hold", "rollout_guard.winrate_delta_pp",
                   "rollout_guard.min_sample", "rollout_guard.psi_block", "rollout_guard.ks_block",
                   "rollout_guard.cooldown", "nats.url", "prometheus.url"]:
        node = doc
        for part in dotted.split("."):
            assert isinstance(node, dict) and part in node, f"{dotted} missing from config/app.yml"
            node = node[part]


def test_environment_interpolation_with_and_without_defaults():
    doc = yaml.safe_load(APP_YML.read_text())
    assert load_config(APP_YML, env={"EXCHANGE_MODE": "real"}).exchange.mode == "real"
    assert load_config(APP_YML, env={"EXCHANGE_MODE": ""}).exchange.mode == "paper"  # :- treats empty as unset
    doc["executor"]["sizing"]["leverage"] = "${LEV:-7}"
    assert parse_config(doc, env={}).executor.sizing.leverage == 7
    assert parse_config(doc, env={"LEV": "3"}).executor.sizing.leverage == 3
    doc["nats"]["url"] = "nats://${NATS_HOST}:4222"
    with pytest.raises(ConfigError) as err:
        parse_config(doc, env={})
    assert err.value.problems[0].path == "nats.url" and "NATS_HOST" in err.value.problems[0].message


def test_environment_value_cannot_inject_structure():
    doc = {"exchange": {"mode": "${EXCHANGE_MODE:-paper}"}}
    with pytest.raises(ConfigError) as err:
        parse_config(doc, env={"EXCHANGE_MODE": "{venue: evil}"})
    assert [p.path for p in err.value.problems] == ["exchange.mode"]


def test_every_problem_is_reported_with_its_path():
    doc = yaml.safe_load(APP_YML.read_text())
    doc["rollout"]["canary_fration"] = 0.2           # unknown key (typo)
    doc["executor"]["sizing"]["leverage"] = -1       # out of range
    doc["exchange"]["mode"] = "live"                 # not an allowed value
    doc["rollout_guard"]["cooldown"] = "15 minutes"  # unparsable duration
    with pytest.raises(ConfigError) as err:
        parse_config(doc, env={})
    paths = sorted(p.path for p in err.value.problems)
    assert paths == ["exchange.mode", "executor.sizing.leverage", "rollout.canary_fration",
                     "rollout_guard.cooldown"]
    assert "unknown key" in str(err.value)


def test_validate_config_script_accepts_the_shipped_file():
    res = run_validate("--config", "config/app.yml")
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout


def test_validate_config_script_names_all_three_mistakes(tmp_path: Path):
    text = APP_YML.read_text()
    text = text.replace("canary_fraction: 0.10", "canary_fraction: 1.5")
    text = text.replace("levels: 3", "levels: three")
    text = text.replace("  assumed_sl_pct: 0.003", "  assumed_sl_pct: 0.003\n  assumed_tp_pct: 0.01")
    bad = tmp_path / "app.yml"
    bad.write_text(text)
    res = run_validate("--config", str(bad))
    assert res.returncode == 1
    for field in ("rollout.canary_fraction", "executor.gates.liquidity_by_side.levels", "risk.assumed_tp_pct"):
        assert field in res.stderr, res.stderr
    assert "3 problem(s)" in res.stderr


def test_validate_config_reports_yaml_syntax_and_missing_file(tmp_path: Path):
    bad = tmp_path / "app.yml"
    bad.write_text("rollout:\n  mode: [canary\n")
    res = run_validate("--config", str(bad))
    assert res.returncode == 1 and "invalid YAML" in res.stderr and "line" in res.stderr
    res = run_validate("--config", str(tmp_path / "nope.yml"))
    assert res.returncode == 1 and "cannot read file" in res.stderr


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), (90, 90), ("30s", 30), ("15m", 900), ("2h", 7200),
                                                ("1d", 86400), ("1h30m", 5400), ("250ms", 0.25), ("0.5", 0.5)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "15 minutes", "m15", "1x", "-5", "1h-3m", True])
def test_bad_durations_are_rejected(text):
    with pytest.raises(DurationError):
        parse_duration(text)


def test_duration_round_trip():
    for seconds in (30, 900, 5400, 86400, 0.25):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
