"""The alert catalogue: it parses, its promtool unit tests pass, and those tests bite.

`promtool test rules` proves each alert fires and stays silent in the hand-made
scenarios of alerts_test.yml. To show those scenarios really pin each alert down,
every alert is also swapped for one that always fires and one that never fires:
promtool must then fail, which it only does if each alert has both a firing and
a not-firing case.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tidegate.config.schema import RolloutGuardConfig
from tidegate.metrics import BY_NAME

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "config" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "config" / "prometheus" / "alerts_test.yml"

# The seed's catalogue, as written: name -> severity.
SEED_CATALOGUE = {
    "WinRateDrop": "critical",
    "CanaryWinrateDrop": "warning",
    "OnnxParityFailure": "warning",
    "DriftDetected": "critical",
    "CalibrationOutOfSpec": "warning",
    "ThroughputSpike": "warning",
    "ExecutionDegradation": "critical",
}

PROMQL_WORDS = {"and", "or", "unless", "on", "ignoring", "by", "without", "offset", "bool",
                "group_left", "group_right"}


def alert_rules() -> dict[str, dict]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (strings, matchers and label lists removed)."""
    text = re.sub(r'"[^"]*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", text):
        if m.group(2) is None and m.group(1) not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def run_promtool(promtool: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_catalogue_is_the_seeds_with_severities_and_runbook_links():
    rules = alert_rules()
    assert {name: r["labels"]["severity"] for name, r in rules.items()} == SEED_CATALOGUE
    runbook = (REPO / "docs" / "runbook.md").read_text()
    anchors = set(re.findall(r'<a id="([\w-]+)"></a>', runbook))
    for name, rule in rules.items():
        target = rule["annotations"]["runbook"]
        assert target.startswith("docs/runbook.md#"), name
        assert target.split("#", 1)[1] in anchors, f"{name}: runbook anchor {target} missing"
    assert rules["WinRateDrop"]["for"] == "10m"
    assert rules["WinRateDrop"]["expr"].strip() == "rolling_precision < 0.5"
    assert rules["CanaryWinrateDrop"]["for"] == "30m"
    assert "[10m]" in rules["OnnxParityFailure"]["expr"]
    assert rules["DriftDetected"]["expr"].count("[30m]") == 2


def test_alerts_query_only_catalogue_metrics():
    for name, rule in alert_rules().items():
        unknown = metric_names(rule["expr"]) - set(BY_NAME)
        assert not unknown, f"{name} queries metrics missing from tidegate/metrics.py: {unknown}"
    # the extractor itself: it must see every metric of a known expression
    assert metric_names(alert_rules()["ExecutionDegradation"]["expr"]) == {
        "fill_rate_rolling", "exec_ladder_aggressiveness_total"}


def numbers_in(expr: str) -> set[float]:
    return {float(x) for x in re.findall(r"(?<![\w\[.])(\d+(?:\.\d+)?)(?![\w\]])", expr)}


def test_thresholds_agree_with_rollout_guard_defaults():
    guard = RolloutGuardConfig()
    rules = alert_rules()
    assert {guard.winrate_delta_pp / 100, float(guard.min_sample)} <= numbers_in(rules["CanaryWinrateDrop"]["expr"])
    assert {guard.psi_block, guard.ks_block} <= numbers_in(rules["DriftDetected"]["expr"])
    assert guard.ece_max in numbers_in(rules["CalibrationOutOfSpec"]["expr"])
    assert guard.fill_rate_min in numbers_in(rules["ExecutionDegradation"]["expr"])


def test_promtool_check_rules(promtool):
    out = run_promtool(promtool, "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(SEED_CATALOGUE)} rules found" in out.stdout


def test_promtool_unit_tests_pass(promtool):
    out = run_promtool(promtool, "test", "rules", str(RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@pytest.mark.parametrize("alert", sorted(SEED_CATALOGUE))
@pytest.mark.parametrize("replacement", ["vector(1)", "vector(0) > 1"], ids=["always-fires", "never-fires"])
def test_unit_tests_catch_a_broken_alert(promtool, tmp_path, alert, replacement):
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = replacement
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    out = run_promtool(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert out.returncode != 0, f"{alert} replaced by `{replacement}` still passes every promtool test"
    assert f"alertname: {alert}" in out.stdout + out.stderr
