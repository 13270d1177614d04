"""The Helm chart: lint, render, server-side dry run and RBAC on the real API server."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import IN_CI

from tidegate.infra import binaries

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "tidegate"
VALUES = ["values.yaml", "values-paper.yaml", "values-real.yaml"]


@pytest.fixture(scope="module")
def helm(request) -> Path:
    from conftest import need_binary

    return need_binary("helm")


def render(helm: Path, values: str, *extra: str, release: str = "rel") -> subprocess.CompletedProcess[str]:
    args = [str(helm), "template", release, str(CHART), "--namespace", "tidegate"]
    if values != "values.yaml":
        args += ["-f", str(CHART / values)]
    return subprocess.run([*args, *extra], capture_output=True, text=True, check=False)


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("values", VALUES)
def test_helm_lint_passes(helm, values):
    res = subprocess.run([str(helm), "lint", str(CHART), "-f", str(CHART / values), "--strict"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("values", VALUES)
def test_rendered_manifests_have_every_service_and_least_privilege(helm, values):
    res = render(helm, values)
    assert res.returncode == 0, res.stderr
    objs = docs(res.stdout)
    deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    assert set(deployments) == {f"rel-tidegate-{s}" for s in
                                ("operator", "collector", "signal-engine", "ai-scorer", "executor", "risk")}
    role = next(o for o in objs if o["kind"] == "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert "secrets" not in resources and "*" not in resources
    assert all("*" not in rule["verbs"] for rule in role["rules"])
    for dep in deployments.values():
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert all("value" not in e or ("KEY" not in e["name"] and "SECRET" not in e["name"])
                       for e in c.get("env", []))
    executor_env = {e["name"]: e for e in deployments["rel-tidegate-executor"]["spec"]["template"]["spec"]
                    ["containers"][0]["env"]}
    assert executor_env["EXCHANGE_MODE"]["value"] == ("real" if values == "values-real.yaml" else "paper")
    if values == "values-real.yaml":
        assert executor_env["BYBIT_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tidegate-exchange-keys"
    else:
        assert "BYBIT_API_KEY" not in executor_env
    operator = deployments["rel-tidegate-operator"]["spec"]["template"]["spec"]["containers"][0]
    operator_env = {e["name"]: e for e in operator["env"]}
    # replicas peer under one name; each is identified by its pod name (kopf identity, Event reportingInstance)
    assert any(a.startswith("--peering=") for a in operator["args"])
    assert operator_env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert int(operator_env["TIDEGATE_PEERING_LIFETIME"]["value"]) >= 2
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "rel-tidegate-config")
    app = yaml.safe_load(cm["data"]["app.yml"])
    from tidegate.config.loader import parse_config

    cfg = parse_config(app, env={})  # the rendered config passes the same schema the services use
    assert cfg.exchange.mode == executor_env["EXCHANGE_MODE"]["value"]


def test_prometheus_rule_and_dashboard_are_the_repository_files(helm):
    objs = docs(render(helm, "values-paper.yaml").stdout)
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((REPO / "config" / "prometheus" / "alerts.yml").read_text())
    dash = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))
    assert json.loads(dash["data"]["tidegate-dashboard.json"]) == json.loads(
        (REPO / "config" / "grafana" / "tidegate-dashboard.json").read_text())


@pytest.mark.parametrize(("override", "field"), [
    (["--set", "exchange.mode=live"], "exchange.mode"),
    (["--set", "services.executor.replicas=-1"], "services.executor.replicas"),
    (["--set", "exchange.mode=real"], "exchangeSecret"),
])
def test_values_schema_rejects_bad_values_naming_the_field(helm, override, field):
    res = render(helm, "values.yaml", *override)
    assert res.returncode != 0
    assert field.split(".")[-1] in res.stderr, res.stderr


@pytest.fixture(scope="module")
def cluster_with_crds(kube, kubectl):
    crd_dir = binaries.prometheus_operator_crds_dir()
    if not crd_dir.is_dir():
        msg = f"prometheus-operator CRDs missing at {crd_dir}; provided by `make setup`"
        pytest.fail(msg) if IN_CI else pytest.skip(msg)
    env = kube.kubectl_env()
    for path in [*sorted(crd_dir.glob("*.yaml")), *sorted((CHART / "crds").glob("*.yaml"))]:
        res = subprocess.run([str(kubectl), "apply", "--server-side", "-f", str(path)],
                             capture_output=True, text=True, env=env, check=False)
        assert res.returncode == 0, res.stderr
    res = subprocess.run([str(kubectl), "wait", "--for=condition=Established", "--timeout=60s",
                          "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com",
                          "crd/modelreleases.tidegate.dev", "crd/clusterkopfpeerings.kopf.dev"],
                         capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stderr
    return env


@pytest.mark.parametrize("values", ["values-paper.yaml", "values-real.yaml"])
def test_rendered_manifests_pass_a_server_side_dry_run(helm, kubectl, cluster_with_crds, tmp_path, values):
    ns = f"dry-{uuid.uuid4().hex[:6]}"
    env = cluster_with_crds
    subprocess.run([str(kubectl), "create", "namespace", ns], check=True, capture_output=True, env=env)
    res = render(helm, values, "--namespace", ns)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "rendered.yaml"
    out.write_text(res.stdout)
    res = subprocess.run([str(kubectl), "apply", "--dry-run=server", "-n", ns, "-f", str(out)],
                         capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stderr
    assert "deployment.apps/rel-tidegate-executor created (server dry run)" in res.stdout
    assert "prometheusrule.monitoring.coreos.com/rel-tidegate-alerts created (server dry run)" in res.stdout


def test_operator_rbac_allows_what_it_needs_and_nothing_else(helm, kubectl, cluster_with_crds, tmp_path):
    """Acting as the operator's ServiceAccount (impersonation) on the real RBAC authorizer."""
    ns = f"rbac-{uuid.uuid4().hex[:6]}"
    env = cluster_with_crds
    kc = lambda *a: subprocess.run([str(kubectl), *a], capture_output=True, text=True, env=env, check=False)  # noqa: E731
    assert kc("create", "namespace", ns).returncode == 0
    assert kc("create", "namespace", f"{ns}-other").returncode == 0
    res = render(helm, "values-paper.yaml", "--namespace", ns, release=ns)
    assert res.returncode == 0, res.stderr
    objs = docs(res.stdout)
    rbac = [o for o in objs if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    path = tmp_path / "rbac.yaml"
    path.write_text(yaml.safe_dump_all(rbac))
    res = kc("apply", "-n", ns, "-f", str(path))
    assert res.returncode == 0, res.stderr
    sa = f"system:serviceaccount:{ns}:{ns}-tidegate-operator"

    def can(*args: str) -> bool:
        res = kc("auth", "can-i", "--as", sa, *args)
        assert res.stdout.strip() in ("yes", "no"), res.stdout + res.stderr
        return res.stdout.strip() == "yes"

    assert can("watch", "modelreleases.tidegate.dev", "--all-namespaces")
    assert can("patch", "modelreleases.tidegate.dev", "--subresource=status", "-n", ns)
    assert can("create", "events", "-n", ns)
    assert can("patch", "clusterkopfpeerings.kopf.dev")
    assert not can("get", "secrets", "-n", f"{ns}-other")
    assert not can("list", "secrets", "-n", ns)
    assert not can("delete", "modelreleases.tidegate.dev", "-n", ns)
    assert not can("create", "deployments.apps", "-n", ns)
