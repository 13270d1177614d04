"""``tidegate data ...``: dump, label, train, parity, register, scan-gaps. The seed's scripts call these too."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

DEFAULT_CONFIG = "config/app.yml"


def _config(path: Path):  # type: ignore[no-untyped-def]
    from tidegate.config.loader import load_config_or_exit

    return load_config_or_exit(path)


@click.group()
def data() -> None:
    """Market data and training pipeline (capture -> parquet -> labels -> model)."""


@data.command("dump")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path))
@click.option("--capture-dir", type=click.Path(path_type=Path), help="override data.capture_dir")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="override data.parquet_dir")
@click.option("--synthetic", is_flag=True, help="use the seeded generator even if the capture exists")
@click.option("--seconds", default=300.0, show_default=True, help="synthetic: seconds per session")
@click.option("--cycles", default=2, show_default=True, help="synthetic: cycles through the three regimes")
@click.option("--seed", default=7, show_default=True)
@click.option("--workers", type=int, default=None, help="worker processes (default: one per usable core)")
def dump_cmd(config_path: Path, capture_dir: Path | None, out_dir: Path | None, synthetic: bool, seconds: float,
             cycles: int, seed: int, workers: int | None) -> None:
    """Capture (or synthetic) -> hive-partitioned parquet + feature-schema sidecar."""
    from tidegate.pipeline.dump import dump, frame_sources

    cfg = _config(config_path)
    cap = capture_dir or Path(cfg.data.capture_dir)
    out = out_dir or Path(cfg.data.parquet_dir)
    if not synthetic and not cap.is_dir():
        click.echo(f"capture directory {cap} not found: using the synthetic generator", err=True)
    sources = frame_sources(cap, synthetic=synthetic, seed=seed, synthetic_seconds=seconds, cycles=cycles)
    report = dump(out, sources, workers=workers)
    click.echo(json.dumps(report.as_dict(), indent=2))


@data.command("economics")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path))
@click.option("--capture-dir", type=click.Path(path_type=Path), help="override data.capture_dir")
@click.option("--synthetic", is_flag=True, help="use the seeded generator even if the capture exists")
@click.option("--seconds", default=300.0, show_default=True, help="synthetic: seconds per session")
@click.option("--cycles", default=1, show_default=True, help="synthetic: cycles through the three regimes")
@click.option("--seed", default=7, show_default=True)
@click.option("--out-dir", default="var/economics", show_default=True, type=click.Path(path_type=Path),
              help="economics.json and economics.png go here")
def economics_cmd(config_path: Path, capture_dir: Path | None, synthetic: bool, seconds: float, cycles: int,
                  seed: int, out_dir: Path) -> None:
    """Does any entry pay? Every touch entry's outcome, the markout profile, one-feature rules vs the canary gates."""
    from rich.console import Console
    from rich.table import Table

    from tidegate.atomic import atomic_write_bytes, atomic_write_json
    from tidegate.pipeline import economics as econ
    from tidegate.pipeline.canary_days import LABELS
    from tidegate.pipeline.canary_run import gates_from_config
    from tidegate.pipeline.dump import frame_sources, frame_table

    cfg = _config(config_path)
    cap = capture_dir or Path(cfg.data.capture_dir)
    if not synthetic and not cap.is_dir():
        click.echo(f"capture directory {cap} not found: using the synthetic generator", err=True)
    import pyarrow as pa

    tables = [frame_table(src()) for src in frame_sources(cap, synthetic=synthetic, seed=seed,
                                                          synthetic_seconds=seconds, cycles=cycles)]
    table = pa.concat_tables(tables).sort_by([("session", "ascending"), ("local_ns", "ascending")])
    gates = gates_from_config(cfg)
    sessions, candidates = econ.session_economics(table, LABELS)
    rules = econ.rule_search(candidates, gates)
    report = econ.summarize(sessions, rules, gates, LABELS)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "economics.json", report)
    atomic_write_bytes(out_dir / "economics.png", econ.plot(
        sessions, rules, gates, f"{len(sessions)} session(s), {LABELS.latency_ms} ms latency, queue-back, "
                                f"{LABELS.maker_fee_bps:g} bps maker fee, markout at {LABELS.markout_ms} ms"))
    grid = Table(title="every entry at the touch (fills' markout net of fee, bps)")
    for col in ("session", "entries", "fill rate", "win rate", *(f"{h} ms" for h in econ.HORIZONS_MS)):
        grid.add_column(col, justify="left" if col == "session" else "right")
    for s in sessions:
        m = s.market
        grid.add_row(s.session, str(m.entries), f"{m.fill_rate:.2f}", f"{m.win_rate:.2f}",
                     *(f"{s.profile_bps[h]:+.2f}" for h in econ.HORIZONS_MS))
    console = Console(width=max(Console().width, 140))  # the horizons need the room, also when piped
    console.print(grid)
    console.print(report["verdict"])
    click.echo(f"wrote {out_dir / 'economics.json'} and {out_dir / 'economics.png'}")


@data.command("label")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path))
@click.option("--parquet-dir", type=click.Path(path_type=Path), help="override data.parquet_dir")
@click.option("--out", "out_path", default="data/training.parquet", show_default=True, type=click.Path(path_type=Path))
@click.option("--fill-horizon-ms", default=2000, show_default=True)
@click.option("--markout-ms", default=1000, show_default=True)
@click.option("--latency-ms", default=5, show_default=True)
@click.option("--maker-fee-bps", default=0.2, show_default=True)
@click.option("--sample-ms", default=100, show_default=True)
def label_cmd(config_path: Path, parquet_dir: Path | None, out_path: Path, fill_horizon_ms: int, markout_ms: int,
              latency_ms: int, maker_fee_bps: float, sample_ms: int) -> None:
    """Parquet archive -> labelled training table (data/training.parquet)."""
    import pyarrow.parquet as pq

    from tidegate.atomic import atomic_write_bytes
    from tidegate.pipeline.dump import SchemaMismatch, read_parquet
    from tidegate.pipeline.labeling import LabelParams, label_table

    src = parquet_dir or Path(_config(config_path).data.parquet_dir)
    try:
        table = read_parquet(src)
    except (SchemaMismatch, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    t0 = time.perf_counter()
    labelled = label_table(table, LabelParams(fill_horizon_ms=fill_horizon_ms, markout_ms=markout_ms,
                                              latency_ms=latency_ms, maker_fee_bps=maker_fee_bps,
                                              sample_ms=sample_ms))
    dt_s = time.perf_counter() - t0
    import io

    buf = io.BytesIO()
    pq.write_table(labelled, buf)
    atomic_write_bytes(out_path, buf.getvalue())
    y = labelled.column("label").to_numpy()
    click.echo(json.dumps({"out": str(out_path), "input_rows": table.num_rows, "candidates": labelled.num_rows,
                           "positive_rate": float(y.mean()), "seconds": dt_s,
                           "rows_per_s": table.num_rows / dt_s}, indent=2))


@data.command("train")
@click.option("--data", "data_path", default="data/training.parquet", show_default=True,
              type=click.Path(path_type=Path))
@click.option("--output-dir", default="models/latest", show_default=True, type=click.Path(path_type=Path))
@click.option("--model-id", default=None, help="default: lgbm-<utc time>-<sha prefix>")
@click.option("--n-estimators", default=300, show_default=True)
@click.option("--degrade", is_flag=True, help="deliberately worse candidate (shuffled labels, 5 trees) for demos")
@click.option("--notes", default="")
@click.option("--model-card", default="docs/model_card.md", show_default=True, type=click.Path(path_type=Path),
              help="also write the model card here ('' to skip)")
@click.option("--register", "registry_root", default=None, type=click.Path(path_type=Path),
              help="register the model in this registry after training")
def train_cmd(data_path: Path, output_dir: Path, model_id: str | None, n_estimators: int, degrade: bool, notes: str,
              model_card: Path, registry_root: Path | None) -> None:
    """Train LightGBM, export ONNX + model.json + lgbm_meta.json, check parity (exit 1 on failure)."""
    from tidegate.atomic import atomic_write_text
    from tidegate.pipeline.model_card import render
    from tidegate.pipeline.train import ParityFailure, TrainParams, read_metadata, train_model

    if not data_path.is_file():
        click.echo(f"error: training data {data_path} not found (run labeling.py first)", err=True)
        sys.exit(1)
    try:
        out = train_model(data_path, output_dir, params=TrainParams(n_estimators=n_estimators), model_id=model_id,
                          notes=notes, degrade=degrade)
    except ParityFailure as exc:
        click.echo(f"error: ONNX parity failed, model not written:\n{exc}", err=True)
        sys.exit(1)
    meta = read_metadata(out)
    card = render(meta)
    atomic_write_text(out / "model_card.md", card)
    if str(model_card):
        atomic_write_text(model_card, card)
    if registry_root is not None:
        from tidegate.registry import Registry

        Registry(registry_root).register(out, notes=notes, replace=True)
    m = meta["metrics"]
    assert isinstance(m, dict)
    click.echo(json.dumps({"id": meta["id"], "output_dir": str(out), "thresholds": meta["thresholds"],
                           "test_pr_auc": m["test_pr_auc"], "test_positive_rate": m["test_positive_rate"],
                           "test_precision_at_tau": m["test_precision_at_tau"], "parity": meta["parity"]}, indent=2))


@data.command("parity")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def parity_cmd(model_dir: Path, as_json: bool) -> None:
    """Re-run the ONNX vs LightGBM parity check of a model directory; exit 1 on failure."""
    from tidegate.pipeline.parity import check_parity

    report = check_parity(model_dir)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.summary())
    sys.exit(0 if report.ok else 1)


@data.command("register")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--registry", "registry_root", default="models/registry", show_default=True,
              type=click.Path(path_type=Path))
@click.option("--notes", default="")
def register_cmd(model_dir: Path, registry_root: Path, notes: str) -> None:
    """Copy a trained model directory into the registry (verifies sha256)."""
    from tidegate.registry import ArtifactError, Registry

    try:
        entry = Registry(registry_root).register(model_dir, notes=notes, replace=True)
    except ArtifactError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"registered {entry.id} in {registry_root}")


@data.command("scan-gaps")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path))
@click.option("--parquet-dir", type=click.Path(path_type=Path), help="override data.parquet_dir")
@click.option("--max-gap-ms", default=5000.0, show_default=True, help="a silence longer than this is a gap")
@click.option("--max-gaps", default=0, show_default=True, help="exit 1 when more gaps than this are found")
def scan_gaps_cmd(config_path: Path, parquet_dir: Path | None, max_gap_ms: float, max_gaps: int) -> None:
    """Report missing partitions and time gaps; exit 1 past the threshold."""
    from tidegate.pipeline.gaps import scan

    src = parquet_dir or Path(_config(config_path).data.parquet_dir)
    try:
        report = scan(src, max_gap_ms=max_gap_ms)
    except FileNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(report.as_dict(), indent=2))
    if report.missing_partitions or len(report.gaps) > max_gaps:
        click.echo(f"FAIL: {len(report.missing_partitions)} missing partition(s), {len(report.gaps)} gap(s) "
                   f"longer than {max_gap_ms:g} ms (allowed {max_gaps})", err=True)
        sys.exit(1)
