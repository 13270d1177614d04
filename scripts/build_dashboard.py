#!/usr/bin/env python3
"""Build config/grafana/tidegate-dashboard.json, the seed's eight-panel dashboard.

Grafana cannot run on these machines, so the dashboard is generated with the
pinned grafana-foundation-sdk (dev extra) instead of being hand-edited: the
panel list below is plain data (title, queries, thresholds), the SDK turns it
into dashboard JSON of the current schema, and tests/test_dashboard.py checks
the committed file against a JSON Schema generated from @grafana/schema, parses
every query with promtool and runs them against a live Prometheus.

Every metric queried is a tidegate/metrics.py CATALOGUE name. Thresholds are the
seed's: win rate 50% (yellow below), fill rate 25% (green above), ECE 5%,
PSI 0.3, KS 0.2.

    python scripts/build_dashboard.py            # rewrite the JSON
    python scripts/build_dashboard.py --check    # exit 1 if the JSON is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "config" / "grafana" / "tidegate-dashboard.json"
UID = "tidegate-rollout"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Query:
    ref: str
    expr: str
    legend: str


@dataclass(frozen=True)
class Steps:
    """Threshold steps: a base colour, then (value, colour) from that value upwards."""

    base: str
    above: tuple[tuple[float, str], ...]

    def json(self) -> dict:
        steps: list[dict] = [{"color": self.base, "value": None}]
        steps += [{"color": color, "value": value} for value, color in self.above]
        return {"mode": "absolute", "steps": steps}


@dataclass(frozen=True)
class Override:
    """Field settings for the series of one query (a second unit or threshold in a panel)."""

    ref: str
    unit: str | None = None
    steps: Steps | None = None
    right_axis: bool = False


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "none"
    steps: Steps | None = None
    overrides: tuple[Override, ...] = ()
    min: float | None = None
    max: float | None = None
    bars: bool = False
    stacked: bool = False
    extra: dict = field(default_factory=dict)


WIN_RATE = Steps("yellow", ((0.5, "green"),))       # below 50% needs investigation
FILL_RATE = Steps("red", ((0.25, "green"),))        # 25% green target
MARKOUT = Steps("red", ((0.0, "green"),))           # markouts stay above zero
ECE = Steps("green", ((0.05, "red"),))              # ECE below 5%
PSI = Steps("green", ((0.3, "red"),))               # PSI > 0.3 is meaningful drift
KS = Steps("green", ((0.2, "red"),))                # KS > 0.2 is meaningful drift
ANY_INCREMENT = Steps("green", ((1.0, "red"),))

PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "Win Rate by Route",
        "winrate_rolling{route} against the active model's baseline; below the yellow 50% line, investigate "
        "(runbook: precision halt). rolling_precision feeds the WinRateDrop alert.",
        (Query("A", "winrate_rolling", "win rate {{route}}"),
         Query("B", "winrate_baseline_active", "baseline (active)"),
         Query("C", "rolling_precision", "precision {{route}}")),
        unit="percentunit", steps=WIN_RATE, min=0, max=1,
    ),
    PanelSpec(
        "Markout & Fill Rate",
        "avg_markout_1000ms{route} (bps, left axis) should stay above zero; fill_rate_rolling{route} (right axis) "
        "above the 25% green target.",
        (Query("A", "avg_markout_1000ms", "markout 1s {{route}}"),
         Query("B", "fill_rate_rolling", "fill rate {{route}}")),
        unit="suffix: bps", steps=MARKOUT,
        overrides=(Override("B", unit="percentunit", steps=FILL_RATE, right_axis=True),),
    ),
    PanelSpec(
        "Score Distribution (Online)",
        "Mean and standard deviation of online scores, deciding model vs shadow. Divergence, or a collapsing "
        "standard deviation, warns of calibration or shadow drift.",
        (Query("A", 'model_score_distribution{split="online", stat="mean"}', "active mean"),
         Query("B", 'shadow_score_distribution{split="online", stat="mean"}', "shadow mean"),
         Query("C", 'model_score_distribution{split="online", stat="std"}', "active std"),
         Query("D", 'shadow_score_distribution{split="online", stat="std"}', "shadow std")),
        min=0, max=1,
    ),
    PanelSpec(
        "Calibration",
        "brier_online should stay below brier_baseline_active; ece_online below 5% (CalibrationOutOfSpec).",
        (Query("A", "brier_online", "Brier (online)"),
         Query("B", "brier_baseline_active", "Brier (active baseline)"),
         Query("C", "ece_online", "ECE (online)")),
        overrides=(Override("C", unit="percentunit", steps=ECE),),
        min=0,
    ),
    PanelSpec(
        "Drift PSI / KS",
        "psi_feature and ks_feature by feature. PSI > 0.3 or KS > 0.2 is meaningful drift (DriftDetected, "
        "and an automatic rollback during a canary).",
        (Query("A", "max by (feature) (psi_feature)", "PSI {{feature}}"),
         Query("B", "max by (feature) (ks_feature)", "KS {{feature}}")),
        steps=PSI,
        overrides=(Override("A", steps=PSI), Override("B", steps=KS)),
        min=0,
    ),
    PanelSpec(
        "Execution Ladder Aggressiveness",
        "Rate of ladder rungs by aggressiveness bucket; a skew towards the marketable buckets together with a "
        "falling fill rate is ExecutionDegradation.",
        (Query("A", "sum by (bucket) (rate(exec_ladder_aggressiveness_total[5m]))", "{{bucket}}"),),
        unit="ops", stacked=True, min=0,
    ),
    PanelSpec(
        "Parity & Schema",
        "Any increase is an incident: ONNX/LightGBM parity failures (OnnxParityFailure, automatic rollback) "
        "and models or parquet files refused for a feature-schema mismatch.",
        (Query("A", "increase(onnx_parity_fail_total[5m])", "ONNX parity failures"),
         Query("B", "increase(parquet_schema_version_mismatch_total[5m])", "schema version mismatches")),
        steps=ANY_INCREMENT, bars=True, min=0,
    ),
    PanelSpec(
        "Rollouts & Mode Switches",
        "Automated and manual interventions in the last 30 minutes: rollout mode switches and rollbacks by "
        "reason, with trades_per_hour against the previous release's p95 (ThroughputSpike).",
        (Query("A", "sum by (from, to) (increase(mode_switch_total[30m]))", "{{from}} → {{to}}"),
         Query("B", "sum by (reason) (increase(rollback_total[30m]))", "rollback: {{reason}}"),
         Query("C", "trades_per_hour", "trades/hour"),
         Query("D", "trades_per_hour_prev_release_p95", "previous release p95 trades/hour")),
        bars=True, min=0,
        overrides=(Override("C", right_axis=True), Override("D", right_axis=True)),
    ),
)


def _override_properties(o: Override) -> list:
    from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

    props = []
    if o.unit:
        props.append(DynamicConfigValue(id_val="unit", value=o.unit))
    if o.steps:
        props.append(DynamicConfigValue(id_val="thresholds", value=o.steps.json()))
        props.append(DynamicConfigValue(id_val="custom.thresholdsStyle", value={"mode": "dashed"}))
    if o.right_axis:
        props.append(DynamicConfigValue(id_val="custom.axisPlacement", value="right"))
    return props


def _panel(spec: PanelSpec, x: int, y: int):  # type: ignore[no-untyped-def]
    from grafana_foundation_sdk.builders import common as cb
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.builders import prometheus, timeseries
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, Threshold, ThresholdsMode

    ds = DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"])
    panel = (timeseries.Panel().title(spec.title).description(spec.description).datasource(ds)
             .grid_pos(GridPos(h=8, w=12, x=x, y=y)).unit(spec.unit)
             .legend(cb.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.BOTTOM).calcs(["lastNotNull", "max"]))
             .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING)))
    if spec.min is not None:
        panel = panel.min(spec.min)
    if spec.max is not None:
        panel = panel.max(spec.max)
    if spec.steps:
        steps = [Threshold(value=None, color=spec.steps.base)]
        steps += [Threshold(value=v, color=c) for v, c in spec.steps.above]
        panel = (panel.thresholds(db.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps))
                 .thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)))
    if spec.bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if spec.stacked:
        panel = panel.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(40)
    for q in spec.queries:
        panel = panel.with_target(prometheus.Dataquery().ref_id(q.ref).expr(q.expr).legend_format(q.legend)
                                  .range().datasource(ds))
    for o in spec.overrides:
        panel = panel.override_by_query(o.ref, _override_properties(o))
    return panel


def build() -> dict:
    """The dashboard as a JSON-ready dict (two panels per row, eight panels)."""
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, VariableOption

    board = (db.Dashboard("tidegate: progressive delivery").uid(UID)
             .description("Guard rails of a tidegate model release: win rate, execution, calibration, drift, "
                          "parity and interventions. Panels and thresholds follow docs/runbook.md.")
             .tags(["tidegate", "trading", "progressive-delivery"]).editable()
             .tooltip(DashboardCursorSync.CROSSHAIR).refresh("30s").time("now-6h", "now").timezone("utc")
             .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
                            .current(VariableOption(selected=True, text="Prometheus", value="prometheus"))))
    for i, spec in enumerate(PANELS):
        board = board.with_panel(_panel(spec, x=(i % 2) * 12, y=(i // 2) * 8))
    out = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for variable in out["templating"]["list"]:
        if variable["type"] != "interval":   # the SDK adds interval-only keys the schema rejects elsewhere
            for key in ("auto", "auto_count", "auto_min"):
                variable.pop(key, None)
    for i, panel in enumerate(out["panels"], start=1):
        panel["id"] = i   # stable ids keep diffs readable and imports idempotent
    return out


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the dashboard JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from a fresh build")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python scripts/build_dashboard.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date ({len(PANELS)} panels)")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(PANELS)} panels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
