"""The main job, shortened: `tidegate demo --quick` must keep working end to end.

Real nats-server, Prometheus, the five services as subprocesses, real models; the
test checks the outcome the demo reports and what the release left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import need_binary
from rich.console import Console

from tidegate.demo.run import DemoOptions, run_demo
from tidegate.release.local import ReleaseStore, list_releases

pytestmark = pytest.mark.real


@pytest.fixture(autouse=True)
def _servers() -> None:
    need_binary("nats-server")
    need_binary("prometheus")


def _run(tmp_path: Path, inject: str | None):  # type: ignore[no-untyped-def]
    console = Console(record=True, width=140, force_terminal=False)
    result = run_demo(DemoOptions(inject=inject, workdir=tmp_path, quick=True), console=console)
    return result, console.export_text()


def _status(result):  # type: ignore[no-untyped-def]
    state = result.workdir / "releases"
    [name] = list_releases(state)
    return ReleaseStore(state, name).load_status()


def test_demo_promotes_a_healthy_candidate(tmp_path: Path) -> None:
    result, out = _run(tmp_path, None)
    assert result.phase == "Promoted" and result.expected, out[-3000:]
    st = _status(result)
    assert [d.reason.split(" ")[1] for d in st.decisions if d.action in ("advance", "promote")] == \
        ["shadow", "canary", "ramp-75", "full"]
    assert result.report is not None and result.report.is_file()
    assert "entered full" in out and "release report:" in out
    manifest = json.loads((result.workdir / "registry" / "manifest.json").read_text())
    record = manifest["releases"][-1]
    assert record["outcome"] == "Promoted"
    # the release record keeps the windows the verdicts were measured over (read back from disk)
    state = result.workdir / "releases"
    [name] = list_releases(state)
    spec = ReleaseStore(state, name).load_release().spec
    assert record["evaluation_windows"]["analysis_interval_s"] == spec.analysis.interval
    assert record["evaluation_windows"]["parity_window_s"] == record["guard_rails"]["parity_window"]
    assert record["evaluation_windows"]["drift_window_s"] == record["guard_rails"]["drift_window"]
    assert record["evaluation_windows"]["stale_after_s"] == record["guard_rails"]["stale_after"] > 0


def test_demo_parity_injection_rolls_back_with_the_reason_on_screen(tmp_path: Path) -> None:
    result, out = _run(tmp_path, "parity")
    assert result.phase == "RolledBack" and "parity" in result.reason and result.expected, out[-3000:]
    st = _status(result)
    assert st.rollbackReason == "parity"
    assert "rollback (parity)" in out and "inject parity" in out
    active = (result.workdir / "registry" / "active").readlink().name
    assert active.startswith("base-")      # the previous model serves again


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    """SIGINT mid-run (twice, as an impatient user would), even with SIGINT ignored at start (a background
    job): nothing the demo started survives."""
    import signal
    import subprocess
    import sys
    import time

    exe = Path(sys.executable).parent / "tidegate"

    def as_a_background_job() -> None:
        # A shell starts `cmd &` with SIGINT ignored, and the ignore is inherited through exec: a CI
        # job run that way lost both Ctrl-Cs (Python keeps SIG_IGN and never raises KeyboardInterrupt).
        # The demo installs its own handler, so Ctrl-C must work even so.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = subprocess.Popen([str(exe), "demo", "--quick", "--workdir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=as_a_background_job)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        seen.append(line)
        if "services up" in line or time.monotonic() > deadline:
            break
    assert any("services up" in line for line in seen), "".join(seen)[-2000:]

    def started() -> list[str]:
        out = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if "pgrep" not in line]

    assert len(started()) >= 7           # nats-server, prometheus and the five services
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=90)[0]
    assert proc.returncode == 130, rest[-2000:]
    assert "every process the demo started has been stopped" in rest
    assert started() == []
