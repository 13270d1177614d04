"""Turn a pydantic model's JSON Schema into a Kubernetes structural OpenAPI v3 schema.

The CRD's schema is derived from the same pydantic model the engine validates with,
so the API server and the code cannot disagree about what a ModelRelease is
(tests/test_crd.py fails on any drift between this output and crds/modelrelease.yaml).

Kubernetes wants a *structural* schema: no ``$ref``, no ``anyOf`` around types, a
``type`` on every node, ``nullable`` instead of ``null`` unions. Durations become
int-or-string with the duration pattern, because a release file may say ``90`` or ``15m``.
"""

from __future__ import annotations

import copy
from typing import Any

from tidegate.durations import DURATION_PATTERN

_DROP = {"title", "default", "examples"}


def _deref(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return _deref({**target, **extra}, defs)
        return {k: _deref(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_deref(v, defs) for v in node]
    return node


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    node = {k: v for k, v in node.items() if k not in _DROP}
    if node.get("format") == "duration" or node.get("x-tidegate-duration"):
        out = {"x-kubernetes-int-or-string": True, "pattern": DURATION_PATTERN}
        if "description" in node:
            out["description"] = node["description"]
        return out
    for key in ("anyOf", "oneOf"):
        if key in node:
            raw = node.pop(key)
            options = [o for o in raw if o.get("type") != "null"]
            nullable = len(options) < len(raw)
            if len(options) == 1:
                merged = {**_structural(options[0]), **node}
                if nullable:
                    merged["nullable"] = True
                return _structural_children(merged)
            # A union of scalar types: keep it permissive but structural.
            types = {o.get("type") for o in options}
            if types <= {"integer", "number"}:
                node["type"] = "number"
            elif types <= {"integer", "string"}:
                node["x-kubernetes-int-or-string"] = True
            else:
                node["x-kubernetes-preserve-unknown-fields"] = True
            if nullable:
                node["nullable"] = True
            return _structural_children(node)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    # JSON Schema 2020 (pydantic) writes exclusive bounds as numbers; OpenAPI 3.0 as flags.
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    return _structural_children(node)


def _structural_children(node: dict[str, Any]) -> dict[str, Any]:
    if "properties" in node:
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
        node.setdefault("type", "object")
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"])
    elif node.get("additionalProperties") is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    elif node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    if "items" in node:
        node["items"] = _structural(node["items"])
    if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node:
        node["x-kubernetes-preserve-unknown-fields"] = True
    return node


def structural_schema(json_schema: dict[str, Any]) -> dict[str, Any]:
    """Structural OpenAPI v3 schema for a pydantic ``model_json_schema()`` output."""
    defs = json_schema.get("$defs", {})
    root = {k: v for k, v in json_schema.items() if k != "$defs"}
    return _structural(_deref(root, defs))
