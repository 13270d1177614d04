"""``kubectl tidegate``: status, history and manual commands for ModelReleases in a cluster.

Installed as the console script ``kubectl-tidegate``, which kubectl discovers on PATH
(``kubectl tidegate status NAME``). Commands are written into the release's
``tidegate.dev/command`` annotation; the operator picks them up within one poll and
records the outcome in ``status.decisions`` (``kubectl tidegate history NAME``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tidegate.operator import COMMAND_ANNOTATION
from tidegate.operator.crd import GROUP, PLURAL, VERSION
from tidegate.operator.store import command_annotation


def _api(context: str | None) -> tuple[Any, str]:
    from kubernetes import client, config

    try:
        config.load_kube_config(context=context)
        _, active = config.list_kube_config_contexts()
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    except config.ConfigException:
        config.load_incluster_config()
        namespace = "default"
    return client.CustomObjectsApi(), namespace


def _get(api: Any, ns: str, name: str) -> dict[str, Any]:
    from kubernetes.client import ApiException

    try:
        return dict(api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name))
    except ApiException as exc:
        if exc.status == 404:
            raise click.ClickException(f"modelrelease {name!r} not found in namespace {ns!r}") from None
        raise click.ClickException(f"Kubernetes API error: {exc.status} {exc.reason}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-n", "--namespace", default=None, help="namespace (default: the kubeconfig context's)")
@click.option("--context", default=None, help="kubeconfig context")
@click.pass_context
def main(ctx: click.Context, namespace: str | None, context: str | None) -> None:
    """Inspect and steer tidegate ModelReleases in a cluster."""
    ctx.obj = {"namespace": namespace, "context": context}


def _conn(ctx: click.Context) -> tuple[Any, str]:
    api, ns = _api(ctx.obj["context"])
    return api, ctx.obj["namespace"] or ns


@main.command()
@click.argument("name")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def status(ctx: click.Context, name: str, output: str) -> None:
    """Phase, stage, weight, gates and the last decision of a release."""
    api, ns = _conn(ctx)
    obj = _get(api, ns, name)
    st = obj.get("status") or {}
    if output == "json":
        click.echo(json.dumps({"name": name, "namespace": ns, "modelId": obj["spec"].get("modelId"),
                               "phase": st.get("phase", "Pending"), "stage": st.get("stage", ""),
                               "weight": st.get("weight", 0), "gates": st.get("gates", {}),
                               "decisions": st.get("decisions", [])}, indent=2))
        return
    click.echo(f"{name}  model={obj['spec'].get('modelId')}  phase={st.get('phase', 'Pending')}  "
               f"stage={st.get('stage') or '-'}  weight={st.get('weight', 0)}%")
    if st.get("rollbackReason"):
        click.echo(f"rollback reason: {st['rollbackReason']}")
    for gate, g in sorted((st.get("gates") or {}).items()):
        value = "-" if g.get("value") is None else f"{g['value']:.4g}"
        threshold = "-" if g.get("threshold") is None else f"{g['threshold']:.4g}"
        sample = "" if g.get("sample") is None else f" n={g['sample']:.0f}"
        click.echo(f"  {gate:10s} {g.get('verdict', '?'):13s} value={value} threshold={threshold}{sample}")
    decisions = st.get("decisions") or []
    if decisions:
        d = decisions[-1]
        click.echo(f"last decision {d.get('at')}: {d.get('action')}: {d.get('reason')}")


@main.command()
@click.argument("name")
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def history(ctx: click.Context, name: str, limit: int) -> None:
    """The decision log: every advance, hold, rollback and manual command, with its reason."""
    api, ns = _conn(ctx)
    for d in ((_get(api, ns, name).get("status") or {}).get("decisions") or [])[-limit:]:
        gate = f" [{d['gate']} {d.get('verdict', '')}]" if d.get("gate") else ""
        click.echo(f"{d.get('at')}  {d.get('stage') or '-':10s} {d.get('action', ''):9s}{gate} {d.get('reason', '')}")


def _command(kind: str) -> click.Command:
    @click.argument("name")
    @click.option("--reason", default="", help="recorded in the decision log")
    @click.pass_context
    def run(ctx: click.Context, name: str, reason: str, **flags: bool) -> None:
        api, ns = _conn(ctx)
        _get(api, ns, name)
        value = command_annotation(kind, reason=reason or f"kubectl tidegate {kind}", **flags)
        api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name,
                                           {"metadata": {"annotations": {COMMAND_ANNOTATION: value}}})
        click.echo(f"modelrelease/{name}: {kind} requested (id {json.loads(value)['id']})")

    run.__doc__ = {"promote": "Advance to the next stage now (--full: straight to 100%).",
                   "abort": "Roll back: previous model active, rollout disabled.",
                   "pause": "Freeze the release in its current stage.",
                   "resume": "Continue a paused release.",
                   "retry": "Start a rolled-back or failed release again (after the cooldown)."}[kind]
    if kind == "promote":
        run = click.option("--full", is_flag=True, help="promote straight to the last stage")(run)
        run = click.option("--force", is_flag=True, help="promote even if the latest verdicts are not all PASS")(run)
    return click.command(kind)(run)


for _kind in ("promote", "abort", "pause", "resume", "retry"):
    main.add_command(_command(_kind))


if __name__ == "__main__":
    sys.exit(main())
