"""Operators' hand on the live rollout state, on a real NATS server and real registered models.

- config/app.yml's ``rollout`` block: the default when nothing is stored, and ``mode: disabled``
  overrides any stored state (the runbook's halt);
- ``scripts/promote_model.py --to active`` (the seed's manual rollback) rewrites the stored
  state's active model, or exits 3 when it cannot know the live state;
- ``tidegate rollout set|show``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from tidegate.config.schema import RolloutConfig
from tidegate.infra.process import free_port
from tidegate.pipeline import train_end_to_end
from tidegate.registry import Registry
from tidegate.rollout import RolloutKV, RolloutState, config_policy, open_view
from tidegate.rollout.state import effective_state

REPO = Path(__file__).resolve().parents[1]
CANARY = RolloutState(mode="canary", canary_fraction=0.1, active_model_id="m-old", candidate_model_id="m-cand",
                      release="r1", revision=4, reason="engine: canary")


def test_effective_state_config_default_and_halt() -> None:
    none = effective_state(None, config_mode="canary", canary_fraction=0.1, rng_seed=7)
    assert (none.mode, none.canary_fraction, none.rng_seed, none.active_model_id) == ("canary", 0.1, 7, None)
    assert effective_state(None, config_mode="full", canary_fraction=0.1, rng_seed=7).canary_fraction == 0.0
    assert effective_state(None, config_mode="disabled", canary_fraction=0.1, rng_seed=7).mode == "disabled"
    halted = effective_state(CANARY, config_mode="disabled", canary_fraction=0.1, rng_seed=7)
    assert (halted.mode, halted.canary_fraction) == ("disabled", 0.0)
    # the models keep scoring (paper evidence), the stored release and revision are kept
    assert (halted.active_model_id, halted.candidate_model_id, halted.revision) == ("m-old", "m-cand", 4)
    assert "rollout.mode=disabled overrides 'canary'" in halted.reason
    # unset: the stored state, paper only before any release
    assert effective_state(CANARY, config_mode=None, canary_fraction=0.1, rng_seed=7) == CANARY
    assert effective_state(None, config_mode=None, canary_fraction=0.1, rng_seed=7) == RolloutState()
    # config canary (the shipped default) leaves a stored state alone (the release engine decides)
    assert effective_state(CANARY, config_mode="canary", canary_fraction=0.5, rng_seed=9) == CANARY
    # issue 17 item 3, the seed's "Re-enable full routing by setting rollout.mode=full": after a halt or a
    # rollback stored mode=disabled, config full routes everything to the stored active model
    rolled_back = CANARY.model_copy(update={"mode": "disabled", "canary_fraction": 0.0, "reason": "rollback"})
    for stored in (rolled_back, CANARY):
        full = effective_state(stored, config_mode="full", canary_fraction=0.5, rng_seed=9)
        assert (full.mode, full.canary_fraction, full.active_model_id) == ("full", 0.0, "m-old")
        assert f"rollout.mode=full overrides {stored.mode!r}" in full.reason
    stored_full = CANARY.model_copy(update={"mode": "full", "canary_fraction": 0.0})
    assert effective_state(stored_full, config_mode="full", canary_fraction=0.5, rng_seed=9) == stored_full


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("manual")
    reg = Registry(base / "registry")
    for mid in ("m-old", "m-new"):
        reg.register(train_end_to_end(base / mid, seconds=40, cycles=1, model_id=mid))
    return reg.root


def _config(tmp: Path, url: str, bucket: str, registry: Path, mode: str = "canary") -> Path:
    path = tmp / "app.yml"
    path.write_text(f"nats:\n  url: {url}\n  kv_bucket: {bucket}\n  connect_timeout_s: 1.0\n"
                    f"registry:\n  root: {registry}\nrollout:\n  mode: {mode}\n")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=120)


async def _kv(url: str, bucket: str, fn):  # type: ignore[no-untyped-def]
    nc = await nats.connect(url)
    try:
        return await fn(await RolloutKV.open(nc.jetstream(), bucket))
    finally:
        await nc.close()


@pytest.mark.real
def test_manual_promote_reaches_the_stored_state(nats_server, models: Path, tmp_path: Path) -> None:  # type: ignore
    registry = tmp_path / "registry"
    shutil.copytree(models, registry, symlinks=True)
    bucket = f"manual_{time.time_ns()}"
    cfg = _config(tmp_path, nats_server.url, bucket, registry)
    frozen = CANARY.model_copy(update={"tau_entry": 0.2, "tau_hold": 0.15})   # frozen for m-old's release
    asyncio.run(_kv(nats_server.url, bucket, lambda s: s.put(frozen)))
    promote = ("scripts/promote_model.py", "--to", "active", "--registry", str(registry), "--config", str(cfg))

    r = _run(*promote, "--id", "m-new")
    assert r.returncode == 0, r.stderr
    assert "live rollout state: active m-old -> m-new (revision 5)" in r.stdout
    stored = asyncio.run(_kv(nats_server.url, bucket, lambda s: s.get()))
    assert stored.active_model_id == "m-new" and stored.revision == 5 and stored.reason.startswith("manual:")
    # issue 17 item 2: the model serves with its own thresholds, not the ones frozen for the replaced model
    own = Registry(registry).metadata("m-new").thresholds
    assert (stored.tau_entry, stored.tau_hold) == (own.tau_entry, own.tau_hold) != (0.2, 0.15)
    # routing is untouched: mode, fraction, candidate and release stay the engine's
    keep = {"active_model_id", "revision", "reason", "tau_entry", "tau_hold"}
    assert stored.model_dump(exclude=keep) == CANARY.model_dump(exclude=keep)
    assert Registry(registry).slot("active") == "m-new"

    r = _run(*promote, "--id", "m-new")  # again: nothing to write
    assert r.returncode == 0 and "already names m-new" in r.stdout
    history = asyncio.run(_kv(nats_server.url, bucket, lambda s: s.kv.history("rollout")))
    assert len(history) == 2

    # NATS unreachable: the registry link moves, the live state is unknown -> exit 3, said plainly
    (tmp_path / "dead").mkdir()
    dead = _config(tmp_path / "dead", f"nats://127.0.0.1:{free_port()}", bucket, registry)
    r = _run("scripts/promote_model.py", "--to", "active", "--registry", str(registry), "--config", str(dead),
             "--id", "m-old")
    assert r.returncode == 3 and "live rollout state NOT checked" in r.stderr and "--active-id m-old" in r.stderr
    assert Registry(registry).slot("active") == "m-old"
    r = _run("scripts/promote_model.py", "--to", "active", "--registry", str(registry), "--config", str(dead),
             "--id", "m-new", "--registry-only")
    assert r.returncode == 0 and "live rollout state" not in r.stdout + r.stderr


@pytest.mark.real
def test_rollout_set_and_show_and_the_services_view(nats_server, models: Path, tmp_path: Path) -> None:  # type: ignore
    bucket = f"manual_{time.time_ns()}"
    cfg = _config(tmp_path, nats_server.url, bucket, models)
    tg = ("-m", "tidegate.cli", "rollout")

    async def views() -> tuple[RolloutState, RolloutState, RolloutState]:
        nc = await nats.connect(nats_server.url)
        try:
            empty = await open_view(nc, bucket, policy=config_policy(RolloutConfig(mode="canary",
                                                                                   canary_fraction=0.2)))
            first = empty.state
            await empty.stop()
            await (await RolloutKV.open(nc.jetstream(), bucket)).put(CANARY)
            halted = await open_view(nc, bucket, policy=config_policy(RolloutConfig(mode="disabled")))
            following = await open_view(nc, bucket, policy=config_policy(RolloutConfig(mode="canary")))
            states = (first, halted.state, following.state)
            await halted.stop()
            await following.stop()
            return states
        finally:
            await nc.close()

    first, halted, following = asyncio.run(views())
    assert (first.mode, first.canary_fraction) == ("canary", 0.2)  # nothing stored: the config decides
    assert halted.mode == "disabled" and halted.active_model_id == "m-old"
    assert following == CANARY

    r = _run(*tg, "set", "--config", str(cfg), "--mode", "disabled", "--reason", "volatility halt")
    assert r.returncode == 0, r.stderr
    assert "mode: canary -> disabled" in r.stdout and "revision 5" in r.stdout
    shown = json.loads(_run(*tg, "show", "--config", str(cfg)).stdout)
    assert shown["stored"]["mode"] == "disabled" and shown["stored"]["reason"] == "manual: volatility halt"
    assert shown["effective"]["mode"] == "disabled" and shown["stored"]["candidate_model_id"] == "m-cand"

    r = _run(*tg, "set", "--config", str(cfg), "--active-id", "nope", "--reason", "x")
    assert r.returncode == 2 and "'nope' is not in the registry" in r.stderr
    r = _run(*tg, "set", "--config", str(cfg), "--reason", "x")
    assert r.returncode == 2 and "nothing to change" in r.stderr
    r = _run(*tg, "set", "--config", str(cfg), "--active-id", "m-new", "--reason", "manual rollback")
    assert r.returncode == 0 and "active_model_id: m-old -> m-new" in r.stdout
