"""The Helm chart on a real single-node cluster: the operator and the five services as pods,
ModelReleases applied with kubectl and carried to Promoted and to RolledBack.

One node for the module (``kube_cluster`` in conftest.py), one ``helm install`` shared by the
tests, which run in file order: install, safety, a healthy release with the operator pod
deleted mid-canary, a broken candidate, an upgrade that changes a guard rail, an uninstall
mid-release. Everything goes through helm, kubectl, ``kubectl tidegate`` and ``tidegate``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml
from cluster_harness import NAMESPACE, POD_UID, RELEASE, SERVICES, Cluster, chart_ports, train_models

from tidegate.demo.scenario import Timings, release_document

pytestmark = pytest.mark.real

# The demo's quick mechanics (seconds, not hours), with no cooldown between this module's releases.
T = Timings(shadow=8, canary=25, canary_max=150, ramp=5, interval=1.0, speed=4.0, min_sample=5)
DEPLOYMENTS = {f"{RELEASE}-tidegate-{n}" for n in ("operator", *(s.replace("_", "-") for s in SERVICES))}


def release(name: str, model: str, previous: str, **guard: Any) -> str:
    doc = release_document(name, model, previous, "http://127.0.0.1:9090", T)
    doc["spec"]["cooldown"] = 1
    for key, value in guard.items():
        if value is None:
            doc["spec"]["guardRails"].pop(key, None)
        else:
            doc["spec"]["guardRails"][key] = value
    return yaml.safe_dump(doc)


@pytest.fixture(scope="module")
def cluster(kube_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    t0 = time.monotonic()
    kube_cluster.models = train_models(kube_cluster.registry, kube_cluster.capture,
                                       tmp_path_factory.mktemp("cluster-models"))
    kube_cluster.timings["train_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    kube_cluster.install()
    kube_cluster.timings["helm_install_s"] = time.monotonic() - t0
    return kube_cluster


def pods(cluster: Cluster) -> list[dict[str, Any]]:
    return list(cluster.get("pods")["items"])


def operator_pod(cluster: Cluster) -> str | None:
    for p in pods(cluster):
        labels = p["metadata"].get("labels", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        if labels.get("app.kubernetes.io/component") == "operator" and ready \
                and not p["metadata"].get("deletionTimestamp"):
            return str(p["metadata"]["name"])
    return None


def test_helm_install_brings_up_every_deployment_as_the_images_user(cluster: Cluster) -> None:
    deps = {d["metadata"]["name"]: d for d in cluster.get("deployments")["items"]}
    assert set(deps) == DEPLOYMENTS
    for name, d in deps.items():
        assert d["status"].get("availableReplicas") == d["spec"]["replicas"], (name, d["status"])
    running = [p for p in pods(cluster) if p["status"]["phase"] == "Running"]
    assert len(running) == len(DEPLOYMENTS)
    for p in running:
        assert p["spec"]["nodeName"] == "127.0.0.1" and p["status"]["podIP"] == "127.0.0.1"
    # the process really runs as the Dockerfiles' USER, from the image's /app
    out = cluster.kubectl("exec", f"deploy/{RELEASE}-tidegate-executor", "--", "python", "-c",
                          "import os, tidegate; print(os.getuid(), os.getgid(), tidegate.__file__)").stdout.split()
    assert out == [str(POD_UID), str(POD_UID), "/app/tidegate/__init__.py"]
    # the collector pod replays the market, and Prometheus scrapes every pod on its own port
    up = {r["metric"]["job"]: r["value"][1] for r in cluster.query("up")}
    assert up == {name: "1" for name in chart_ports()}, up
    grew = cluster.wait_for("collector publishing market data", lambda: cluster.query(
        "sum(increase(md_events_published_total[10s])) > 100"), 60)
    assert float(grew[0]["value"][1]) > 100


def test_pods_cannot_reach_the_injected_service_address(cluster: Cluster) -> None:
    assert cluster.node.ns.interfaces() == ["lo"]
    for p in pods(cluster):
        for c in p["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env.get("KUBERNETES_SERVICE_HOST") == "127.0.0.1", (p["metadata"]["name"], env)
    # kubelet still injects the service range's first address under the pod's own value; dialling
    # it from inside a pod fails locally (no route out of the namespace), it is never sent
    probe = ("import errno, socket\ns = socket.socket(); s.settimeout(3)\n"
             "try:\n    s.connect(('10.0.0.1', 443)); print('connected')\n"
             "except OSError as e:\n    print(errno.errorcode.get(e.errno, e.errno))\n"
             "import os; print(os.environ['KUBERNETES_SERVICE_HOST'])")
    out = cluster.kubectl("exec", f"deploy/{RELEASE}-tidegate-operator", "--", "python", "-c", probe).stdout.split()
    assert out == ["ENETUNREACH", "127.0.0.1"]


def test_healthy_release_is_promoted_and_an_operator_pod_deleted_mid_canary_repeats_nothing(
        cluster: Cluster) -> None:
    assert cluster.models is not None
    m = cluster.models
    cluster.wait_settled_features()
    name = "healthy-k8s"
    cluster.kubectl("apply", "-f", "-", input=release(name, m.healthy, m.base))

    def in_canary() -> dict[str, Any] | None:
        st = cluster.release_status(name)
        return st if st.get("stage") == "canary" and st.get("stageStartedAt") else None
    st = cluster.wait_for("canary stage", in_canary, 90)
    started, revision = st["stageStartedAt"], cluster.rollout_state()["stored"]
    old = operator_pod(cluster)
    assert old is not None
    cluster.kubectl("delete", "pod", old, "--wait=true", timeout=60)
    new = cluster.wait_for("a new operator pod Ready", lambda: (p := operator_pod(cluster)) and p != old and p, 90)
    st = cluster.release_status(name)
    if st.get("stage") == "canary":                       # resumed, not restarted
        assert st["stageStartedAt"] == started
    assert cluster.rollout_state()["stored"]["revision"] >= revision["revision"]

    st = cluster.wait_phase(name, ("Promoted", "RolledBack", "Failed"), 300)
    assert st["phase"] == "Promoted", json.dumps(st["decisions"][-5:])
    entered = [d["stage"] for d in st["decisions"] if d.get("action") == "advance"]
    assert len(entered) == len(set(entered)), f"a stage entered twice: {entered}"
    assert cluster.registry_slot("active") == m.healthy
    columns = cluster.kubectl("get", "modelrelease", name).stdout
    assert "Promoted" in columns and m.healthy in columns
    # the operator that finished is the new pod: Events name it as their reporting instance
    events = json.loads(cluster.kubectl("get", "events", "--field-selector",
                                        f"involvedObject.name={name}", "-o", "json").stdout)["items"]
    assert any(e.get("reportingInstance") == new or e.get("source", {}).get("host") == new
               or new in json.dumps(e) for e in events), [e.get("reason") for e in events]
    state = cluster.rollout_state()["stored"]
    assert state["mode"] == "full" and state["active_model_id"] == m.healthy


def test_broken_candidate_rolls_back_and_every_tool_says_why(cluster: Cluster) -> None:
    assert cluster.models is not None
    m = cluster.models
    previous = cluster.registry_slot("active")
    assert previous is not None
    name = "parity-k8s"
    cluster.kubectl("apply", "-f", "-", input=release(name, m.parity, previous))
    st = cluster.wait_phase(name, ("Promoted", "RolledBack", "Failed"), 240)
    assert st["phase"] == "RolledBack" and st["rollbackReason"] == "parity", json.dumps(st)[:2000]
    assert cluster.registry_slot("active") == previous
    columns = cluster.kubectl("get", "modelrelease", name).stdout
    assert "RolledBack" in columns
    described = cluster.kubectl("describe", "modelrelease", name).stdout
    events = described[described.index("Events:"):]
    assert "Warning" in events and "Rollback" in events and "parity" in events, events
    # kubectl finds a plugin only as its first argument, so the namespace goes to the plugin
    status = cluster.tool(cluster.node.bins["kubectl"], "tidegate", "-n", NAMESPACE, "status", name).stdout
    history = cluster.tool(cluster.node.bins["kubectl"], "tidegate", "-n", NAMESPACE, "history", name).stdout
    assert "RolledBack" in status and "parity" in status, status
    assert "rollback" in history.lower() and "parity" in history, history
    state = cluster.rollout_state()["stored"]
    assert state["active_model_id"] == previous and state["mode"] != "canary"


def test_helm_upgrade_with_a_changed_guard_rail_takes_effect(cluster: Cluster) -> None:
    """A release that leaves psiBlock to config: the operator reads the upgraded ConfigMap."""
    assert cluster.models is not None
    m = cluster.models
    old = operator_pod(cluster)
    cluster.install(upgrade=True, rollout_guard={"psi_block": 0.0001})
    new = operator_pod(cluster)
    assert new is not None and new != old        # the config checksum rolled the operator
    previous = cluster.registry_slot("active")
    assert previous is not None
    name = "psi-from-config-k8s"
    cluster.kubectl("apply", "-f", "-", input=release(name, m.base if previous != m.base else m.healthy,
                                                      previous, psiBlock=None))
    st = cluster.wait_phase(name, ("Promoted", "RolledBack", "Failed"), 180)
    assert st["phase"] == "RolledBack" and st["rollbackReason"] == "psi", json.dumps(st)[:2000]
    psi = [d for d in st["decisions"] if d.get("gate") == "psi"]
    assert psi and "0.0001" in json.dumps(psi[-1]), psi[-1:]
    cluster.install(upgrade=True)                 # back to the chart's guard rails


def test_helm_uninstall_mid_release_rolls_it_back_before_the_operator_goes(cluster: Cluster) -> None:
    """The chart's pre-delete hook keeps the finalizer's promise: no canary outlives its operator."""
    assert cluster.models is not None
    m = cluster.models
    previous = cluster.registry_slot("active")
    assert previous is not None
    candidate = m.base if previous != m.base else m.healthy
    name = "uninstalled-k8s"
    cluster.wait_settled_features()          # the upgrade before this test restarted every pod
    cluster.kubectl("apply", "-f", "-", input=release(name, candidate, previous))

    def canary_or_end() -> dict[str, Any] | None:
        st = cluster.release_status(name)
        return st if st.get("stage") == "canary" or st.get("phase") in ("Promoted", "RolledBack", "Failed") else None
    st = cluster.wait_for("canary stage", canary_or_end, 120)
    assert st.get("stage") == "canary" and st["phase"] not in ("RolledBack", "Failed"), json.dumps(st)[:2000]
    assert cluster.rollout_state()["stored"]["mode"] == "canary"
    try:
        cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "180s")
    except AssertionError as e:                   # a failed hook Job is kept: say what it printed
        hook = cluster.kubectl("logs", "-l", "app.kubernetes.io/component=uninstall-hook", "--tail=60", check=False)
        raise AssertionError(f"{e}\nuninstall hook:\n{hook.stdout}{hook.stderr}\n"
                             f"operator:\n{cluster.operator_logs(60)}") from None
    st = cluster.release_status(name)
    assert st["phase"] == "RolledBack" and st["rollbackReason"] == "manual_abort", json.dumps(st)[:2000]
    assert not st.get("pendingEffects")
    assert "helm uninstall" in json.dumps(st["decisions"][-3:])
    state = cluster.rollout_state()["stored"]
    assert state["mode"] == "disabled" and state["active_model_id"] == previous, state
    assert cluster.registry_slot("active") == previous
    assert cluster.get("deployments")["items"] == []
