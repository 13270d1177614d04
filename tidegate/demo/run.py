"""Run the demo: stack up, models trained, checklist, compressed release with live view, report.

The release is driven by the same LocalDriver as ``tidegate release run``, ticked
here so the terminal can be redrawn between ticks and faults injected at the
right stage. Whatever happens -- success, exception, Ctrl-C, SIGTERM -- every
process the demo started is stopped before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live

from tidegate.config import load_config
from tidegate.demo.models import (
    SYNTHETIC_REGIME,
    SYNTHETIC_SECONDS,
    register_pair,
    swap_reference_model,
    train_pair,
    training_table,
)
from tidegate.demo.progress import ProgressView
from tidegate.demo.scenario import EXPECT, QUICK, Timings, release_document
from tidegate.demo.stack import REPO, Stack
from tidegate.registry import Registry
from tidegate.release.local import LocalDriver
from tidegate.release.spec import TERMINAL_PHASES, ReleaseStatus, parse_release
from tidegate.release.validation import (
    ValidationContext,
    check_artifact,
    check_feature_schema,
    check_onnx_parity,
    run_checks,
)

MARKET = "binance_usdm_btcusdt"   # the recording the collector replays; the models learn from the same market


@dataclass
class DemoOptions:
    inject: str | None = None
    workdir: Path = Path(".tidegate/demo")
    quick: bool = False
    speed: float | None = None        # None: the scenario's replay speed
    capture_dir: Path | None = None


@dataclass
class DemoResult:
    phase: str                 # Promoted | RolledBack | Held | Failed | ...
    reason: str
    expected: bool
    report: Path | None
    workdir: Path
    seconds: float


class Interrupts:
    """Ctrl-C and SIGTERM, remembered as well as raised.

    Python delivers a signal as a KeyboardInterrupt raised wherever the main thread happens to
    be, and some places swallow it: a finaliser or callback ("Exception ignored in ..."), or a
    library that catches BaseException around I/O. In a CI run two SIGINTs during start-up were
    lost that way and the demo went on into the release. So the handler also sets a flag, and
    the demo checks it at every step boundary (``checkpoint``): an interrupt can be delayed by
    one step, never lost. Installing a handler of our own also keeps ``asyncio.run`` from
    replacing it with its cancel-the-task handler.
    """

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        self.event.clear()   # a new run: an interrupt of an earlier in-process run is not this one's
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):   # not the main thread (tests): handling stays default
                signal.signal(sig, self.handler)

    def handler(self, signum: int, frame: object) -> None:
        self.event.set()
        raise KeyboardInterrupt

    def checkpoint(self) -> None:
        """Raise the interrupt that arrived, even if the KeyboardInterrupt it raised was swallowed."""
        if self.event.is_set():
            raise KeyboardInterrupt


INTERRUPTS = Interrupts()


def run_demo(opts: DemoOptions, console: Console | None = None) -> DemoResult:
    console = console or Console()
    t0 = time.monotonic()
    timings = QUICK if opts.quick else Timings()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = (opts.workdir / f"{stamp}{'-' + opts.inject if opts.inject else ''}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    app = load_config(REPO / "config" / "app.yml")
    capture = opts.capture_dir if opts.capture_dir is not None else (REPO / app.data.capture_dir)
    registry = Registry(work / "registry")
    speed = opts.speed or timings.speed
    stack = Stack(work / "stack", {
        "registry": {"root": str(registry.root)},
        "executor": {"warmup_seconds": 3},
        "collector": {"speed": speed, "source": "auto", "loop": True, "synthetic_seconds": SYNTHETIC_SECONDS,
                      "synthetic_regime": SYNTHETIC_REGIME},
        # PSI over the whole replay so far, not the last minute: a minute of one market is
        # legitimately unlike six (volatility clusters), and the gate would read that as drift.
        "risk": {"publish_interval": 1.0, "window_candidates": 8000},
        "data": {"parquet_dir": str(work / "parquet"), "capture_dir": str(Path(capture).resolve())},
    })
    INTERRUPTS.install()
    try:
        console.rule("[bold]tidegate demo")
        console.print(f"workdir {work}")
        stack.start_servers()
        INTERRUPTS.checkpoint()
        console.print(f"nats-server {stack.nats.url if stack.nats else '?'}   "
                      f"prometheus {stack.prometheus.url if stack.prometheus else '?'}")
        with console.status("labelling the market data and training baseline + candidate (LightGBM -> ONNX)"):
            table, source = training_table(capture, work, market=MARKET)
            INTERRUPTS.checkpoint()
            base_dir, cand_dir = train_pair(table, work / "models", tag=stamp[-6:], inject=opts.inject)
            base_id, cand_id = register_pair(registry, base_dir, cand_dir)
        console.print(f"trained on {source}: {table.num_rows} labelled entries; active {base_id}, "
                      f"candidate {cand_id}")
        checklist = run_checks(ValidationContext(model_id=cand_id, registry=registry, repo_root=work),
                               (check_artifact, check_feature_schema, check_onnx_parity))
        console.print(f"release checklist: {checklist.summary}")
        if not checklist.passed:
            return DemoResult("Failed", checklist.summary, False, None, work, time.monotonic() - t0)
        if opts.inject == "parity":
            swap_reference_model(registry.model_dir(cand_id), registry.model_dir(base_id))
            console.print("[cyan]>> inject parity: the candidate's reference model was replaced by the "
                          "baseline's after the checklist (a bad re-upload)[/]")
        INTERRUPTS.checkpoint()
        stack.write_config()
        with console.status("starting collector, signal_engine, ai_scorer, executor, risk (paper)"):
            stack.start_services()
        INTERRUPTS.checkpoint()
        console.print(f"services up after {time.monotonic() - t0:.0f}s; replaying the market at {speed:g}x")
        assert stack.prometheus is not None
        _wait_for_settled_features(stack, console, timeout=90)
        INTERRUPTS.checkpoint()
        doc = release_document(f"demo-{stamp}", cand_id, base_id, stack.prometheus.url, timings)
        release = parse_release(doc)
        driver = LocalDriver(release, state_dir=work / "releases", app=app, registry=registry,
                             nats_url=stack.nats.url if stack.nats else None, kv_bucket=app.nats.kv_bucket,
                             repo_root=work)
        from prometheus_client import start_http_server

        server, _thread = start_http_server(stack.ports["release"], addr="127.0.0.1", registry=driver.metrics.registry)
        try:
            phase, reason = asyncio.run(_drive(driver, stack, opts, timings, console))
        finally:
            server.shutdown()
        expectation = EXPECT[opts.inject]
        ok = expectation.met(phase, reason or "")
        report = None
        with contextlib.suppress(Exception):
            from tidegate.report import write_report

            prom = stack.prometheus.url if stack.prometheus and stack.prometheus.alive() else None
            report = write_report(work / "releases", release.name, work / "report.html", prometheus_url=prom)
        _summary(console, phase, reason, ok, report, time.monotonic() - t0, opts.inject)
        _evidence(console, driver.status)
        return DemoResult(phase, reason, ok, report, work, time.monotonic() - t0)
    finally:
        with _shielded():
            stack.stop()


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Let the cleanup finish: a second Ctrl-C or SIGTERM must not orphan the servers."""
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):          # not the main thread: nothing to shield
            saved[sig] = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


async def _drive(driver: LocalDriver, stack: Stack, opts: DemoOptions, t: Timings,
                 console: Console) -> tuple[str, str]:
    view = ProgressView(console, driver.release, inject=opts.inject, live=console.is_terminal)
    injected_at: float | None = None
    live = Live(view.render(None, []), console=console, refresh_per_second=4) if view.live else None
    with driver.store.lock(), (live or contextlib.nullcontext()):
        await driver.connect()
        try:
            while True:
                INTERRUPTS.checkpoint()
                await driver.tick()
                st = driver.status
                assert st is not None
                if live is not None:
                    live.update(view.render(st, driver.last_verdicts, _services_line(stack)))
                else:
                    view.log_lines(st, driver.last_verdicts)
                if st.phase in TERMINAL_PHASES and not st.pendingEffects:
                    return st.phase, st.rollbackReason or st.message
                in_canary = st.stage == "canary" and st.stageStartedAt is not None
                if opts.inject and injected_at is None and in_canary:
                    since = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(st.stageStartedAt)).total_seconds()
                    if since >= (0.0 if opts.inject in ("winrate", "parity") else t.inject_after):
                        injected_at = time.monotonic()
                        _inject(opts.inject, stack, view)
                if opts.inject == "prometheus-outage" and injected_at is not None \
                        and time.monotonic() - injected_at >= t.hold_observe:
                    held = st.holdSince is not None and st.phase not in ("Promoted",)
                    return ("Held" if held else st.phase,
                            f"every gate UNAVAILABLE for {t.hold_observe:g}s: holding in {st.stage}, no promotion; "
                            f"rollback only after maxHold" if held else st.message)
                await asyncio.sleep(driver.release.spec.analysis.interval)
        finally:
            await driver.close()


def _wait_for_settled_features(stack: Stack, console: Console, *, timeout: float, window: str = "15s") -> None:
    """Start the release once live drift is measurable and calm.

    The risk service's feature window starts empty and its first minutes of replay are
    one regime; PSI over a handful of candidates is noise. A release started then would
    be judged on that noise, so the demo (like an operator) waits for the window to fill.
    """
    assert stack.prometheus is not None
    deadline = time.monotonic() + timeout
    psi = ks = float("nan")
    with console.status("warming up: waiting for live features to settle (PSI < 0.2, KS < 0.15)") as status:
        while time.monotonic() < deadline:
            INTERRUPTS.checkpoint()
            with contextlib.suppress(Exception):
                # the same window the drift gates read, so "settled" means the gates would pass
                p = stack.prometheus.query(f"max(max_over_time(psi_feature[{window}]))")
                k = stack.prometheus.query(f"max(max_over_time(ks_feature[{window}]))")
                if p and k:
                    psi, ks = float(p[0]["value"][1]), float(k[0]["value"][1])
                    status.update(f"warming up: live PSI {psi:.3f}, KS {ks:.3f} (waiting for < 0.2 / 0.15)")
                    if psi < 0.2 and ks < 0.15:
                        break
            time.sleep(1.0)
    console.print(f"live features settled: max PSI {psi:.3f}, max KS {ks:.3f}")


def _inject(kind: str, stack: Stack, view: ProgressView) -> None:
    if kind == "drift":
        # The feed is re-pointed at another market and the market-data consumers restart on it
        # (their books would otherwise mix two venues' levels). The risk service's feature window
        # now holds only the new market, and the drift gates compare it with the training bins.
        collector = stack.config_overrides.setdefault("collector", {})
        collector["capture_file"] = "binance_cm_btcusd_perp_20240808.gz"   # with the capture: another market
        collector["synthetic_regime"] = "event"                             # without it: another regime
        stack.write_config()
        for name in ("collector", "signal_engine", "executor", "risk"):
            stack.start_service(name)
        view.note("inject drift: the feed now replays another market (coin-margined BTCUSD_PERP; the high-vol "
                  "synthetic regime without the capture); collector, signal_engine, executor and risk restarted")
    elif kind == "prometheus-outage":
        if stack.prometheus is not None:
            stack.prometheus.stop()
        view.note("inject prometheus-outage: Prometheus stopped; gates cannot be measured")
    elif kind == "winrate":
        view.note("inject winrate: the candidate (trained on inverted labels) is trading the canary's share of signals")
    elif kind == "parity":
        view.note("inject parity: the scorer re-scores the candidate with its (swapped) reference model")


def _services_line(stack: Stack) -> str:
    states = []
    for name, proc in stack.procs.items():
        states.append(f"{name} {'up' if proc.alive() else 'DOWN'}")
    return "services: " + ", ".join(states)


def evidence_line(status: ReleaseStatus | None) -> str:
    """The win-rate gate's last evidence in one line: the counts, both rates, the bound, alpha."""
    gate = status.gates.get("winrate") if status is not None else None
    ev = gate.evidence if gate is not None else None
    if not ev:
        winrate = [d for d in (status.decisions if status else []) if d.gate == "winrate" and d.evidence]
        ev = winrate[-1].evidence if winrate else None
    if not ev:
        return "win-rate evidence: none recorded (the gate never ran in a weighted stage)"

    def pct(x: float) -> str:
        return "n/a" if x != x else f"{x:.1%}"

    return (f"win-rate evidence ({gate.verdict if gate else 'last'}): canary {ev['wins_canary']:.0f}/"
            f"{ev['n_canary']:.0f} = {pct(ev['winrate_canary'])} vs baseline {ev['wins_baseline']:.0f}/"
            f"{ev['n_baseline']:.0f} = {pct(ev['winrate_baseline_active'])}; diff {ev['diff'] * 100:+.1f} pp, "
            f"one-sided upper bound {ev['upper_one_sided'] * 100:+.1f} pp (FAIL needs < 0 and diff < margin); "
            f"alpha {ev['alpha']:g}, design effect {ev['design_effect_canary']:.1f}/{ev['design_effect_baseline']:.1f}"
            f" over {ev['clusters_canary']:.0f}/{ev['clusters_baseline']:.0f} clusters")


def _evidence(console: Console, status: ReleaseStatus | None) -> None:
    console.print(evidence_line(status), highlight=False)


def _summary(console: Console, phase: str, reason: str, ok: bool, report: Path | None, seconds: float,
             inject: str | None) -> None:
    colour = "green" if ok else "red"
    console.rule(f"[bold {colour}]{phase}")
    if reason:
        console.print(f"reason: {reason}")
    console.print(f"{'as expected' if ok else 'NOT the expected outcome'} for "
                  f"{'--inject ' + inject if inject else 'a healthy candidate'}; took {seconds:.0f}s")
    if report is not None:
        console.print(f"release report: {report}")
