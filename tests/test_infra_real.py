"""Each server fixture is the real thing: a round trip through it proves it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.real


def test_nats_kv_put_and_watch_round_trip(nats_server):
    import nats
    from nats.js.api import KeyValueConfig

    async def scenario() -> list[tuple[str, bytes, int]]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        kv = await js.create_key_value(KeyValueConfig(bucket="fixture_check", history=5))
        await kv.put("rollout.mode", b"disabled")
        watcher = await kv.watch("rollout.*")
        seen = []
        first = await watcher.updates(timeout=2)   # the current value
        seen.append((first.key, first.value, first.revision))
        marker = await watcher.updates(timeout=2)  # end of initial values
        assert marker is None
        await kv.put("rollout.mode", b"canary")
        update = await watcher.updates(timeout=2)
        seen.append((update.key, update.value, update.revision))
        await watcher.stop()
        entry = await kv.get("rollout.mode")
        assert entry.value == b"canary"
        await nc.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen[0][:2] == ("rollout.mode", b"disabled")
    assert seen[1][:2] == ("rollout.mode", b"canary")
    assert seen[1][2] == seen[0][2] + 1
    assert nats_server.version().startswith("2.1")  # the pinned 2.10+ server, not Debian's 2.9


def test_prometheus_scrapes_an_exporter_read_back_with_prometheus_api_client(prometheus, prom_slot):
    from prometheus_api_client import PrometheusConnect
    from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

    registry = CollectorRegistry()
    trades = Counter("fixture_trades_opened", "trades", ["route"], registry=registry)
    level = Gauge("fixture_level", "a gauge", registry=registry)
    server, thread = start_http_server(prom_slot, addr="127.0.0.1", registry=registry)
    try:
        trades.labels(route="canary").inc(7)
        level.set(42.5)
        prometheus.wait_up(prom_slot)
        client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
        instance = f'instance="127.0.0.1:{prom_slot}"'
        deadline = time.monotonic() + 10
        got: dict[str, float] = {}
        while time.monotonic() < deadline and len(got) < 2:
            for name, q in (("trades", f'fixture_trades_opened_total{{route="canary",{instance}}}'),
                            ("level", f"fixture_level{{{instance}}}")):
                res = client.custom_query(q)
                if res:
                    got[name] = float(res[0]["value"][1])
            time.sleep(0.2)
        assert got == {"trades": 7.0, "level": 42.5}
    finally:
        server.shutdown()
        thread.join(5)


def test_a_reclaimed_slot_starts_with_no_history_so_a_new_counter_is_no_reset(prometheus, prom_slot):
    """CI stop 21: a healthy exporter failed the parity gate on the previous owner's failures, which
    ``increase()`` read across the "reset" to the new owner's counter as part of one series."""
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    sel = f'fixture_reuse_total{{instance="127.0.0.1:{prom_slot}"}}'

    def scraped(value: float) -> None:        # at least two scrapes of this value
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not prometheus.query(
                f"count_over_time(({sel} == {value})[1m:500ms]) >= 2"):
            time.sleep(0.1)

    def serve():  # type: ignore[no-untyped-def]
        registry = CollectorRegistry()
        counter = Counter("fixture_reuse", "a counter", registry=registry)
        server, thread = start_http_server(prom_slot, addr="127.0.0.1", registry=registry)
        scraped(0)
        return counter, server, thread

    counter, server, thread = serve()         # the previous owner counts two failures, then goes
    counter.inc(2)
    scraped(2)
    server.shutdown()
    server.server_close()
    thread.join(5)
    prometheus.release_slot(prom_slot)
    taken = [prometheus.claim_slot()]         # FIFO: the released slot comes back last
    while taken[-1] != prom_slot:
        taken.append(prometheus.claim_slot())
    for other in taken[:-1]:
        prometheus.release_slot(other)
    _, server, thread = serve()               # the next owner's counter starts at 0 and stays there
    try:
        got = prometheus.query(f"increase({sel}[5m])")
        assert [float(r["value"][1]) for r in got] == [0.0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_promtool_checks_rules(promtool, tmp_path: Path):
    good = tmp_path / "good.yml"
    good.write_text("groups:\n- name: g\n  rules:\n  - record: job:x:rate1m\n    expr: rate(x_total[1m])\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: g\n  rules:\n  - record: job:x:rate1m\n    expr: rate(x_total[1m]\n")
    ok = subprocess.run([str(promtool), "check", "rules", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "SUCCESS" in ok.stdout
    ko = subprocess.run([str(promtool), "check", "rules", str(bad)], capture_output=True, text=True)
    assert ko.returncode != 0 and "parse error" in (ko.stdout + ko.stderr)


CRD = textwrap.dedent("""
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.fixture.tidegate.dev}
    spec:
      group: fixture.tidegate.dev
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
      - name: v1
        served: true
        storage: true
        subresources: {status: {}}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                required: [size]
                properties: {size: {type: integer, minimum: 1}}
              status: {type: object, x-kubernetes-preserve-unknown-fields: true}
""")


def test_kubectl_applies_a_crd_and_the_client_reads_a_custom_resource(kube, kubectl, tmp_path: Path):
    from kubernetes import client, config

    crd = tmp_path / "crd.yaml"
    crd.write_text(CRD)
    env = {"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = lambda *a: subprocess.run([str(kubectl), *a], capture_output=True, text=True, env=env)  # noqa: E731
    res = run("apply", "-f", str(crd))
    assert res.returncode == 0, res.stderr
    res = run("wait", "--for=condition=Established", "crd/widgets.fixture.tidegate.dev", "--timeout=60s")
    assert res.returncode == 0, res.stderr

    config.load_kube_config(config_file=str(kube.kubeconfig))
    api = client.CustomObjectsApi()
    body = {"apiVersion": "fixture.tidegate.dev/v1", "kind": "Widget",
            "metadata": {"name": "w1"}, "spec": {"size": 3}}
    api.create_namespaced_custom_object("fixture.tidegate.dev", "v1", "default", "widgets", body)
    got = api.get_namespaced_custom_object("fixture.tidegate.dev", "v1", "default", "widgets", "w1")
    assert got["spec"] == {"size": 3} and got["metadata"]["uid"]

    # The API server enforces the schema: size 0 is rejected with the field named.
    bad = {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}}
    with pytest.raises(client.ApiException) as err:
        api.create_namespaced_custom_object("fixture.tidegate.dev", "v1", "default", "widgets", bad)
    assert err.value.status == 422 and "spec.size" in err.value.body

    listed = json.loads(run("get", "widgets", "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"]


def test_kopf_accepts_the_kubeconfig_and_reconciles(kube, kubectl, tmp_path: Path):
    """kopf (in-process, KopfRunner) logs in with the same kubeconfig and handles a resource."""
    from kopf.testing import KopfRunner
    from kubernetes import client, config

    crd = tmp_path / "crd.yaml"
    crd.write_text(CRD)
    env = {"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run([str(kubectl), "apply", "-f", str(crd)], check=True, capture_output=True, env=env)
    subprocess.run([str(kubectl), "wait", "--for=condition=Established", "crd/widgets.fixture.tidegate.dev",
                    "--timeout=60s"], check=True, capture_output=True, env=env)
    handlers = tmp_path / "handlers.py"
    handlers.write_text(textwrap.dedent("""
        import kopf

        @kopf.on.create("fixture.tidegate.dev", "v1", "widgets")
        def created(spec, **_):
            return {"doubled": spec["size"] * 2}
    """))
    config.load_kube_config(config_file=str(kube.kubeconfig))
    api = client.CustomObjectsApi()
    with KopfRunner(["run", "--standalone", "-n", "default", "--verbose", str(handlers)], timeout=60):
        api.create_namespaced_custom_object(
            "fixture.tidegate.dev", "v1", "default", "widgets",
            {"apiVersion": "fixture.tidegate.dev/v1", "kind": "Widget", "metadata": {"name": "k1"},
             "spec": {"size": 21}})
        deadline = time.monotonic() + 30
        status = {}
        while time.monotonic() < deadline:
            obj = api.get_namespaced_custom_object("fixture.tidegate.dev", "v1", "default", "widgets", "k1")
            status = obj.get("status", {})
            if "created" in status:
                break
            time.sleep(0.3)
    assert status.get("created") == {"doubled": 42}
