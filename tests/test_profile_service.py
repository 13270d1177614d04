"""scripts/profile_service.py profiles real entry points: scripts, modules, and services stopped by duration."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "scripts" / "profile_service.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_script_run_until_exit_reports_its_hot_function_with_exact_call_count(tmp_path):
    script = tmp_path / "workload.py"
    script.write_text(textwrap.dedent("""
        import sys
        def hot(n):
            return sum(i * i for i in range(n))
        def cold():
            return 1
        total = sum(hot(20000) for _ in range(150)) + cold()
        print("args", sys.argv[1:])
    """))
    report = tmp_path / "report.json"
    out = run(str(script), "--top", "200", "--json", str(report), "--", "--flag", "x")
    assert out.returncode == 0, out.stderr
    assert "args ['--flag', 'x']" in out.stdout          # arguments after -- reach the target
    assert "(exited)" in out.stdout
    functions = json.loads(report.read_text())["functions"]
    hot = next(f for f in functions if f["function"].endswith("(hot)"))
    cold = next(f for f in functions if f["function"].endswith("(cold)"))
    assert hot["calls"] == 150 and cold["calls"] == 1
    assert hot["cumulative_s"] >= hot["own_s"] > 0
    assert hot["cumulative_s"] > cold["cumulative_s"]
    assert functions.index(hot) < functions.index(cold)   # sorted by cumulative time
    assert not any("profile_service.py" in f["function"] for f in functions)   # harness frames hidden


def test_long_running_async_service_is_stopped_by_duration_and_reported(tmp_path):
    script = tmp_path / "service.py"
    script.write_text(textwrap.dedent("""
        import asyncio
        def spin():
            return sum(i * i for i in range(2000))
        async def main():
            while True:
                spin()
                await asyncio.sleep(0)
        asyncio.run(main())
    """))
    report = tmp_path / "report.json"
    out = run(str(script), "--duration", "0.4", "--top", "50", "--json", str(report))
    assert out.returncode == 0, out.stderr
    assert "stopped after --duration 0.4s" in out.stdout
    doc = json.loads(report.read_text())
    assert doc["outcome"] == "stopped after --duration 0.4s" and doc["wall_s"] >= 0.4
    spin = next(f for f in doc["functions"] if f["function"].endswith("(spin)"))
    assert spin["calls"] >= 1 and spin["cumulative_s"] > 0


def test_module_entry_point_and_failing_target(tmp_path):
    data = tmp_path / "in.json"
    data.write_text('{"b": 1, "a": [1, 2, 3]}')
    out = run("json.tool", "--top", "5", "--", "--sort-keys", str(data))
    assert out.returncode == 0, out.stderr
    assert out.stdout.index('"a"') < out.stdout.index('"b"')   # the module really ran with its arguments
    assert "== profile of json.tool (exited)" in out.stdout
    bad = run("json.tool", "--", str(tmp_path / "missing.json"))
    assert bad.returncode == 1 and "exited with status" in bad.stdout
    missing = run(str(tmp_path / "nope.py"))
    assert missing.returncode != 0 and "not found" in missing.stderr
