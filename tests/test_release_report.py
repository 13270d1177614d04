"""The release report: timeline maths on a real engine decision log, and the page in headless Chromium.

Given a release the real engine walked through shadow -> canary -> ramp with
PASS, INSUFFICIENT, UNAVAILABLE and FAIL verdicts ending in a rollback (saved in
the local driver's state layout), when ``tidegate release report`` renders it,
then the stage timeline matches the decision log to the millisecond and every
chart image decodes in a real browser. With ``--prometheus`` the gate lines come
from range queries against a real Prometheus scraping the series the gates saw.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import re
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import need_binary
from prometheus_client import Gauge
from release_helpers import Exporter, make_registry, release_doc, unique

from tidegate.cli import main
from tidegate.metrics import spec as metric_spec
from tidegate.release.decision import Facts
from tidegate.release.engine import decide
from tidegate.release.gates import gates_for_stage
from tidegate.release.local import LocalDriver, ReleaseStore
from tidegate.release.prometheus import PrometheusProvider
from tidegate.release.spec import ModelRelease, ReleaseStatus, effective_limits, parse_release
from tidegate.release.verdicts import GateVerdict, Verdict
from tidegate.report.sources import from_state_dir

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
STAGES = [{"name": "shadow", "weight": 0, "duration": 60},
          {"name": "canary", "weight": 10, "duration": 60, "maxDuration": 600},
          {"name": "ramp-25", "weight": 25, "duration": 60},
          {"name": "ramp-50", "weight": 50, "duration": 60},
          {"name": "full", "weight": 100}]
THRESH = {"psi": 0.3, "ks": 0.2, "fill_rate": 0.25, "markout": 0.0, "ece": 0.05, "parity": 0.0}


def _scripted_verdicts(st: ReleaseStatus, now: dt.datetime, limits) -> list[GateVerdict]:  # type: ignore[no-untyped-def]
    """What Prometheus 'said' at each tick: sample grows per stage, an outage in ramp-25, a win-rate drop
    in ramp-50."""
    if st.stageIndex < 0:
        return []
    in_stage = (now - dt.datetime.fromisoformat(st.stageStartedAt)).total_seconds()  # type: ignore[arg-type]
    sample = min(600.0, 10.0 * in_stage)
    out = []
    for g in gates_for_stage(st.weight, limits):
        if st.stage == "ramp-25" and 20 <= in_stage < 35 and g in ("psi", "ks"):
            out.append(GateVerdict(g, Verdict.UNAVAILABLE, None, None, None, "q", "value: no data (empty result)"))
            continue
        if g == "winrate":
            wr = 0.56 - (0.004 * max(0.0, in_stage - 20) if st.stage == "ramp-50" else 0.0)
            th = 0.55 - 0.05
            v = Verdict.INSUFFICIENT if sample < 200 else (Verdict.FAIL if wr < th else Verdict.PASS)
            out.append(GateVerdict(g, v, wr, sample, th, "q", f"winrate {v}"))
            continue
        value = {"psi": 0.05 + in_stage / 2000, "ks": 0.04, "fill_rate": 0.41, "markout": 1.3, "ece": 0.021,
                 "parity": 0.0}[g]
        needs_sample = g in ("fill_rate", "markout", "ece")
        v = Verdict.INSUFFICIENT if needs_sample and sample < 200 else Verdict.PASS
        out.append(GateVerdict(g, v, value, sample if needs_sample else None, THRESH[g], "q", f"{g} {v}"))
    return out


def engine_release(state_dir: Path, name: str = "lgbm-20260302") -> tuple[ModelRelease, ReleaseStatus]:
    """Walk the real engine tick by tick (5 s apart) and save what the local driver would have saved."""
    rel = parse_release({"apiVersion": "tidegate.dev/v1alpha1", "kind": "ModelRelease", "metadata": {"name": name},
                         "spec": {"modelId": "lgbm-20260302-01", "previousModelId": "lgbm-20260215-02",
                                  "validations": {"skip": True}, "stages": STAGES, "analysis": {"interval": 5},
                                  "cooldown": 60}})
    limits = effective_limits(rel.spec)
    st: ReleaseStatus | None = None
    now = T0
    for _ in range(400):
        verdicts = _scripted_verdicts(st, now, limits) if st is not None else []
        st = decide(rel, st, verdicts, now, limits=limits, facts=Facts(active_model_id="lgbm-20260215-02")).status
        st.pendingEffects = []   # applied (there is no world to apply them to here)
        if st.phase in ("RolledBack", "Promoted"):
            break
        now += dt.timedelta(seconds=5)
    assert st is not None and st.phase == "RolledBack", st
    store = ReleaseStore(state_dir, name)
    store.save_release(rel)
    store.save_status(st)
    return rel, st


def chromium_probe(html: Path, tmp: Path) -> str:
    """Load a copy of the page in headless Chromium with a probe that writes each image's decoded size into
    the DOM; return the dumped DOM. The probe lives only in the copy: the report itself has no script."""
    binary = need_binary("chromium")
    probe = ('<script>window.addEventListener("load",function(){document.querySelectorAll("img").forEach('
             'function(i){i.setAttribute("data-natural",i.naturalWidth+"x"+i.naturalHeight);'
             'i.setAttribute("data-complete",i.complete?"1":"0");i.removeAttribute("src");});'
             'document.body.setAttribute("data-probed",String(document.images.length));});</script>')
    copy = tmp / "probe.html"
    copy.write_text(html.read_text().replace("</body>", probe + "</body>"))
    proc = subprocess.run(
        [str(binary), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=5000", "--dump-dom",
         copy.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def assert_charts_decoded(dom: str) -> dict[str, tuple[int, int]]:
    assert 'data-probed="4"' in dom, "the probe did not run, or the page does not hold exactly 4 images"
    sizes = {}
    for tag in re.findall(r"<img [^>]*>", dom):
        chart = re.search(r'data-chart="(\w+)"', tag).group(1)  # type: ignore[union-attr]
        w, h = map(int, re.search(r'data-natural="(\d+)x(\d+)"', tag).groups())  # type: ignore[union-attr]
        assert 'data-complete="1"' in tag and w > 300 and h > 150, (chart, w, h)
        sizes[chart] = (w, h)
    assert set(sizes) == {"timeline", "winrate", "gates", "scores"}
    return sizes


def png_images(html: str) -> dict[str, object]:
    import matplotlib.image as mpimg

    out = {}
    for chart, b64 in re.findall(r'data-chart="(\w+)"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        out[chart] = mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png")
    return out


# -- pure: the timeline rebuilt from a real decision log ------------------------------------------


def test_timeline_and_gate_tracks_are_rebuilt_from_the_decision_log(tmp_path: Path) -> None:
    rel, st = engine_release(tmp_path)
    data, _, limits = from_state_dir(tmp_path, rel.name, now=T0 + dt.timedelta(hours=1))
    assert [(s.name, s.weight) for s in data.spans] == [("shadow", 0), ("canary", 10), ("ramp-25", 25),
                                                        ("ramp-50", 50)]
    enter = {d.stage: dt.datetime.fromisoformat(d.at) for d in st.decisions if d.action == "advance"}
    for a, b in zip(data.spans, data.spans[1:], strict=False):
        assert a.start == enter[a.name] and a.end == b.start
    rollback = next(d for d in st.decisions if d.action == "rollback")
    assert data.spans[-1].end == dt.datetime.fromisoformat(rollback.at) == data.finished_at
    assert data.phase == "RolledBack" and data.rollback_reason == "winrate"
    # canary waited for samples (INSUFFICIENT), then passed; ramp-25 held on an outage; ramp-50 failed
    winrate = next(t for t in data.gates if t.gate == "winrate")
    verdicts = [(m.stage, m.verdict) for m in winrate.observations]
    assert ("canary", "INSUFFICIENT") in verdicts and ("canary", "PASS") in verdicts
    assert verdicts[-1] == ("ramp-50", "FAIL")
    assert any(m.action == "hold" and m.stage == "ramp-25" for m in data.marks)
    psi = next(t for t in data.gates if t.gate == "psi")
    assert ("ramp-25", "UNAVAILABLE") in [(m.stage, m.verdict) for m in psi.observations]
    assert psi.threshold.values and set(psi.threshold.values) == {0.3}
    # win rate from the gate rows: baseline = threshold + winrateDeltaPP/100
    assert data.winrate_source == "decisions"
    assert data.winrate["canary"].values[-1] == pytest.approx(winrate.observations[-1].value)
    assert set(round(v, 9) for v in data.baseline.values) == {0.55}
    assert limits.winrate_delta_pp == 5.0


# -- the page in a real browser ---------------------------------------------------------------------


def test_report_from_the_state_dir_alone_renders_every_chart_in_chromium(tmp_path: Path) -> None:
    rel, st = engine_release(tmp_path / "state")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["release", "report", rel.name, "--state-dir", str(tmp_path / "state"),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report written: {out.resolve()}" in result.output
    page = out.read_text()
    assert 'id="phase">RolledBack<' in page and "<td>winrate</td>" in page
    assert page.count("<tr><td>2026-03-02T") == len(st.decisions)   # the whole decision log is listed
    assert "<script" not in page and "http://" not in page and "https://" not in page   # self-contained
    for chart, img in png_images(page).items():
        assert img.std() > 0.05, f"{chart} chart is blank"
    sizes = assert_charts_decoded(chromium_probe(out, tmp_path))
    assert sizes["gates"][1] > sizes["timeline"][1]   # one panel per gate


def test_report_of_an_unknown_release_names_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["release", "report", "nope", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2 and "no release named 'nope'" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prometheus_outage_leaves_the_decision_log_charts(tmp_path: Path) -> None:
    rel, _ = engine_release(tmp_path)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["release", "report", rel.name, "--state-dir", str(tmp_path), "--out",
                                       str(out), "--prometheus", f"http://127.0.0.1:{_free_port()}"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "range queries failed; decision-log values are shown instead" in page
    assert "gates: decisions;" in page and "win rate: decisions" in page


# -- with a real Prometheus: a real local-driver run, then range data -------------------------------


@pytest.mark.real
def test_report_with_prometheus_range_data_from_a_real_release_run(tmp_path: Path, prometheus, prom_slot) -> None:  # type: ignore[no-untyped-def]
    exporter = Exporter(prom_slot)
    extra = {}
    for name in ("winrate_rolling", "model_score_distribution", "shadow_score_distribution"):
        s = metric_spec(name)
        extra[name] = Gauge(s.client_name, s.help, s.labels, registry=exporter.registry)
    try:
        prometheus.wait_up(prom_slot)
        exporter.set(sample_canary=50)     # canary starts with too few trades: INSUFFICIENT
        name = unique("report")
        # ramp-50 lasts long enough for the drop to become evidence over the attempt's counts
        stages = [{"name": "shadow", "weight": 0, "duration": 1},
                  {"name": "canary", "weight": 10, "duration": 2, "maxDuration": 30},
                  {"name": "ramp-25", "weight": 25, "duration": 1},
                  {"name": "ramp-50", "weight": 50, "duration": 40},
                  {"name": "full", "weight": 100}]
        rel = parse_release(release_doc(name, prometheus_url=prometheus.url, port=prom_slot, stages=stages))
        state = tmp_path / "state"
        registry = make_registry(tmp_path / "registry", ("old-1", "cand-1"))
        driver = LocalDriver(rel, state_dir=state, registry=registry, provider=PrometheusProvider(prometheus.url),
                             nats_url=None)

        async def script() -> None:
            canary_at = None
            t = 0.0
            while True:
                stage = driver.status.stage if driver.status else ""
                extra["winrate_rolling"].labels(route="paper").set(0.55 + 0.01 * ((t * 3) % 2))
                extra["winrate_rolling"].labels(route="canary").set(0.40 if stage == "ramp-50" else 0.56)
                for metric, base in (("model_score_distribution", 0.55), ("shadow_score_distribution", 0.6)):
                    for stat, off in (("p10", -0.2), ("p50", 0.0), ("p90", 0.2), ("mean", 0.01), ("std", 0.12)):
                        value = 0.12 if stat == "std" else base + off + 0.01 * (t % 1)
                        extra[metric].labels(split="online", stat=stat).set(value)
                if stage == "canary" and canary_at is None:
                    canary_at = t
                if canary_at is not None and t - canary_at > 1.5:
                    exporter.set(sample_canary=500)
                if stage == "ramp-50":
                    exporter.set(winrate_canary=0.40)
                await asyncio.sleep(0.1)
                t += 0.1

        async def run() -> ReleaseStatus:
            task = asyncio.create_task(script())
            try:
                return await asyncio.wait_for(driver.run(), timeout=60)
            finally:
                task.cancel()

        status = asyncio.run(run())
        assert status.phase == "RolledBack" and status.rollbackReason == "winrate"
        assert any(d.verdict == "INSUFFICIENT" and d.stage == "canary" for d in status.decisions)
        out = tmp_path / "report.html"
        result = CliRunner().invoke(main, ["release", "report", name, "--state-dir", str(state), "--out", str(out),
                                           "--prometheus", prometheus.url])
        assert result.exit_code == 0, result.output
        data, _, limits = from_state_dir(state, name)
        from tidegate.report.sources import add_prometheus, prometheus_client

        dense = add_prometheus(data, limits, prometheus_client(prometheus.url))
        winrate = next(t for t in dense.gates if t.gate == "winrate")
        assert winrate.source == "prometheus", dense.notes
        assert len(winrate.value.times) > len(winrate.observations)
        assert min(winrate.value.values) == pytest.approx(0.40) and max(winrate.value.values) == pytest.approx(0.56)
        assert {round(v, 9) for v in winrate.threshold.values} == {0.50}      # baseline 0.55 - 5pp
        assert set(dense.winrate) >= {"paper", "canary"} and dense.winrate_source == "prometheus"
        assert {s.label.split(" ")[0] for s in dense.scores} == {"active", "shadow"}
        assert dense.scores[1].latest()["p50"] == pytest.approx(0.6, abs=0.011)
        page = out.read_text()
        assert "gates: prometheus;" in page and "scores: prometheus" in page
        assert_charts_decoded(chromium_probe(out, tmp_path))
    finally:
        exporter.close()
