"""The ModelRelease CRD: generated from the code, enforced by the real API server."""

from __future__ import annotations

import copy
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tidegate.operator.crd import render_crd
from tidegate.release.spec import parse_release

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "modelrelease.yaml"
EXAMPLE = REPO / "examples" / "release.yaml"


def test_committed_crd_is_generated_from_the_spec_model():
    assert CRD_FILE.read_text() == render_crd(), (
        "crds/modelrelease.yaml drifted from tidegate/release/spec.py; regenerate with "
        "`tidegate operator crd > crds/modelrelease.yaml`")


def test_example_release_validates_against_the_model():
    release = parse_release(yaml.safe_load(EXAMPLE.read_text()))
    assert [s.weight for s in release.spec.stages] == [0, 10, 25, 50, 100]


@pytest.fixture(scope="module")
def crd_env(kube, kubectl):
    env = kube.kubectl_env()
    res = subprocess.run([str(kubectl), "apply", "--server-side", "-f", str(CRD_FILE)], capture_output=True,
                         text=True, env=env, check=False)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([str(kubectl), "wait", "--for=condition=Established", "--timeout=60s",
                          "crd/modelreleases.tidegate.dev"], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stderr
    return env


def _apply(kubectl: Path, env: dict, doc: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return subprocess.run([str(kubectl), "apply", "-f", str(path)], capture_output=True, text=True,
                          env=env, check=False)


def _example(name: str) -> dict:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["name"] = name
    return doc


def test_valid_release_is_accepted_and_read_back_with_printer_columns(crd_env, kubectl, tmp_path):
    name = f"ok-{uuid.uuid4().hex[:6]}"
    res = _apply(kubectl, crd_env, _example(name), tmp_path)
    assert res.returncode == 0, res.stderr
    out = subprocess.run([str(kubectl), "get", "modelrelease", name, "-o", "yaml"], capture_output=True,
                         text=True, env=crd_env, check=True).stdout
    got = yaml.safe_load(out)
    # What the API server stored still parses as the same release (no field pruned).
    assert parse_release({k: got[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": name}}) \
        .spec == parse_release(_example(name)).spec
    table = subprocess.run([str(kubectl), "get", "mr", name], capture_output=True, text=True, env=crd_env,
                           check=True).stdout
    assert table.split("\n")[0].split() == ["NAME", "MODEL", "PHASE", "STAGE", "WEIGHT", "AGE"]


def _mutate(doc: dict, how: str) -> dict:
    doc = copy.deepcopy(doc)
    stages = doc["spec"]["stages"]
    if how == "decreasing":
        stages[2]["weight"] = 5
    elif how == "weight150":
        stages[4]["weight"] = 150
    elif how == "no-model":
        del doc["spec"]["modelId"]
    elif how == "bad-duration":
        stages[1]["duration"] = "two hours"
    elif how == "dup-stage":
        stages[2]["name"] = "canary"
    elif how == "hundred-twice":
        stages[3]["weight"] = 100
    return doc


@pytest.mark.parametrize(("how", "field", "words"), [
    ("decreasing", "spec.stages", "never decrease"),
    ("weight150", "spec.stages[4].weight", "less than or equal to 100"),
    ("no-model", "spec.modelId", "Required value"),
    ("bad-duration", "spec.stages[1].duration", "should match"),
    ("dup-stage", "spec.stages[2]", "Duplicate value"),
    ("hundred-twice", "spec.stages", "only the last stage may have weight 100"),
])
def test_invalid_releases_are_rejected_by_the_api_server_naming_the_field(crd_env, kubectl, tmp_path, how, field,
                                                                         words):
    doc = _mutate(_example(f"bad-{how}-{uuid.uuid4().hex[:4]}"), how)
    res = _apply(kubectl, crd_env, doc, tmp_path)
    assert res.returncode != 0
    assert field in res.stderr and words in res.stderr, res.stderr
