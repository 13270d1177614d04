"""LightGBM -> ONNX with ZipMap off and split thresholds made exact for float32 inputs.

The pitfall (design/notes/trading-ml-anchors.md §2): LightGBM tests ``x <= t`` with
a float64 ``t``; ONNX stores ``float32(t)``, which rounds *up* for about half of
the thresholds, so an input equal to that float32 goes left in ONNX and right in
LightGBM. onnxmltools 1.16.0 ships without the upstream fix. Because our inputs
are float32 by construction (tidegate.features), ``x <= t`` is equivalent to
``x <= largest_float32_not_above(t)`` for every float32 ``x``; we write that value.

Matching ONNX nodes to LightGBM splits: the converter emits each tree's nodes in
preorder, the same order as a preorder walk of ``Booster.dump_model()``. We walk
both, check that features and float32 thresholds agree node by node, and only
then rewrite; any disagreement raises instead of silently exporting a model that
would fail parity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")


class ExportError(RuntimeError):
    pass


def float32_floor(t: float) -> np.float32:
    """The largest float32 <= t."""
    f = np.float32(t)
    if float(f) > t:
        f = np.nextafter(f, np.float32(-np.inf))
    return np.float32(f)


def booster_splits(booster: Any) -> list[list[tuple[int, float, str]]]:
    """Per tree, the (feature, threshold, decision_type) of each split node in preorder."""
    trees = []
    for info in booster.dump_model()["tree_info"]:
        out: list[tuple[int, float, str]] = []
        stack = [info["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_index" not in node:
                continue
            out.append((int(node["split_feature"]), float(node["threshold"]), str(node["decision_type"])))
            stack.append(node["right_child"])
            stack.append(node["left_child"])
        trees.append(out)
    return trees


def convert(model: Any, n_features: int, *, name: str = "tidegate_scorer") -> onnx.ModelProto:
    """onnxmltools conversion, ZipMap off: outputs ``label`` and ``probabilities`` (n, 2)."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    return convert_lightgbm(model, name=name, initial_types=[("input", FloatTensorType([None, n_features]))],
                            zipmap=False, target_opset=15)


def fix_float32_thresholds(model: onnx.ModelProto, booster: Any) -> int:
    """Rewrite BRANCH_LEQ thresholds in place to the largest float32 <= the LightGBM threshold.

    Returns the number of thresholds changed (those float32 had rounded up).
    """
    trees = booster_splits(booster)
    changed = 0
    found = False
    for node in model.graph.node:
        if node.op_type not in TREE_OPS:
            continue
        found = True
        attrs = {a.name: a for a in node.attribute}
        if "nodes_values" not in attrs:
            raise ExportError(f"{node.op_type} has no nodes_values attribute (unsupported converter output)")
        values = list(attrs["nodes_values"].floats)
        modes = [m.decode() for m in attrs["nodes_modes"].strings]
        tree_ids = list(attrs["nodes_treeids"].ints)
        node_ids = list(attrs["nodes_nodeids"].ints)
        feats = list(attrs["nodes_featureids"].ints)
        true_ids = list(attrs["nodes_truenodeids"].ints)
        false_ids = list(attrs["nodes_falsenodeids"].ints)
        where = {(tid, nid): i for i, (tid, nid) in enumerate(zip(tree_ids, node_ids, strict=True))}
        for tid in sorted(set(tree_ids)):
            if tid >= len(trees):
                raise ExportError(f"ONNX has tree {tid}, LightGBM only {len(trees)} trees")
            # preorder walk of the ONNX tree (true branch = left = "<="), paired with LightGBM's preorder
            k = 0
            stack = [min(nid for (t_, nid) in where if t_ == tid)]
            while stack:
                i = where[(tid, stack.pop())]
                mode = modes[i]
                if mode == "LEAF":
                    continue
                if k >= len(trees[tid]):
                    raise ExportError(f"ONNX tree {tid} has more split nodes than LightGBM tree {tid}")
                feat, thr, decision = trees[tid][k]
                k += 1
                if feats[i] != feat or np.float32(values[i]) != np.float32(thr):
                    raise ExportError(f"tree {tid} split {k - 1}: ONNX (feature {feats[i]}, {values[i]!r}) does "
                                      f"not match LightGBM (feature {feat}, {thr!r})")
                if mode != "BRANCH_LEQ" or decision != "<=":
                    raise ExportError(f"tree {tid} split {k - 1}: unsupported split {mode}/{decision}")
                fixed = float32_floor(thr)
                if np.float32(values[i]) != fixed:
                    values[i] = float(fixed)
                    changed += 1
                stack.append(false_ids[i])
                stack.append(true_ids[i])
            if k != len(trees[tid]):
                raise ExportError(f"tree {tid}: ONNX has {k} split nodes, LightGBM {len(trees[tid])}")
        new_attr = helper.make_attribute("nodes_values", values)
        for j, a in enumerate(node.attribute):
            if a.name == "nodes_values":
                node.attribute[j].CopyFrom(new_attr)
    if not found:
        raise ExportError("no TreeEnsemble node in the converted model")
    return changed


def export_onnx(classifier: Any, n_features: int, *, metadata: dict[str, str] | None = None) -> tuple[bytes, int]:
    """Serialized ONNX bytes (thresholds fixed, metadata_props set) and the number of thresholds fixed."""
    model = convert(classifier, n_features)
    booster = getattr(classifier, "booster_", classifier)
    changed = fix_float32_thresholds(model, booster)
    for key, value in (metadata or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString(), changed


def onnx_inputs(model_bytes: bytes) -> list[str]:
    model = onnx.load_from_string(model_bytes)
    return [i.name for i in model.graph.input]


__all__ = ["ExportError", "booster_splits", "export_onnx", "fix_float32_thresholds", "float32_floor"]
