"""``tidegate release run|status|list|new|promote|abort|pause|resume|retry``.

Thin: parse arguments, call the local driver or queue a command, print. Manual
commands are queued as files in the release's state directory and picked up by
the running driver within ~50 ms (or by the next ``run``), so they work the same
whether or not a driver is running right now.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

import click

DEFAULT_CONFIG = "config/app.yml"
_STATE = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
                      default=".tidegate/releases", show_default=True, envvar="TIDEGATE_STATE_DIR",
                      help="local driver state directory")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group("release")
def release() -> None:
    """Run and steer ModelReleases locally (the same YAML you can kubectl apply)."""


@release.command("run")
@click.argument("source")
@_STATE
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
@click.option("--registry", "registry_root", type=click.Path(file_okay=False, path_type=Path),
              help="model registry root (default: registry.root from config)")
@click.option("--nats-url", help="NATS URL (default: nats.url from config); 'none' to run without NATS")
@click.option("--prometheus-url", help="override spec.analysis.prometheus.url / prometheus.url")
@click.option("--skip-validations", is_flag=True, help="set spec.validations.skip (rerun within a release)")
@click.option("--disable-rollout", is_flag=True, help="stop after validation with rollout disabled")
@click.option("--once", is_flag=True, help="one tick, then exit")
@click.option("--follow/--no-follow", default=None,
              help="keep running after promotion to step the thresholds (default: when the release's "
                   "thresholds.adaptive.enabled asks for it)")
@click.option("--metrics-port", type=int,
              help="serve the engine's /metrics on 127.0.0.1:PORT (default: prometheus.engine_metrics_port; 0: none)")
@click.option("-v", "--verbose", is_flag=True)
def run(source: str, state_dir: Path, config_path: Path, registry_root: Path | None, nats_url: str | None,
        prometheus_url: str | None, skip_validations: bool, disable_rollout: bool, once: bool, follow: bool | None,
        metrics_port: int | None, verbose: bool) -> None:
    """Run a release from SOURCE (a release.yaml, or the name of a release in the state dir)."""
    from tidegate.config import ConfigError, load_config
    from tidegate.registry import Registry
    from tidegate.release.effects import ReleaseMetrics
    from tidegate.release.local import DriverBusy, LocalDriver, ReleaseStore, follows, prometheus_timeout
    from tidegate.release.prometheus import PrometheusProvider
    from tidegate.release.spec import SpecError, load_release

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = load_config(config_path)
    except ConfigError as exc:
        _fail(str(exc))
    try:
        if Path(source).is_file():
            rel = load_release(source)
        elif ReleaseStore(state_dir, source).exists():
            rel = ReleaseStore(state_dir, source).load_release()
        else:
            _fail(f"{source}: no such release file, and no release of that name in {state_dir}")
    except SpecError as exc:
        _fail(str(exc))
    spec = rel.spec
    if skip_validations:
        spec = spec.model_copy(update={"validations": spec.validations.model_copy(update={"skip": True})})
    if disable_rollout:
        spec = spec.model_copy(update={"rollout": spec.rollout.model_copy(update={"enabled": False})})
    rel = rel.model_copy(update={"spec": spec})
    url = prometheus_url or spec.analysis.prometheus.url or app.prometheus.url
    nurl = None if (nats_url or "").lower() == "none" else (nats_url or app.nats.url)
    metrics = ReleaseMetrics()
    port = app.prometheus.engine_metrics_port if metrics_port is None else metrics_port
    if port:
        from prometheus_client import start_http_server
        try:
            start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
        except OSError as exc:  # another release on this machine serves it: run on, and say so
            click.echo(f"release engine metrics NOT served on 127.0.0.1:{port}: {exc} (pass --metrics-port)",
                       err=True)
    timeout = prometheus_timeout(spec.analysis.prometheus.timeout, app)
    try:
        driver = LocalDriver(rel, state_dir=state_dir, app=app, registry=Registry(registry_root or app.registry.root),
                             provider=PrometheusProvider(url, timeout=timeout),
                             nats_url=nurl, metrics=metrics, repo_root=Path.cwd())
    except SpecError as exc:
        _fail(str(exc))

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        status = await driver.run(once=once, follow=follows(rel.spec, follow), stop=stop)
        click.echo(f"{rel.name}: {status.phase} stage={status.stage or '-'} weight={status.weight}"
                   f"{' reason=' + status.rollbackReason if status.rollbackReason else ''}")

    try:
        asyncio.run(_main())
    except DriverBusy as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot reach a dependency: {exc}")


def _status_doc(state_dir: Path, name: str) -> dict:
    from tidegate.release.local import ReleaseStore

    store = ReleaseStore(state_dir, name)
    if not store.exists():
        _fail(f"no release named {name!r} in {state_dir}")
    rel = store.load_release()
    st = store.load_status()
    doc = {"name": name, "modelId": rel.spec.modelId, "driverRunning": store.locked(),
           "pendingCommands": [cid for cid, _ in store.commands_after(st.lastCommand if st else None)]}
    if st is None:
        doc.update({"phase": "Pending", "stage": "", "weight": 0, "decisions": []})
    else:
        doc.update(st.document())
    return doc


@release.command("status")
@click.argument("name")
@_STATE
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(name: str, state_dir: Path, output: str) -> None:
    """Phase, stage, weight, gates and the decision log of a release."""
    doc = _status_doc(state_dir, name)
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{name}  model={doc['modelId']}  phase={doc['phase']}  stage={doc['stage'] or '-'}  "
               f"weight={doc['weight']}%  driver={'running' if doc['driverRunning'] else 'stopped'}")
    if doc.get("rollbackReason"):
        click.echo(f"rollback reason: {doc['rollbackReason']}")
    for gate, g in (doc.get("gates") or {}).items():
        click.echo(f"  gate {gate:<10} {g['verdict']:<12} value={g['value']} sample={g['sample']} "
                   f"threshold={g['threshold']}")
    for d in doc.get("decisions", [])[-15:]:
        gate = f" {d['gate']}={d['verdict']}" if d.get("gate") else ""
        click.echo(f"  {d['at']} [{d['stage']}] {d['action']}{gate}: {d['reason']}")


@release.command("list")
@_STATE
def list_(state_dir: Path) -> None:
    """Releases known to the local driver."""
    from tidegate.release.local import list_releases

    for name in list_releases(state_dir):
        doc = _status_doc(state_dir, name)
        click.echo(f"{name:<32} {doc['phase']:<11} {doc['stage'] or '-':<10} {doc['weight']:>3}%  {doc['modelId']}")


@release.command("new")
@click.option("--model-id", required=True, help="candidate model id")
@click.option("--name", help="release name (default: derived from the model id)")
@click.option("--template", type=click.Path(dir_okay=False, path_type=Path), default="examples/release.yaml",
              show_default=True, help="release document to copy stages and guard rails from")
@click.option("--skip-validations", is_flag=True)
@click.option("--disable-rollout", is_flag=True)
def new(model_id: str, name: str | None, template: Path, skip_validations: bool, disable_rollout: bool) -> None:
    """Print a ModelRelease for MODEL_ID (from a template), ready to run or kubectl apply."""
    import yaml

    from tidegate.release.spec import SpecError, load_release, parse_release, release_name_for

    try:
        base = load_release(str(template)).model_dump(mode="json", exclude_none=True, exclude={"status"}) \
            if template.is_file() else {"metadata": {"name": "x"}, "spec": {"modelId": model_id}}
        base["apiVersion"], base["kind"] = "tidegate.dev/v1alpha1", "ModelRelease"
        base["metadata"] = {**base.get("metadata", {}), "name": name or release_name_for(model_id)}
        spec = base["spec"]
        spec["modelId"] = model_id
        spec.pop("previousModelId", None)
        spec.setdefault("validations", {})["skip"] = skip_validations
        spec.setdefault("rollout", {})["enabled"] = not disable_rollout
        parse_release(base)
    except SpecError as exc:
        _fail(str(exc))
    click.echo(yaml.safe_dump(base, sort_keys=False), nl=False)


def _queue(kind: str, name: str, state_dir: Path, reason: str, force: bool = False, full: bool = False) -> None:
    from tidegate.release.decision import Command
    from tidegate.release.local import ReleaseStore

    store = ReleaseStore(state_dir, name)
    if not store.exists():
        _fail(f"no release named {name!r} in {state_dir}")
    cid = store.enqueue(Command(kind=kind, force=force, full=full, reason=reason))  # type: ignore[arg-type]
    note = "" if store.locked() else f" (no driver running: `tidegate release run {name}` applies it)"
    click.echo(f"{kind} queued for {name} as {cid}{note}")


_REASON = click.option("--reason", default="", help="recorded in the decision log")


@release.command("promote")
@click.argument("name")
@_STATE
@_REASON
@click.option("--full", is_flag=True, help="jump to the last stage (100%)")
@click.option("--force", is_flag=True, help="promote even if a gate is not PASS")
def promote(name: str, state_dir: Path, reason: str, full: bool, force: bool) -> None:
    """Advance to the next stage now (only when every gate is PASS, unless --force)."""
    _queue("promote", name, state_dir, reason, force=force, full=full)


@release.command("abort")
@click.argument("name")
@_STATE
@_REASON
def abort(name: str, state_dir: Path, reason: str) -> None:
    """Roll back now: previous model active, rollout disabled."""
    _queue("abort", name, state_dir, reason)


@release.command("pause")
@click.argument("name")
@_STATE
@_REASON
def pause(name: str, state_dir: Path, reason: str) -> None:
    """Stop advancing (gates keep watching; a FAIL still rolls back)."""
    _queue("pause", name, state_dir, reason)


@release.command("resume")
@click.argument("name")
@_STATE
@_REASON
def resume(name: str, state_dir: Path, reason: str) -> None:
    """Continue a paused release (paused time does not count toward the stage)."""
    _queue("resume", name, state_dir, reason)


@release.command("retry")
@click.argument("name")
@_STATE
@_REASON
def retry(name: str, state_dir: Path, reason: str) -> None:
    """Start a RolledBack/Failed release again from validation (after its cooldown)."""
    _queue("retry", name, state_dir, reason)
