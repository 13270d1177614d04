"""Restart safety: a driver killed with SIGKILL resumes at the same stage and repeats no effect.

The driver runs as a real subprocess (``tidegate release run``), is killed in the
middle of the canary stage and started again; the registry's slot history, the
KV history and the CONTROL stream then show every effect exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from release_helpers import Exporter, control_events, make_registry, release_doc, seconds_between, unique

from tidegate.release.effects import EffectApplier, ReleaseMetrics
from tidegate.release.spec import PendingEffect

pytestmark = pytest.mark.real
TIDEGATE = [sys.executable, "-c", "from tidegate.cli import main; main()"]


def _status(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _wait(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


async def _kv_history(url: str, bucket: str) -> list[dict]:
    import nats

    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        return [json.loads(e.value) for e in await kv.history("rollout")]
    finally:
        await nc.close()


def test_sigkill_mid_stage_resumes_same_stage_and_repeats_no_effect(tmp_path: Path, prometheus, prom_slot,
                                                                     nats_server) -> None:  # type: ignore
    exporter = Exporter(prom_slot)
    try:
        prometheus.wait_up(prom_slot)
        registry = make_registry(tmp_path / "registry")
        bucket = unique("kill").replace("-", "_")
        cfg = tmp_path / "app.yml"
        cfg.write_text(yaml.safe_dump({"nats": {"url": nats_server.url, "kv_bucket": bucket},
                                       "prometheus": {"url": prometheus.url}}))
        name = unique("sigkill")
        doc = release_doc(name, prometheus_url=prometheus.url, port=prom_slot,
                          stages=[{"name": "shadow", "weight": 0, "duration": 1},
                                  {"name": "canary", "weight": 10, "duration": 6},
                                  {"name": "ramp-50", "weight": 50, "duration": 1},
                                  {"name": "full", "weight": 100}])
        rel_path = tmp_path / "release.yaml"
        rel_path.write_text(yaml.safe_dump(doc))
        state = tmp_path / "state"
        argv = [*TIDEGATE, "release", "run", str(rel_path), "--state-dir", str(state), "--config", str(cfg),
                "--registry", str(registry.root)]
        status_path = state / name / "status.json"

        first = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: _status(status_path).get("phase") == "Canary"
                  and not _status(status_path).get("pendingEffects"), 30, "canary not reached")
            time.sleep(1.5)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        before = _status(status_path)
        assert before["phase"] == "Canary" and before["stage"] == "canary"
        slot_changes_before = len(registry.manifest().slot_history)

        second = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "Promoted" in second.stdout
        after = _status(status_path)
    finally:
        exporter.close()

    # the same stage continued: one entry into canary, same stage clock, canary lasted >= 6 s in total
    entered = [d for d in after["decisions"] if d["action"] == "advance" and "entered canary" in d["reason"]]
    assert len(entered) == 1 and entered[0]["at"] == before["stageStartedAt"]
    ramp = next(d for d in after["decisions"] if d["action"] == "advance" and "entered ramp-50" in d["reason"])
    assert seconds_between(entered[0]["at"], ramp["at"]) >= 6.0
    # no effect repeated: each slot switch once, each KV state once, each MODE_SWITCH once
    history = registry.manifest().slot_history
    assert len(history) - slot_changes_before == 2  # active -> cand-1, shadow cleared
    switches = [(h.slot, h.to_id) for h in history]
    assert switches.count(("shadow", "cand-1")) == 1 and switches.count(("active", "cand-1")) == 1
    kv = asyncio.run(_kv_history(nats_server.url, bucket))
    assert [(s["mode"], s["canary_fraction"]) for s in kv] == [("disabled", 0.0), ("canary", 0.1),
                                                               ("canary", 0.5), ("full", 1.0)]
    events = asyncio.run(control_events(nats_server.url, name))
    assert [(e["from"], e["to"]) for e in events] == [("disabled", "canary"), ("canary", "full")]


def test_effects_applied_twice_change_nothing_the_second_time(tmp_path: Path, nats_server) -> None:
    import nats

    from tidegate.rollout import RolloutKV

    registry = make_registry(tmp_path / "registry")
    bucket = unique("idem").replace("-", "_")
    name = unique("idem")
    effects = [
        PendingEffect(id=f"{name}/0/1/slot", kind="slot", args={"slot": "active", "model_id": "cand-1"}),
        PendingEffect(id=f"{name}/0/2/rollout", kind="rollout",
                      args={"mode": "full", "canary_fraction": 1.0, "active_model_id": "cand-1",
                            "release": name, "revision": 3}),
        PendingEffect(id=f"{name}/0/3/mode_switch", kind="mode_switch",
                      args={"from_mode": "canary", "to_mode": "full", "reason": "promoted", "label": "promote",
                            "release": name}),
        PendingEffect(id=f"{name}/0/4/record", kind="record", args={"record": {"name": name, "model_id": "cand-1"}}),
    ]

    async def apply_all() -> list[bool]:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            applier = EffectApplier(registry=registry, kv=await RolloutKV.open(js, bucket), js=js,
                                    metrics=ReleaseMetrics())
            return [await applier.apply(e) for e in effects]
        finally:
            await nc.close()

    assert asyncio.run(apply_all()) == [True, True, True, True]
    history_len = len(registry.manifest().slot_history)
    assert asyncio.run(apply_all()) == [False, False, False, True]  # the record is an upsert by name
    assert len(registry.manifest().slot_history) == history_len
    assert [r["name"] for r in registry.manifest().releases].count(name) == 1
    assert len(asyncio.run(_kv_history(nats_server.url, bucket))) == 1
    assert len(asyncio.run(control_events(nats_server.url, name))) == 1


def test_release_sh_disable_rollout_then_rerun_with_skip_validations(tmp_path: Path, prometheus, prom_slot,
                                                                     nats_server) -> None:  # type: ignore
    exporter = Exporter(prom_slot)
    try:
        prometheus.wait_up(prom_slot)
        registry = make_registry(tmp_path / "registry")
        bucket = unique("sh").replace("-", "_")
        cfg = tmp_path / "app.yml"
        cfg.write_text(yaml.safe_dump({"nats": {"url": nats_server.url, "kv_bucket": bucket},
                                       "prometheus": {"url": prometheus.url}}))
        template = tmp_path / "template.yaml"
        doc = release_doc("template", prometheus_url=prometheus.url, port=prom_slot,
                          stages=[{"name": "shadow", "weight": 0, "duration": 1},
                                  {"name": "canary", "weight": 10, "duration": 1},
                                  {"name": "full", "weight": 100}])
        template.write_text(yaml.safe_dump(doc))
        script = Path(__file__).resolve().parents[1] / "scripts" / "release.sh"
        env = {**os.environ, "TIDEGATE": str(Path(sys.executable).parent / "tidegate")}
        base = [str(script), "--shadow-id", "cand-1", "--template", str(template), "--state-dir",
                str(tmp_path / "state"), "--config", str(cfg)]
        extra = ["--", "--registry", str(registry.root)]
        first = subprocess.run([*base, "--disable-rollout", "--skip-validations", *extra], capture_output=True,
                               text=True, timeout=60, env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        status = _status(tmp_path / "state" / "cand-1" / "status.json")
        assert status["phase"] == "Paused" and status["pauseReason"] == "rolloutDisabled"
        kv = asyncio.run(_kv_history(nats_server.url, bucket))
        assert kv[-1]["mode"] == "disabled" and registry.slot("shadow") is None
        second = subprocess.run([*base, "--skip-validations", *extra], capture_output=True, text=True,
                                timeout=60, env=env, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        status = _status(tmp_path / "state" / "cand-1" / "status.json")
        assert status["phase"] == "Promoted" and registry.slot("active") == "cand-1"
        assert sum(d["action"] == "start" for d in status["decisions"]) == 1  # the same release, resumed
    finally:
        exporter.close()
