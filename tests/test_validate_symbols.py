"""scripts/validate_symbols.py: configured symbols vs the saved venue reference; exit 1 on a mismatch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKETS = REPO / "config" / "markets"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "validate_symbols.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def config(tmp: Path, **exchange: object) -> str:
    path = tmp / "app.yml"
    path.write_text(json.dumps({"symbols": ["BTCUSDT"], "exchange": {
        "markets_file": str(MARKETS / "bybit_v5_linear.json"), **exchange}}))
    return str(path)


def test_the_shipped_config_matches_the_venue_reference() -> None:
    out = run()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BTCUSDT: ok (lot_step=0.001 min_qty=0.001 tick=0.1 maker=0.0001 taker=0.0006)" in out.stdout


def test_a_fee_mismatch_and_an_unlisted_symbol_exit_1(tmp_path: Path) -> None:
    out = run("--config", config(tmp_path, reference_maker_fee=0.0002), "--symbol", "BTCUSDT", "--symbol", "NOPEUSDT")
    assert out.returncode == 1
    assert "maker_fee: expected 0.0002, venue has 0.0001" in out.stdout
    assert "NOPEUSDT: MISMATCH (not listed)" in out.stdout


def test_lot_sizes_are_checked_against_the_venue_instruments_response(tmp_path: Path) -> None:
    raw = json.loads((MARKETS / "bybit_v5_linear_instruments.json").read_text())
    for row in raw["result"]["list"]:
        if row["symbol"] == "BTCUSDT":
            row["lotSizeFilter"]["qtyStep"] = "0.01"
    (tmp_path / "instruments.json").write_text(json.dumps(raw))
    out = run("--config", config(tmp_path), "--instruments-file", str(tmp_path / "instruments.json"), "--json")
    assert out.returncode == 1
    found = json.loads(out.stdout)
    assert found == [{"symbol": "BTCUSDT", "field": "lot_step", "expected": 0.01, "actual": 0.001}]


@pytest.mark.real
def test_risk_counts_each_reference_mismatch_at_start(nats_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same check inside the running risk service: one ``exchange_reference_mismatch_total``
    per mismatching field, and a warning naming it; risk still serves (a finding, not a crash)."""
    from services_harness import Services, metrics, unique_names, write_config

    from tidegate.infra.process import free_port

    ns, bucket = unique_names("ref")
    cfg = write_config(tmp_path / "app.yml", nats_url=nats_server.url, namespace=ns, kv_bucket=bucket,
                       registry_root=tmp_path / "registry",
                       overrides={"exchange": {"reference_maker_fee": 0.0004, "reference_taker_fee": 0.0006}})
    svc, port = Services(tmp_path, cfg), free_port()
    try:
        svc.start("risk", port)
        svc.wait_healthy(["risk"])
        found = {k: v for k, v in metrics(port).items() if k.startswith("exchange_reference_mismatch_total{")}
        assert found == {'exchange_reference_mismatch_total{field="maker_fee",symbol="BTCUSDT"}': 1.0}, found
        assert "exchange reference mismatch: BTCUSDT maker_fee expected 0.0004" in svc.log("risk")
    finally:
        rcs = svc.stop_all()
    assert rcs == {"risk": 0}, svc.log("risk")[-2000:]
