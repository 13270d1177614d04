"""``helm uninstall``'s pre-delete hook: end every release in flight while the operator still runs.

Without it, ``helm uninstall`` mid-release deletes the operator first, and nothing is left
to keep the finalizer's promise: the release stays at its canary weight in the NATS KV, the
services go on routing real signals to an unsupervised candidate, and no rule rolls it back.
The hook asks the operator to abort each non-terminal ModelRelease (the same annotation
``kubectl tidegate abort`` writes), and waits until each one has rolled back with its
effects applied (previous model active, rollout disabled). The releases themselves are
kept: they are the audit trail. If the operator cannot finish in time, the hook fails, and
so does the uninstall, which a user sees, instead of leaving a canary running silently.

Run as ``python -m tidegate.operator.uninstall [--timeout 120]`` (in-cluster credentials,
or KUBECONFIG outside a pod).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from tidegate.operator import COMMAND_ANNOTATION
from tidegate.operator.crd import GROUP, PLURAL, VERSION
from tidegate.operator.store import command_annotation
from tidegate.release.spec import TERMINAL_PHASES

log = logging.getLogger("tidegate.uninstall")


def in_flight(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, name) of the releases that are not finished or still have effects to apply."""
    out = []
    for obj in items:
        st = obj.get("status") or {}
        if st.get("phase") not in TERMINAL_PHASES or st.get("pendingEffects"):
            out.append((obj["metadata"]["namespace"], obj["metadata"]["name"]))
    return sorted(out)


def _api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def abort_all(api: Any, *, timeout: float, poll: float = 1.0) -> list[tuple[str, str]]:
    """Abort every release in flight and wait; returns the ones still in flight at the deadline."""
    items = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    todo = in_flight(items)
    for ns, name in todo:
        value = command_annotation("abort", reason="helm uninstall: the operator is being removed")
        api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name,
                                           {"metadata": {"annotations": {COMMAND_ANNOTATION: value}}})
        log.info("modelrelease %s/%s: abort requested", ns, name)
    deadline = time.monotonic() + timeout
    while todo and time.monotonic() < deadline:
        time.sleep(poll)
        items = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        still = set(in_flight(items))
        for done in [t for t in todo if t not in still]:
            log.info("modelrelease %s/%s: finished", *done)
        todo = [t for t in todo if t in still]
    return todo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tidegate.operator.uninstall", description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the operator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    left = abort_all(_api(), timeout=args.timeout)
    if left:
        names = ", ".join(f"{ns}/{name}" for ns, name in left)
        log.error("still in flight after %.0fs: %s; is the operator running?", args.timeout, names)
        return 1
    log.info("no release in flight: safe to remove the operator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
