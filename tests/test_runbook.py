"""docs/runbook.md: every incident the seed names has a section with a command and a place to look.

The runbook is only useful if what it says to type works: its PromQL parses and
queries catalogue metrics, its panels exist on the dashboard, its commands are
the project's real entry points, and each alert links to a section that exists.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from test_alerts import metric_names

from tidegate.metrics import BY_NAME

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = (REPO / "docs" / "runbook.md").read_text()
DASHBOARD = REPO / "config" / "grafana" / "tidegate-dashboard.json"
PANELS = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]]
REQUIRED = ["precision-halt", "volatility-halt", "parity-failure", "drift", "automatic-rollback", "fail-safe",
            "stuck-release"]
COMMANDS = re.compile(r"tidegate release (status|promote|abort|pause|resume|retry) NAME"
                      r"|kubectl tidegate (status|history|promote|abort|pause|resume) NAME"
                      r"|scripts/promote_model\.py --to active --id \w+"
                      r"|tidegate rollout (show|set --mode \w+ --reason \"[^\"]+\")"
                      r"|scripts/release\.sh --shadow-id MODEL_ID"
                      r"|python scripts/validate_config\.py --config config/app\.yml")


def sections() -> dict[str, str]:
    parts = re.split(r'<a id="([\w-]+)"></a>\n', RUNBOOK)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_required_incident_has_a_command_and_a_panel_or_metric():
    found = sections()
    assert set(REQUIRED) <= set(found), set(REQUIRED) - set(found)
    for anchor in REQUIRED:
        text = found[anchor]
        assert COMMANDS.search(text), f"{anchor}: no exact command"
        panels = [p for p in PANELS if f"**{p}**" in text]
        metrics = [m for m in BY_NAME if re.search(rf"\b{m}\b", text)]
        assert panels, f"{anchor}: names no dashboard panel"
        assert metrics, f"{anchor}: names no metric"


def test_runbook_queries_parse_and_use_catalogue_metrics(promtool, tmp_path):
    queries = re.findall(r"promq '([^']+)'", RUNBOOK)
    assert len(queries) >= 20
    for q in queries:
        assert metric_names(q) <= set(BY_NAME) | {"up"}, q
    rules = {"groups": [{"name": "runbook", "rules": [{"record": f"runbook:q{i}", "expr": q}
                                                     for i, q in enumerate(queries)]}]}
    path = tmp_path / "runbook_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_bold_panel_names_are_real_panels():
    for name in re.findall(r"panel \*\*([^*]+)\*\*", RUNBOOK):
        assert name in PANELS, f"runbook names a panel that does not exist: {name}"
