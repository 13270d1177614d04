"""The local driver: run a ModelRelease with no cluster, state in a directory.

Layout (default ``.tidegate/releases``)::

    <state-dir>/<name>/release.yaml     the document being run (same as the CR)
    <state-dir>/<name>/status.json      ReleaseStatus, written atomically after every decision
    <state-dir>/<name>/commands/*.json  queued manual commands (promote/abort/pause/resume/retry)
    <state-dir>/<name>/driver.lock      flock held by the running driver
    <state-dir>/cooldown.json           the last rollback's cooldown, shared by all releases

Each tick: apply effects left pending by a crash, take the next command, query
the gates, call the pure engine, save the status *with its new pending effects*,
then apply them one by one, clearing each after it is applied. A SIGKILL at any
point leaves a status.json that is either before or after a decision; restarting
resumes at the same stage (the stage clock is a wall-clock timestamp) and the
idempotent effects make any replay a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import nats
import yaml

from tidegate.atomic import atomic_write_json, atomic_write_text
from tidegate.config.schema import AppConfig
from tidegate.registry import Registry
from tidegate.release.decision import Command, Decision, Facts, ValidationOutcome
from tidegate.release.effects import EffectApplier, EffectError, ReleaseMetrics
from tidegate.release.engine import decide
from tidegate.release.gates import GateContext, Query, gates_for_stage
from tidegate.release.prometheus import GateProvider, PrometheusProvider
from tidegate.release.spec import (
    TERMINAL_PHASES,
    ModelRelease,
    ReleaseSpec,
    ReleaseStatus,
    SpecError,
    effective_limits,
    parse_release,
)
from tidegate.release.transitions import iso, parse_time, set_condition
from tidegate.release.validation import DEFAULT_CHECKS, Check, ValidationContext, run_checks
from tidegate.release.verdicts import GateVerdict
from tidegate.rollout.kv import RolloutKV

log = logging.getLogger(__name__)
DEFAULT_STATE_DIR = Path(".tidegate/releases")
STAGE_PHASES = ("Shadow", "Canary", "Ramping", "Paused")


def prometheus_timeout(spec_timeout: float | None, app: AppConfig) -> float:
    """The per-query timeout: the release's ``analysis.prometheus.timeout`` when it sets one, else
    config's ``prometheus.timeout_s`` (so the config key owns the default, as ``prometheus.url`` does)."""
    return spec_timeout if spec_timeout is not None else app.prometheus.timeout_s


def follows(spec: ReleaseSpec, follow: bool | None) -> bool:
    """Keep driving after promotion? ``--follow``/``--no-follow`` when given, else when the release's
    thresholds tune adaptively (release.sh passes neither, and the thresholds must still step)."""
    return spec.thresholds.adaptive.enabled if follow is None else follow


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DriverBusy(RuntimeError):
    """Another driver holds the release's lock."""


class ReleaseStore:
    """The files of one release in the state directory."""

    def __init__(self, state_dir: Path, name: str):
        self.state_dir = Path(state_dir)
        self.name = name
        self.dir = self.state_dir / name
        self.spec_path = self.dir / "release.yaml"
        self.status_path = self.dir / "status.json"
        self.commands_dir = self.dir / "commands"
        self.lock_path = self.dir / "driver.lock"

    def exists(self) -> bool:
        return self.spec_path.is_file()

    def load_release(self) -> ModelRelease:
        return parse_release(yaml.safe_load(self.spec_path.read_text()))

    def save_release(self, release: ModelRelease) -> None:
        doc = release.model_dump(mode="json", exclude_none=True, exclude={"status"})
        atomic_write_text(self.spec_path, yaml.safe_dump(doc, sort_keys=False))

    def load_status(self) -> ReleaseStatus | None:
        if not self.status_path.is_file():
            return None
        return ReleaseStatus.model_validate(json.loads(self.status_path.read_text()))

    def save_status(self, status: ReleaseStatus) -> None:
        atomic_write_json(self.status_path, status.document())

    def enqueue(self, command: Command) -> str:
        cid = f"{time.time_ns():020d}-{command.kind}"
        atomic_write_json(self.commands_dir / f"{cid}.json",
                          {"kind": command.kind, "force": command.force, "full": command.full,
                           "reason": command.reason, "at": iso(utcnow())})
        return cid

    def commands_after(self, last: str | None) -> list[tuple[str, Command]]:
        if not self.commands_dir.is_dir():
            return []
        out = []
        for path in sorted(self.commands_dir.glob("*.json")):
            cid = path.stem
            if last is not None and cid <= last:
                continue
            try:
                doc = json.loads(path.read_text())
                out.append((cid, Command(kind=doc["kind"], force=bool(doc.get("force")),
                                         full=bool(doc.get("full")), reason=str(doc.get("reason", "")))))
            except (OSError, ValueError, KeyError) as exc:
                log.error("ignoring unreadable command %s: %s", path, exc)
        return out

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DriverBusy(f"release {self.name!r} is already being run by another driver "
                                 f"({self.lock_path})") from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)

    def read_cooldown(self) -> dict | None:
        """The last rollback's cooldown ({release, until, reason}), shared by all releases."""
        path = _cooldown_path(self.state_dir)
        if not path.is_file():
            return None
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return None

    def write_cooldown(self, record: dict) -> None:
        atomic_write_json(_cooldown_path(self.state_dir), record)

    def locked(self) -> bool:
        """True while some driver runs this release."""
        if not self.lock_path.exists():
            return False
        fd = os.open(self.lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


def list_releases(state_dir: Path) -> list[str]:
    d = Path(state_dir)
    return sorted(p.name for p in d.iterdir() if (p / "release.yaml").is_file()) if d.is_dir() else []


def _cooldown_path(state_dir: Path) -> Path:
    return Path(state_dir) / "cooldown.json"


class LocalDriver:
    def __init__(self, release: ModelRelease, *, state_dir: Path = DEFAULT_STATE_DIR, app: AppConfig | None = None,
                 registry: Registry | None = None, provider: GateProvider | None = None,
                 nats_url: str | None = None, kv_bucket: str | None = None,
                 checks: Sequence[Check] = DEFAULT_CHECKS, metrics: ReleaseMetrics | None = None,
                 repo_root: Path = Path("."), clock: Callable[[], dt.datetime] = utcnow,
                 store: ReleaseStore | None = None):
        self.app = app or AppConfig()
        self.store = store if store is not None else ReleaseStore(state_dir, release.name)
        self.release = self._adopt(release)
        self.limits = effective_limits(self.release.spec, self.app.rollout_guard)
        self.registry = registry
        prom = self.release.spec.analysis.prometheus
        self.provider = provider if provider is not None else PrometheusProvider(
            prom.url or self.app.prometheus.url, timeout=prometheus_timeout(prom.timeout, self.app))
        self.nats_url = nats_url
        self.kv_bucket = kv_bucket or self.app.nats.kv_bucket
        self.checks = checks
        self.metrics = metrics or ReleaseMetrics()
        self.repo_root = Path(repo_root)
        self.clock = clock
        self.status: ReleaseStatus | None = self.store.load_status()
        self.kv: RolloutKV | None = None
        self.nc: nats.NATS | None = None
        self.applier = EffectApplier(registry=registry, kv=None, js=None, metrics=self.metrics)
        self.last_verdicts: list[GateVerdict] = []

    def _adopt(self, release: ModelRelease) -> ModelRelease:
        """Store the document; refuse to switch the model of a release already under way."""
        if self.store.exists():
            old = self.store.load_release()
            status = self.store.load_status()
            if old.spec.modelId != release.spec.modelId and status is not None \
                    and status.phase not in ("Pending",):
                raise SpecError(f"release {release.name!r} is already running model {old.spec.modelId!r}; "
                                f"spec.modelId {release.spec.modelId!r} needs a new release name")
        self.store.save_release(release)
        return release

    # -- connections -----------------------------------------------------------------------
    async def connect(self) -> None:
        if self.nats_url is None:
            return
        self.nc = await nats.connect(self.nats_url, connect_timeout=self.app.nats.connect_timeout_s,
                                     max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        js = self.nc.jetstream()
        self.kv = await RolloutKV.open(js, self.kv_bucket)
        self.applier.kv, self.applier.js = self.kv, js

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            self.nc = None
        close = getattr(self.provider, "close", None)
        if close is not None:
            close()

    # -- one tick --------------------------------------------------------------------------
    def _save(self) -> None:
        assert self.status is not None
        self.store.save_status(self.status)

    async def drain_effects(self) -> bool:
        """Apply pending effects in order; False if one failed (it stays pending for the next tick).

        The phase is written before its effects apply (write-ahead), so while one fails the status
        carries ``EffectsApplied=False`` naming the effect and the error: a phase is never claimed
        silently when what it means (a registry slot, the routing) has not happened."""
        st = self.status
        while st is not None and st.pendingEffects:
            effect = st.pendingEffects[0]
            try:
                await self.applier.apply(effect)
            except (EffectError, nats.errors.Error, TimeoutError, OSError) as exc:
                log.error("effect %s failed, will retry: %s", effect.id, exc)
                msg = f"effect {effect.id} ({effect.kind} {effect.args}) of phase {st.phase} pending: {exc}"
                if not any(c.type == "EffectsApplied" and c.message == msg for c in st.conditions):
                    set_condition(st, "EffectsApplied", "False", "EffectFailed", msg, iso(self.clock()))
                    self._save()
                return False
            st.pendingEffects.pop(0)
            if not st.pendingEffects and any(c.type == "EffectsApplied" for c in st.conditions):
                set_condition(st, "EffectsApplied", "True", "Applied", f"every effect of phase {st.phase} applied",
                              iso(self.clock()))
            self._save()
        return True

    def _facts(self) -> Facts:
        spec = self.release.spec
        active = self.registry.slot("active") if self.registry is not None else None
        tau: tuple[float | None, float | None] = (None, None)
        if self.registry is not None and self.registry.has(spec.modelId):
            t = self.registry.metadata(spec.modelId).thresholds
            tau = (t.tau_entry, t.tau_hold)
        cooldown = None
        doc = self.store.read_cooldown()
        if doc and doc.get("release") != self.release.name and doc.get("until"):
            with contextlib.suppress(ValueError, TypeError):
                cooldown = parse_time(doc["until"])
        missing = None
        if self.registry is not None:
            named = (("spec.modelId", spec.modelId), ("spec.previousModelId", spec.previousModelId))
            missing = tuple((f, m) for f, m in named if m and not self.registry.has(m))
        return Facts(active_model_id=active, rng_seed=self.app.rollout.rng_seed, candidate_tau=tau,
                     cooldown_until=cooldown, missing_models=missing)

    def gate_context(self, st: ReleaseStatus) -> GateContext:
        """This attempt's evidence: the candidate's canary trades and the replaced model's, since the canary began."""
        since = None
        if st.canaryStartedAt is not None:
            since = max(0.0, (self.clock() - parse_time(st.canaryStartedAt)).total_seconds())
        attempt = None
        if st.startedAt is not None:
            attempt = max(0.0, (self.clock() - parse_time(st.startedAt)).total_seconds())
        return GateContext(candidate=self.release.spec.modelId, active=st.previousModelId, since_s=since,
                           attempt_s=attempt)

    async def _observe(self) -> tuple[list[GateVerdict], ValidationOutcome | None, Facts]:
        st = self.status or ReleaseStatus()
        facts = self._facts()
        if self.kv is not None and st.phase == "Pending":
            current = await self.kv.get()
            facts = Facts(**{**facts.__dict__, "rollout_mode": current.mode if current else "disabled"})
        verdicts: list[GateVerdict] = []
        if st.phase in STAGE_PHASES and st.stageIndex >= 0:
            gates = gates_for_stage(st.weight, self.limits)
            verdicts = await asyncio.to_thread(self.provider.evaluate, gates, self.limits, self.gate_context(st))
        validation = None
        if st.phase == "Validating" and not self.release.spec.validations.skip:
            ctx = ValidationContext(model_id=self.release.spec.modelId,
                                    registry=self.registry or Registry(self.app.registry.root),
                                    repo_root=self.repo_root, parquet_dir=self.repo_root / self.app.data.parquet_dir,
                                    benchmark_model_id=st.previousModelId,
                                    first_release=self.release.spec.validations.firstRelease)
            validation = await asyncio.to_thread(run_checks, ctx, self.checks,
                                                 require_all=self.release.spec.validations.requireAll)
        if st.phase == "Promoted" and self.release.spec.thresholds.adaptive.enabled:
            fetch = getattr(self.provider, "fetch", None)
            if fetch is not None:
                q = Query("precision", 'min(rolling_precision{route="full"})',
                          'time() - max(timestamp(rolling_precision{route="full"}))')
                s = await asyncio.to_thread(fetch, q)
                ok = s.value is not None and s.error is None and s.age is not None \
                    and s.age <= self.limits.stale_after
                facts = Facts(**{**facts.__dict__, "precision": s.value if ok else None})
        return verdicts, validation, facts

    async def tick(self) -> Decision:
        await self.drain_effects()
        last = self.status.lastCommand if self.status else None
        queued = self.store.commands_after(last)
        cid, command = queued[0] if queued else (None, None)
        verdicts, validation, facts = await self._observe()
        self.last_verdicts = verdicts
        decision = decide(self.release, self.status, verdicts, self.clock(), limits=self.limits, facts=facts,
                          command=command, validation=validation)
        new = decision.status
        if cid is not None:
            new.lastCommand = cid
        self.metrics.gate_evaluations(verdicts)
        if new != self.status:
            self.status = new
            self._save()
        await self.drain_effects()
        if decision.action == "rollback":
            self.store.write_cooldown({"release": self.release.name, "until": new.cooldownUntil,
                                       "reason": new.rollbackReason})
        active = self.registry.slot("active") if self.registry is not None else None
        self.metrics.export_status(self.release, new, active)
        return decision

    # -- the loop --------------------------------------------------------------------------
    def finished(self, *, follow: bool) -> bool:
        st = self.status
        if st is None or st.pendingEffects:
            return False
        if st.phase == "Paused" and st.pauseReason == "rolloutDisabled" and not self.release.spec.rollout.enabled:
            return True
        if st.phase == "Promoted" and follow and self.release.spec.thresholds.adaptive.enabled:
            return False
        return st.phase in TERMINAL_PHASES and not self.store.commands_after(st.lastCommand)

    async def run(self, *, once: bool = False, follow: bool = False,
                  stop: asyncio.Event | None = None) -> ReleaseStatus:
        stop = stop or asyncio.Event()
        with self.store.lock():
            await self.connect()
            try:
                while not stop.is_set():
                    decision = await self.tick()
                    if once or self.finished(follow=follow):
                        break
                    if decision.action in ("start", "advance", "retry", "resume") and not decision.effects:
                        continue
                    await self._sleep(self.release.spec.analysis.interval, stop)
            finally:
                await self.close()
        assert self.status is not None
        return self.status

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        """Sleep one analysis interval, waking early for a new command or a stop."""
        deadline = time.monotonic() + seconds
        last = self.status.lastCommand if self.status else None
        while (remaining := deadline - time.monotonic()) > 0 and not stop.is_set():
            if self.store.commands_after(last):
                return
            await asyncio.sleep(min(0.05, remaining))
