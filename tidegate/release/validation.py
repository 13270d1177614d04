"""The validation stage: the seed's release checklist as pluggable checks.

Each check is a callable ``(ValidationContext) -> CheckResult`` with one of three
outcomes: ``pass``, ``fail`` or ``skip``. A check whose tool is not available here
(no parquet sidecars yet, no benchmark file, no parity checker) says ``skip`` with
the reason, never ``pass``: the report shows exactly what was and was not proven,
and ``spec.validations.requireAll`` turns every skip into a failure.

Checklist (seed): the feature schema hash of the parquet sidecars equals the ONNX
metadata's; PR-AUC and precision meet or beat the current benchmark (the seed names
``models/latest/lgbm_meta.json``; the benchmark is the active model's registered metrics,
because training writes the candidate's own figures to that file, see ``check_benchmark``);
ONNX parity passes; the canary pipeline (``scripts/canary_pipeline.py``, called
here in-process as ``tidegate.pipeline.canary_run.run_canary``) passes its gates
across normal/event/high-vol days. Plus the registry's own artifact check (sha256).
The schema check reads the hash from the ONNX file's own metadata (what the seed
names), not only from model.json, so an artifact re-exported under another
schema is caught even when its model.json was left behind.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tidegate.registry import ArtifactError, Registry
from tidegate.release.decision import ValidationOutcome

Outcome = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Outcome
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class ValidationContext:
    model_id: str
    registry: Registry
    repo_root: Path = Path(".")
    parquet_dir: Path = Path("data/parquet")
    # The benchmark is the *active* model's metrics, read from its registry entry (immutable once
    # registered). models/latest/lgbm_meta.json is what training just wrote for the candidate
    # itself, so comparing with it compared the candidate with itself.
    benchmark_model_id: str | None = None
    first_release: bool = False
    extra: dict[str, object] = field(default_factory=dict)


Check = Callable[[ValidationContext], CheckResult]


def check_artifact(ctx: ValidationContext) -> CheckResult:
    try:
        meta = ctx.registry.verify(ctx.model_id)
    except ArtifactError as exc:
        return CheckResult("artifact", "fail", str(exc))
    return CheckResult("artifact", "pass", f"model.onnx sha256 {meta.sha256[:12]}... matches model.json")


def _sidecar_hashes(parquet_dir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not parquet_dir.is_dir():
        return out
    for path in sorted(parquet_dir.rglob("*.json")):
        if "schema" not in path.name:
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("schema_hash"), str):
            out[str(path)] = doc["schema_hash"]
    return out


def onnx_schema_hash(path: Path) -> str | None:
    """The ``schema_hash`` in an ONNX file's metadata_props (None when it has none)."""
    import onnx

    model = onnx.load_model(str(path), load_external_data=False)
    return next((p.value for p in model.metadata_props if p.key == "schema_hash"), None)


def check_feature_schema(ctx: ValidationContext) -> CheckResult:
    """ONNX metadata schema hash == model.json's == every parquet sidecar's == the live feature module's."""
    try:
        meta = ctx.registry.metadata(ctx.model_id)
    except ArtifactError as exc:
        return CheckResult("feature_schema", "fail", str(exc))
    onnx_path = ctx.registry.model_dir(ctx.model_id) / "model.onnx"
    try:
        in_onnx = onnx_schema_hash(onnx_path)
    except Exception as exc:  # missing or unreadable file: the artifact cannot prove its schema
        return CheckResult("feature_schema", "fail", f"cannot read the ONNX metadata of {onnx_path}: "
                                                     f"{type(exc).__name__}: {exc}"[:300])
    if in_onnx is None:
        return CheckResult("feature_schema", "fail", f"{onnx_path} has no schema_hash in its metadata")
    if in_onnx != meta.schema_hash:
        return CheckResult("feature_schema", "fail", f"ONNX metadata schema_hash {in_onnx[:12]}... != model.json "
                                                     f"{meta.schema_hash[:12]}...")
    compared: list[str] = ["ONNX metadata"]
    try:
        live = importlib.import_module("tidegate.features.schema").schema_hash()
    except (ImportError, AttributeError):
        live = None
    if live is not None:
        if live != meta.schema_hash:
            return CheckResult("feature_schema", "fail", f"model schema_hash {meta.schema_hash[:12]}... != live "
                                                         f"feature schema {live[:12]}...")
        compared.append("live feature schema")
    sidecars = _sidecar_hashes(ctx.parquet_dir)
    bad = {p: h for p, h in sidecars.items() if h != meta.schema_hash}
    if bad:
        path, h = next(iter(bad.items()))
        return CheckResult("feature_schema", "fail", f"{len(bad)} parquet sidecar(s) differ, e.g. {path}: "
                                                     f"{h[:12]}... != model {meta.schema_hash[:12]}...")
    if sidecars:
        compared.append(f"{len(sidecars)} parquet sidecar(s)")
    if len(compared) == 1:
        return CheckResult("feature_schema", "skip", f"no parquet sidecars under {ctx.parquet_dir} and no live "
                                                     "feature schema to compare the ONNX metadata with")
    note = "" if sidecars else f" (no parquet sidecars under {ctx.parquet_dir})"
    return CheckResult("feature_schema", "pass", f"schema_hash {meta.schema_hash[:12]}... matches "
                                                 f"{' and '.join(compared)}{note}")


# lgbm_meta.json and model.json (tidegate/pipeline/train.py) spell precision "precision_at_tau"
_METRIC_KEYS = {"pr_auc": ("pr_auc", "prauc", "average_precision", "pr-auc"),
                "precision": ("precision", "precision_at_tau")}


def _metric(doc: dict[str, object], name: str) -> float | None:
    for scope in (doc, doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}):
        for key in _METRIC_KEYS[name]:
            value = scope.get(key) if isinstance(scope, dict) else None
            if isinstance(value, int | float):
                return float(value)
    return None


def check_benchmark(ctx: ValidationContext) -> CheckResult:
    """PR-AUC and precision meet or beat the current benchmark: the active model's registered metrics.

    No active model fails the check, unless the release says it is the first one
    (``spec.validations.firstRelease``): a missing benchmark must never read as a pass.
    """
    first = "spec.validations.firstRelease: true"
    if ctx.benchmark_model_id is None:
        if ctx.first_release:
            return CheckResult("benchmark", "pass", f"first release ({first}): no active model to compare with")
        return CheckResult("benchmark", "fail", f"no benchmark: the registry has no active model; a first release "
                                                f"says so with {first}")
    if ctx.benchmark_model_id == ctx.model_id:
        return CheckResult("benchmark", "fail", f"the candidate {ctx.model_id!r} is the active model: it would be "
                                                f"compared with itself")
    try:
        bench = dict(ctx.registry.metadata(ctx.benchmark_model_id).metrics)
        meta = ctx.registry.metadata(ctx.model_id)
    except (OSError, ValueError, ArtifactError) as exc:
        return CheckResult("benchmark", "fail", f"cannot read benchmark or model metadata: {exc}")
    ref_name = f"active model {ctx.benchmark_model_id!r}"
    parts, failed = [], []
    for name in ("pr_auc", "precision"):
        ref, got = _metric(bench, name), _metric(dict(meta.metrics), name)
        if ref is None:
            parts.append(f"{name}: no benchmark value")
            continue
        if got is None:
            failed.append(f"{name}: model.json has no {name} (benchmark {ref:.4f})")
        elif got + 1e-12 < ref:
            failed.append(f"{name} {got:.4f} < benchmark {ref:.4f}")
        else:
            parts.append(f"{name} {got:.4f} >= {ref:.4f}")
    if failed:
        return CheckResult("benchmark", "fail", f"vs {ref_name}: " + "; ".join(failed))
    if all("no benchmark value" in p for p in parts):
        return CheckResult("benchmark", "fail", f"{ref_name} records neither pr_auc nor precision")
    return CheckResult("benchmark", "pass", f"vs {ref_name}: " + "; ".join(parts))


def check_onnx_parity(ctx: ValidationContext) -> CheckResult:
    """tidegate.pipeline.check_parity(model_dir): ONNX vs native LightGBM on the same rows."""
    try:
        check_parity = importlib.import_module("tidegate.pipeline").check_parity
    except (ImportError, AttributeError):
        return CheckResult("onnx_parity", "skip", "tidegate.pipeline.check_parity is not available in this build")
    try:
        result = check_parity(ctx.registry.model_dir(ctx.model_id))
    except Exception as exc:
        return CheckResult("onnx_parity", "fail", f"parity check raised {type(exc).__name__}: {exc}")
    passed = getattr(result, "ok", getattr(result, "passed", None))
    if passed is None and isinstance(result, dict):
        passed = result.get("passed")
    if passed is None and isinstance(result, bool):
        passed = result
    if passed is None:
        return CheckResult("onnx_parity", "fail", f"parity check returned an unreadable result: {result!r}")
    summary = result.summary() if callable(getattr(result, "summary", None)) else str(result)
    return CheckResult("onnx_parity", "pass" if passed else "fail", summary[:300])


def check_canary_pipeline(ctx: ValidationContext) -> CheckResult:
    """The canary pipeline (scripts/canary_pipeline.py's function): every gate passes on every day type.

    In-process, no subprocess: limits from ``<repo_root>/config/app.yml`` (or ``extra["config"]``),
    days from ``extra["canary_days"]`` (default: synthetic + the capture when present), compared
    with the registry's active model. The full JSON report goes to ``extra["canary_report"]`` when
    that is a path.
    """
    from tidegate.config import load_config
    from tidegate.config.schema import AppConfig
    from tidegate.pipeline.canary_run import CanaryError, run_canary

    cfg = ctx.extra.get("config")
    if not isinstance(cfg, AppConfig):
        path = ctx.repo_root / "config" / "app.yml"
        cfg = load_config(path) if path.is_file() else AppConfig()
    capture = Path(cfg.data.capture_dir)
    capture = capture if capture.is_absolute() else ctx.repo_root / capture
    days = ctx.extra.get("canary_days")
    try:
        run = run_canary(ctx.registry, ctx.model_id, cfg=cfg, capture_dir=capture,
                         days=list(days) if isinstance(days, list | tuple) else None)
    except (CanaryError, ValueError) as exc:
        return CheckResult("canary_pipeline", "fail", f"canary could not run: {exc}"[:300])
    out = ctx.extra.get("canary_report")
    if isinstance(out, str | Path):
        from tidegate.atomic import atomic_write_json

        atomic_write_json(Path(out), run.report)
    return CheckResult("canary_pipeline", "pass" if run.passed else "fail", run.summary[:400])


DEFAULT_CHECKS: tuple[Check, ...] = (check_artifact, check_feature_schema, check_benchmark, check_onnx_parity,
                                     check_canary_pipeline)


def run_checks(ctx: ValidationContext, checks: Sequence[Check] = DEFAULT_CHECKS, *,
               require_all: bool = False) -> ValidationOutcome:
    results: list[CheckResult] = []
    for check in checks:
        try:
            results.append(check(ctx))
        except Exception as exc:  # a broken check is a failed check, never a pass
            results.append(CheckResult(getattr(check, "__name__", "check"), "fail",
                                       f"check raised {type(exc).__name__}: {exc}"))
    failed = [r for r in results if r.status == "fail" or (require_all and r.status == "skip")]
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    summary = f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
    if failed:
        summary += "; " + "; ".join(f"{r.name}: {r.detail}" for r in failed)
    skipped = [r for r in results if r.status == "skip"]
    if skipped and not require_all:
        summary += " (skipped: " + ", ".join(r.name for r in skipped) + ")"
    return ValidationOutcome(passed=not failed, checks=tuple(r.to_json() for r in results), summary=summary)
