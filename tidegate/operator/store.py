"""A ModelRelease's state kept in the custom resource instead of a state directory.

It offers the same interface as the local driver's ReleaseStore, so the operator
runs the local driver's loop unchanged:

- status: read from the live body kopf keeps current, written with a merge patch
  to the ``status`` subresource (before any effect is applied: the write-ahead
  rule of the drivers);
- commands: ``kubectl tidegate promote|abort|pause|resume|retry`` writes one JSON
  command into the ``tidegate.dev/command`` annotation; its id orders it after the
  last command the status says was handled;
- cooldown: the latest ``cooldownUntil`` of any RolledBack release in the namespace,
  so a rollback holds back every release, as in the local driver.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes import client

from tidegate.operator import COMMAND_ANNOTATION
from tidegate.operator.crd import GROUP, PLURAL, VERSION
from tidegate.release.decision import Command
from tidegate.release.spec import ModelRelease, ReleaseStatus, parse_release

log = logging.getLogger(__name__)
_STATUS_FIELDS = set(ReleaseStatus.model_fields)


def release_from_body(body: Mapping[str, Any]) -> ModelRelease:
    meta = body.get("metadata", {})
    doc = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "spec": dict(body.get("spec", {})),
           "metadata": {k: meta[k] for k in ("name", "namespace", "generation", "labels") if meta.get(k)}}
    return parse_release(doc)


def status_from_body(body: Mapping[str, Any]) -> ReleaseStatus | None:
    raw = dict(body.get("status") or {})
    own = {k: v for k, v in raw.items() if k in _STATUS_FIELDS}
    if not own.get("phase"):
        return None
    return ReleaseStatus.model_validate(own)


def command_annotation(kind: str, *, force: bool = False, full: bool = False, reason: str = "") -> str:
    cid = f"{time.time_ns():020d}-{kind}"
    return json.dumps({"id": cid, "kind": kind, "force": force, "full": full, "reason": reason})


class KubeReleaseStore:
    def __init__(self, body: Mapping[str, Any], api: client.CustomObjectsApi):
        self.body = body                     # kopf's live view of the object
        self.api = api
        self.name = body["metadata"]["name"]
        self.namespace = body["metadata"]["namespace"]
        self._status: ReleaseStatus | None = status_from_body(body)
        self.forced: tuple[str, Command] | None = None   # a command from the operator itself (finalizer)

    # -- the ReleaseStore interface --------------------------------------------------------
    def exists(self) -> bool:
        return True

    def load_release(self) -> ModelRelease:
        return release_from_body(self.body)

    def save_release(self, release: ModelRelease) -> None:
        """The spec belongs to the user (or GitOps); the operator never writes it."""

    def load_status(self) -> ReleaseStatus | None:
        return self._status

    def save_status(self, status: ReleaseStatus) -> None:
        """Replace our part of ``.status`` (a JSON patch, not a merge patch: a merge patch
        reads ``null`` as "delete", which would strip None-valued effect arguments)."""
        others = {k: v for k, v in (self.body.get("status") or {}).items() if k not in _STATUS_FIELDS}
        # Unset top-level fields are left out (the API server checks enums even on null).
        own = {k: v for k, v in status.document().items() if v is not None}
        ops = [{"op": "add", "path": "/status", "value": {**others, **own}}]
        self.api.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, PLURAL, self.name, ops,
                                                       _content_type="application/json-patch+json")
        self._status = status

    def commands_after(self, last: str | None) -> list[tuple[str, Command]]:
        if self.forced is not None:
            return [self.forced] if last != self.forced[0] else []
        annotations = (self.body.get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(COMMAND_ANNOTATION)
        if not raw:
            return []
        try:
            doc = json.loads(raw)
            cid = str(doc["id"])
            command = Command(kind=doc["kind"], force=bool(doc.get("force")), full=bool(doc.get("full")),
                              reason=str(doc.get("reason", "")))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("%s/%s: ignoring malformed %s annotation: %s", self.namespace, self.name,
                      COMMAND_ANNOTATION, exc)
            return []
        if last is not None and cid <= last:
            return []
        return [(cid, command)]

    def read_cooldown(self) -> dict | None:
        # Only a release about to start consults the cooldown; skip the LIST on every other tick.
        if self._status is not None and self._status.phase != "Pending":
            return None
        items = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL).get("items", [])
        best: dict | None = None
        for item in items:
            st = item.get("status") or {}
            until = st.get("cooldownUntil")
            if st.get("phase") == "RolledBack" and until and (best is None or until > best["until"]):
                best = {"release": item["metadata"]["name"], "until": until, "reason": st.get("rollbackReason")}
        return best

    def write_cooldown(self, record: dict) -> None:
        """Nothing to write: the RolledBack release's own status carries cooldownUntil."""

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """kopf peering already guarantees one acting operator."""
        yield

    def locked(self) -> bool:
        return False
