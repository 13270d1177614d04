"""The Grafana dashboard: schema-valid, the seed's panels and thresholds, queries that work.

Grafana cannot run here, so the dashboard is checked three ways: against a JSON
Schema generated from Grafana's own types (@grafana/schema), by parsing every
panel query with promtool, and by running every query against the suite's real
Prometheus while exporters built from tidegate/metrics.py serve every metric
of the catalogue, one exporter per owning service as in production.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest
import yaml
from test_alerts import metric_names

from tidegate import metrics

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "config" / "grafana" / "tidegate-dashboard.json"
SCHEMA = REPO / "config" / "grafana" / "dashboard.schema.json"

SEED_PANELS = [
    "Win Rate by Route",
    "Markout & Fill Rate",
    "Score Distribution (Online)",
    "Calibration",
    "Drift PSI / KS",
    "Execution Ladder Aggressiveness",
    "Parity & Schema",
    "Rollouts & Mode Switches",
]

# Grafana macros -> something PromQL accepts, for checks outside Grafana.
MACROS = {r"\$__rate_interval": "1m", r"\$__interval": "30s", r"\$__range": "1h", r"\$\{?datasource\}?": ""}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_queries(board: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL with Grafana macros substituted) for every target."""
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for pattern, value in MACROS.items():
                expr = re.sub(pattern, value, expr)
            out.append((panel["title"], target["refId"], expr))
    return out


def threshold_values(panel: dict) -> set[float]:
    """Every threshold step value of a panel: its defaults and its per-query overrides."""
    configs = [panel["fieldConfig"]["defaults"].get("thresholds")]
    for override in panel["fieldConfig"].get("overrides", []):
        configs += [p["value"] for p in override["properties"] if p["id"] == "thresholds"]
    return {step["value"] for cfg in configs if cfg for step in cfg["steps"] if step["value"] is not None}


def test_dashboard_validates_against_grafana_schema():
    board = dashboard()
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(board)]
    assert errors == []
    # the schema does not require these, Grafana's import does
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 39
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    # the validator is not vacuous: typical hand-edit mistakes are rejected
    broken = json.loads(json.dumps(board))
    broken["graphTooltip"] = "shared"
    broken["panels"][0]["gridPos"]["w"] = "12"
    assert {e.path[0] for e in validator.iter_errors(broken)} == {"graphTooltip", "panels"}


def test_dashboard_json_is_what_the_generator_builds():
    spec = importlib.util.spec_from_file_location("build_dashboard", REPO / "scripts" / "build_dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_dashboard"] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert module.render() == DASHBOARD.read_text(), "stale: run python scripts/build_dashboard.py"


def test_seed_panels_and_thresholds():
    panels = {p["title"]: p for p in dashboard()["panels"]}
    assert list(panels) == SEED_PANELS
    assert 0.5 in threshold_values(panels["Win Rate by Route"])          # yellow below 50% win rate
    assert 0.25 in threshold_values(panels["Markout & Fill Rate"])       # 25% green fill-rate target
    assert 0.05 in threshold_values(panels["Calibration"])               # ECE 5%
    assert {0.3, 0.2} <= threshold_values(panels["Drift PSI / KS"])      # PSI 0.3, KS 0.2
    win = panels["Win Rate by Route"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["color"] for s in win] == ["yellow", "green"]
    exprs = {title: [e for t, _, e in panel_queries(dashboard()) if t == title] for title in panels}
    assert "winrate_rolling" in exprs["Win Rate by Route"] and "winrate_baseline_active" in exprs["Win Rate by Route"]
    assert "increase(onnx_parity_fail_total[5m])" in exprs["Parity & Schema"]
    assert "increase(parquet_schema_version_mismatch_total[5m])" in exprs["Parity & Schema"]
    assert any("rate(exec_ladder_aggressiveness_total[5m])" in e for e in exprs["Execution Ladder Aggressiveness"])
    assert any("increase(mode_switch_total[30m])" in e for e in exprs["Rollouts & Mode Switches"])
    assert any("increase(rollback_total[30m])" in e for e in exprs["Rollouts & Mode Switches"])


def test_panel_queries_use_only_catalogue_metrics():
    used: set[str] = set()
    for title, ref, expr in panel_queries(dashboard()):
        names = metric_names(expr)
        assert names, f"{title}/{ref}: no metric in {expr!r}"
        assert names <= set(metrics.BY_NAME), f"{title}/{ref}: unknown {names - set(metrics.BY_NAME)}"
        used |= names
    seed_named = {"winrate_rolling", "winrate_baseline_active", "avg_markout_1000ms", "fill_rate_rolling",
                  "model_score_distribution", "shadow_score_distribution", "brier_online",
                  "brier_baseline_active", "ece_online", "psi_feature", "ks_feature",
                  "exec_ladder_aggressiveness_total", "onnx_parity_fail_total",
                  "parquet_schema_version_mismatch_total", "mode_switch_total", "rollback_total"}
    assert seed_named <= used


def promtool_check_exprs(promtool: Path, exprs: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = workdir / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_every_panel_query_parses_with_promtool(promtool, tmp_path):
    exprs = [e for _, _, e in panel_queries(dashboard())]
    out = promtool_check_exprs(promtool, exprs, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in out.stdout
    bad = promtool_check_exprs(promtool, [*exprs, "sum(rate(fill_rate_rolling[5m])"], tmp_path)
    assert bad.returncode != 0 and "unclosed left parenthesis" in bad.stdout + bad.stderr


# ------------------------------------------------------------------ live test

LABEL_VALUES = {"route": "canary", "feature": "obi", "bucket": "high", "split": "online", "stat": "mean",
                "symbol": "BTCUSDT", "model": "m1", "model_id": "m1", "reason": "parity", "from": "canary",
                "to": "disabled", "service": "executor", "subject": "sig.approved", "kind": "trade",
                "release": "r1", "stage": "canary", "phase": "Canary", "gate": "winrate", "verdict": "PASS",
                "field": "tick_size", "leg": "exit"}
GAUGE_VALUE = 0.42


def exercise(family, spec: metrics.MetricSpec, step: int) -> None:  # type: ignore[no-untyped-def]
    """Give a metric a sample: gauges a fixed value, counters one more increment per step."""
    values = [dict(LABEL_VALUES)]
    if "stat" in spec.labels:
        values.append({**LABEL_VALUES, "stat": "std"})
    for labels in values:
        child = family.labels(**{k: labels[k] for k in spec.labels}) if spec.labels else family
        if spec.kind == "gauge":
            child.set(GAUGE_VALUE)
        elif spec.kind == "counter":
            child.inc(1 + step)
        else:
            child.observe(0.001 * (1 + step))


@contextmanager
def catalogue_exporters(prometheus) -> Iterator[Callable[[int], None]]:  # type: ignore[no-untyped-def]
    """One exporter per owning service on reserved scrape slots; yields a function that bumps every metric."""
    from prometheus_client import CollectorRegistry, start_http_server

    owners = sorted({m.owner for m in metrics.CATALOGUE} - {"*"})
    built, servers, ports = [], [], []
    try:
        for owner in owners:
            registry = CollectorRegistry()
            built.append(metrics.build(registry, owner))
            port = prometheus.claim_slot()
            ports.append(port)
            servers.append(start_http_server(port, addr="127.0.0.1", registry=registry)[0])

        def bump(step: int) -> None:
            for families in built:
                for name, family in families.items():
                    exercise(family, metrics.spec(name), step)

        bump(0)
        for port in ports:
            prometheus.wait_up(port)
        yield bump
    finally:
        for server in servers:
            server.shutdown()
        for port in ports:
            prometheus.release_slot(port)


def wait_for_every_query(prometheus, queries: list[tuple[str, str, str]], bump: Callable[[int], None],
                         timeout: float = 20.0) -> dict[str, list[dict]]:
    """Bump counters each round until every query has data.

    rate/increase need two scrapes that saw *different* values: a series can exist at 0 when two
    scrapes fell between the same pair of bumps, so those queries wait for a positive value.
    """
    deadline = time.monotonic() + timeout
    step = 1

    def ready(expr: str, result: list[dict]) -> bool:
        if not result:
            return False
        if "rate(" in expr or "increase(" in expr:
            return any(float(r["value"][1]) > 0 for r in result)
        return True

    while True:
        results = {expr: prometheus.query(expr) for _, _, expr in queries}
        empty = [f"{t}/{r}: {e}" for t, r, e in queries if not ready(e, results[e])]
        if not empty:
            return results
        if time.monotonic() > deadline:
            pytest.fail("panel queries returned no data:\n" + "\n".join(empty))
        bump(step)
        step += 1
        time.sleep(0.6)


@pytest.mark.real
def test_every_panel_query_returns_data_from_live_prometheus(prometheus):
    queries = panel_queries(dashboard())
    with catalogue_exporters(prometheus) as bump:
        results = wait_for_every_query(prometheus, queries, bump)

    def value(expr: str) -> float:
        return float(results[expr][0]["value"][1])

    assert value("winrate_rolling") == pytest.approx(GAUGE_VALUE)
    assert results["winrate_rolling"][0]["metric"]["route"] == "canary"
    psi = results["max by (feature) (psi_feature)"]
    assert [r["metric"] for r in psi] == [{"feature": "obi"}]
    assert value('model_score_distribution{split="online", stat="std"}') == pytest.approx(GAUGE_VALUE)
    ladder = results["sum by (bucket) (rate(exec_ladder_aggressiveness_total[5m]))"]
    assert ladder[0]["metric"] == {"bucket": "high"} and float(ladder[0]["value"][1]) > 0
    # the session's Prometheus may still hold a flat series of this counter from an earlier test's
    # exporter (increase 0); ours is the one that grew
    assert max(float(r["value"][1]) for r in results["increase(onnx_parity_fail_total[5m])"]) > 0
