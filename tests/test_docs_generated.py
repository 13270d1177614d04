"""The generated references (docs/configuration.md, docs/metrics.md) match the code they describe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tidegate.cli import main
from tidegate.config.schema import AppConfig
from tidegate.metrics import CATALOGUE
from tidegate.refdocs import CONFIG_DOC, METRICS_DOC, generate, stale, write
from tidegate.refdocs.config_reference import rows

ROOT = Path(__file__).resolve().parents[1]


def test_committed_docs_are_what_the_generator_writes() -> None:
    out_of_date = stale(ROOT)
    assert not out_of_date, f"{out_of_date} differ from the code: run `tidegate docs generate` and commit"


def _row(text: str, key: str) -> list[str]:
    line = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")][-1]  # the reference table
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_configuration_rows_carry_type_default_constraints_env_and_description() -> None:
    text = generate(ROOT)[CONFIG_DOC]
    assert _row(text, "rollout.canary_fraction") == [
        "`rollout.canary_fraction`", "number", "`0.1`", "≥ 0.0, ≤ 1.0", "—", "share of signals routed to canary"]
    mode = _row(text, "exchange.mode")
    assert mode[1] == '"paper" \\| "real"' and mode[2] == '`"paper"`'
    assert mode[4] == "`EXCHANGE_MODE` (else `paper`)"
    cooldown = _row(text, "rollout_guard.cooldown")
    assert cooldown[1:3] == ["duration", "`15m`"]
    assert _row(text, "ai_scorer.shadow.tau_entry")[1:4] == ["number or null", "`null`", "≥ 0, ≤ 1"]
    # nested sections become headings, deepest ones included
    assert "### `executor.sizing`" in text and "#### `executor.gates.liquidity_by_side`" in text
    assert "${VAR:-default}" in text


def test_every_config_key_is_documented_once_with_a_description() -> None:
    keys = [r.path for _, section in rows(AppConfig) for r in section]
    assert len(keys) == len(set(keys))
    assert "executor.sizing.notional_cap_usd" in keys and "risk.near_liq_guard.sl_buffer_multiplier" in keys
    undocumented = [r.path for _, section in rows(AppConfig) for r in section if not r.description]
    assert not undocumented, f"schema fields without a description: {undocumented}"


def test_metrics_reference_lists_every_catalogue_entry_grouped_by_owner() -> None:
    text = generate(ROOT)[METRICS_DOC]
    for m in CATALOGUE:
        assert text.count(f"| `{m.name}` | {m.kind} |") == 1, m.name
    row = _row(text, "trades_opened_total")
    assert row[1:3] == ["counter", "`route`"]
    assert row[4] == "entry orders placed, by route"
    # grouped: the executor's metric sits under the executor heading, before the risk heading
    assert text.index("## `executor`") < text.index("| `trades_opened_total`") < text.index("## `risk`")
    assert "gates" in _row(text, "trades_closed_total")[3] and "gates" in _row(text, "trade_clusters_total")[3]
    assert "Counters travel beside ratios" in text
    assert "| `winrate_rolling` | `trades_won_total / trades_closed_total` |" in text


def test_check_flag_fails_on_a_stale_page_and_generate_repairs_it(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "app.yml").write_text((ROOT / "config" / "app.yml").read_text())
    runner = CliRunner()
    result = runner.invoke(main, ["docs", "generate", "--root", str(tmp_path), "--check"])
    assert result.exit_code == 1 and "docs/configuration.md: out of date" in result.output
    assert sorted(write(tmp_path)) == sorted([CONFIG_DOC, METRICS_DOC])
    (tmp_path / METRICS_DOC).write_text((tmp_path / METRICS_DOC).read_text().replace("counter", "gauge", 1))
    assert stale(tmp_path) == [METRICS_DOC]
    result = runner.invoke(main, ["docs", "generate", "--root", str(tmp_path)])
    assert result.exit_code == 0 and "wrote docs/metrics.md" in result.output
    assert runner.invoke(main, ["docs", "generate", "--root", str(tmp_path), "--check"]).exit_code == 0


@pytest.mark.parametrize("args", [["--check"]])
def test_gen_docs_script_runs_from_a_checkout(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--root", str(ROOT), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout


def test_architecture_diagram_regenerates_and_the_page_links_resolve(tmp_path: Path) -> None:
    import re

    import matplotlib.image as mpimg

    out = tmp_path / "architecture.png"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_architecture_diagram.py"), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    img = mpimg.imread(str(out))
    assert img.shape[1] > 1200 and img.std() > 0.05
    page = (ROOT / "docs" / "architecture.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", page)
    assert "architecture.png" in links
    assert all((ROOT / "docs" / link).is_file() for link in links), links
    for lib in ("pyarrow", "onnxmltools", "rich", "ccxt", "kopf", "prometheus-api-client", "nats-py"):
        assert f"| **{lib}**" in page
