"""Trading-services benchmark: scoring latency, tick → scored latency over NATS, scorer throughput,
paper-simulator events/s and executor memory. Writes bench/results/services.json.

Every figure is measured beside its reference in the same run:

- ``scoring``: one candidate (a (1, 16) row) scored by ONNX Runtime with the
  ai_scorer's own session options (one intra-op thread, no spinning), by
  ``LGBMClassifier.predict_proba`` and by ``Booster.predict(num_threads=1)``,
  on the same fitted model and the same rows; p50/p99 in µs and the ratios.
- ``tick_to_scored``: the real signal_engine and ai_scorer processes on a real
  nats-server; this script publishes book ticks at a fixed rate (500/s) and
  times each tick until its scored buy candidate (the ``sig.shadow`` record of
  the batch it was scored in) reaches a subscriber; with ``--stages``, also
  the signal_engine's share (tick → the candidate on the bus).
- ``scorer_throughput``: candidates preloaded into JetStream, then the ai_scorer
  started; candidates/s from its first to its last scored candidate (batches of
  ``ai_scorer.batch_size``), read from its own /metrics.
- ``simulator``: the paper exchange (tidegate.execution.simulator) driven by
  every book and trade message of the capture, with a maker quote refreshed
  every 100 ms; and the whole execution engine on the same stream.
- ``executor_rss``: the executor process's resident memory, sampled while the
  full capture is replayed through NATS with the whole pipeline running.

The capture is ../shared/data/capture when present, else the synthetic generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from services_harness import CAPTURE_DIR, CAPTURE_FILE, Services, unique_names, write_config  # noqa: E402

from tidegate.features import FEATURE_NAMES  # noqa: E402

SYMBOL = "BTCUSDT"


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


# -- model ------------------------------------------------------------------------------------------------
def fit_model(tmp: Path) -> tuple[Any, bytes, np.ndarray]:
    """An LGBMClassifier fitted on the pipeline's labelled synthetic data, its ONNX export, and rows."""
    import lightgbm as lgb

    from tidegate.market.synthetic import generate_days
    from tidegate.pipeline.dump import dump, read_parquet
    from tidegate.pipeline.export import export_onnx
    from tidegate.pipeline.labeling import label_table

    dump(tmp / "pq", generate_days(seed=7, duration_s=100, cycles=4))
    table = label_table(read_parquet(tmp / "pq"))
    x = np.column_stack([table.column(n).to_numpy().astype(np.float32) for n in FEATURE_NAMES])
    y = table.column("label").to_numpy().astype(np.int64)
    clf = lgb.LGBMClassifier(n_estimators=200, num_leaves=31, learning_rate=0.05, subsample=0.8, subsample_freq=1,
                             colsample_bytree=0.8, n_jobs=2, random_state=7, verbose=-1).fit(x, y)
    onnx_bytes, _ = export_onnx(clf, len(FEATURE_NAMES))
    return clf, onnx_bytes, x


def time_calls(fn: Any, rows: np.ndarray, calls: int, warmup: int) -> list[float]:
    n = len(rows)
    for i in range(warmup):
        fn(rows[i % n: i % n + 1])
    out = []
    for i in range(calls):
        row = rows[i % n: i % n + 1]
        t0 = time.perf_counter_ns()
        fn(row)
        out.append((time.perf_counter_ns() - t0) / 1000.0)
    return out


def bench_scoring(tmp: Path, calls: int) -> dict[str, Any]:
    from tidegate.services.scorer_models import onnx_session

    clf, onnx_bytes, x = fit_model(tmp)
    (tmp / "model.onnx").write_bytes(onnx_bytes)
    sess = onnx_session(tmp / "model.onnx")
    name = sess.get_inputs()[0].name
    rows32 = x[:2000].astype(np.float32)
    rows64 = rows32.astype(np.float64)
    booster = clf.booster_
    onnx_us = time_calls(lambda r: sess.run(["probabilities"], {name: r}), rows32, calls, 1000)
    booster_us = time_calls(lambda r: booster.predict(r, num_threads=1), rows64, calls, 1000)
    proba_us = time_calls(lambda r: clf.predict_proba(r), rows64, max(2000, calls // 5), 200)
    p_onnx = sess.run(["probabilities"], {name: rows32})[0][:, 1]
    p_native = booster.predict(rows64)
    batch = rows32[:256]
    t0 = time.perf_counter()
    for _ in range(200):
        sess.run(["probabilities"], {name: batch})
    batch_s = (time.perf_counter() - t0) / 200
    out: dict[str, Any] = {"rows": len(x), "features": len(FEATURE_NAMES), "trees": int(booster.num_trees()),
                           "calls": calls, "max_abs_diff_onnx_vs_native": float(np.max(np.abs(p_onnx - p_native)))}
    for label, samples in (("onnx", onnx_us), ("booster", booster_us), ("predict_proba", proba_us)):
        out[f"{label}_p50_us"] = pct(samples, 50)
        out[f"{label}_p99_us"] = pct(samples, 99)
    out["speedup_p99"] = {"vs_predict_proba": out["predict_proba_p99_us"] / out["onnx_p99_us"],
                          "vs_booster": out["booster_p99_us"] / out["onnx_p99_us"]}
    out["speedup_p50"] = {"vs_predict_proba": out["predict_proba_p50_us"] / out["onnx_p50_us"],
                          "vs_booster": out["booster_p50_us"] / out["onnx_p50_us"]}
    out["batch256_rows_per_s"] = 256 / batch_s
    return out


# -- services over NATS -------------------------------------------------------------------------------------
def market_messages(max_events: int | None) -> tuple[str, list[Any]]:
    from tidegate.bus.market_messages import MarketMessages
    from tidegate.market.capture import read_capture
    from tidegate.market.frame import iter_events
    from tidegate.market.synthetic import generate

    path = CAPTURE_DIR / CAPTURE_FILE
    frame = read_capture(path) if path.is_file() else generate(symbol=SYMBOL, duration_s=360)
    conv = MarketMessages(SYMBOL, 10)
    out = []
    for ev in iter_events(frame):
        msg = conv.convert(ev)
        if msg is not None:
            out.append(msg)
        if max_events is not None and len(out) >= max_events:
            break
    return ("capture" if path.is_file() else "synthetic"), out


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#") and line[len(name)] in "{ ")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def register_model(root: Path, tmp: Path) -> str:
    from tidegate.pipeline import train_end_to_end
    from tidegate.registry import Registry

    model = train_end_to_end(tmp / "model", model_id="bench-a")
    reg = Registry(root)
    reg.register(model)
    reg.set_slot("active", "bench-a")
    reg.set_slot("shadow", "bench-a")
    return "bench-a"


async def put_state(url: str, bucket: str, **state: Any) -> None:
    import nats

    from tidegate.rollout import RolloutKV, RolloutState

    nc = await nats.connect(url)
    await (await RolloutKV.open(nc.jetstream(), bucket)).put(RolloutState(**state))
    await nc.close()


def shadow_signal_ids(data: bytes) -> list[str]:
    """The candidates a ``sig.shadow`` record covers (v2: every candidate of a scored batch)."""
    from tidegate.bus.messages import shadow_decisions

    return [d.signal_id for d in shadow_decisions(data)]


def bench_tick_to_scored(nats_url: str, registry: Path, work: Path, messages: list[Any], rate: float,
                         seconds: float, stages: bool = False) -> dict[str, Any]:
    """Book ticks at ``rate``/s into the real signal_engine → ai_scorer; tick → scored candidate latency."""
    import nats

    from tidegate.bus.messages import BookMsg
    from tidegate.bus.subjects import Subjects
    from tidegate.infra.process import free_port

    ns, bucket = unique_names("bt")
    cfg = write_config(work / "tick.yml", nats_url=nats_url, namespace=ns, kv_bucket=bucket, registry_root=registry,
                       overrides={"signal_engine": {"min_interval_ms": 0},
                                  "ai_scorer": {"shadow": {"enabled": True}, "parity_sample_rate": 0.0}})
    subjects = Subjects(ns)
    svc = Services(work, cfg)
    for name in ("signal_engine", "ai_scorer"):
        svc.start(name, free_port(), key=f"tick_{name}")
    svc.wait_healthy(["tick_signal_engine", "tick_ai_scorer"])
    books = [m for m in messages if isinstance(m, BookMsg)]
    n = int(rate * seconds)

    async def run() -> dict[str, Any]:
        nc = await nats.connect(nats_url)
        sent: dict[int, int] = {}
        latency_ms: list[float] = []
        candidate_ms: list[float] = []   # tick → its buy candidate on the bus (the signal_engine's share)

        def tick_of(signal_id: str) -> int | None:
            _symbol, recv_ns, side = signal_id.rsplit("-", 2)
            return sent.get(int(recv_ns)) if side == "b" else None

        async def on_candidate(msg: Any) -> None:
            t = tick_of(json.loads(msg.data)["signal_id"])
            if t is not None:
                candidate_ms.append((time.perf_counter_ns() - t) / 1e6)

        async def on_scored(msg: Any) -> None:
            now = time.perf_counter_ns()
            for signal_id in shadow_signal_ids(msg.data):
                t = tick_of(signal_id)
                if t is not None:
                    latency_ms.append((now - t) / 1e6)

        await nc.subscribe(subjects.shadow(">"), cb=on_scored)
        if stages:  # one more subscriber on the machine: only when the split is asked for
            await nc.subscribe(subjects.candidates(">"), cb=on_candidate)
        t0 = time.perf_counter()
        warm = min(500, len(books) // 4)
        for i in range(n + warm):
            book = books[i % len(books)]
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if i >= warm:
                sent[book.recv_ns] = time.perf_counter_ns()
            await nc.publish(subjects.book(SYMBOL), book.to_bytes())
        achieved = n / (time.perf_counter() - t0 - warm / rate)
        deadline = time.monotonic() + 10
        while len(latency_ms) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await nc.close()
        return {"rate_ticks_per_s": rate, "achieved_ticks_per_s": achieved, "ticks": n,
                "scored": len(latency_ms), "p50_ms": pct(latency_ms, 50), "p90_ms": pct(latency_ms, 90),
                "p99_ms": pct(latency_ms, 99), "max_ms": float(max(latency_ms)),
                **({"stages": {"tick_to_candidate": {
                    "p50_ms": pct(candidate_ms, 50), "p90_ms": pct(candidate_ms, 90),
                    "p99_ms": pct(candidate_ms, 99)}}} if stages else {})}

    try:
        return asyncio.run(run())
    finally:
        svc.stop_all()


def bench_scorer_throughput(nats_url: str, registry: Path, work: Path, count: int, shadow: bool) -> dict[str, Any]:
    """Preload ``count`` candidates, then let a fresh ai_scorer drain them in batches."""
    from tidegate.bus.connection import Bus
    from tidegate.bus.messages import CandidateMsg
    from tidegate.bus.subjects import Subjects
    from tidegate.features import schema_hash
    from tidegate.infra.process import free_port

    ns, bucket = unique_names("bs")
    cfg = write_config(work / f"thr{int(shadow)}.yml", nats_url=nats_url, namespace=ns, kv_bucket=bucket,
                       registry_root=registry,
                       overrides={"ai_scorer": {"shadow": {"enabled": shadow}, "batch_size": 256}})
    subjects = Subjects(ns)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(count, len(FEATURE_NAMES))).astype(np.float32)
    h = schema_hash()

    async def preload() -> None:
        bus = await Bus.open(nats_url, service="bench", subjects=subjects)
        now = time.time_ns()
        for i in range(count):
            c = CandidateMsg(signal_id=f"{SYMBOL}-{i}-b", symbol=SYMBOL, side="buy", ts_ns=i, recv_ns=i,
                             emitted_ns=now, price=60000.0, schema_hash=h, features=x[i].tolist())
            await bus.publish_durable(subjects.candidates(SYMBOL), c, msg_id=f"candidate:{c.signal_id}")
        await bus.flush(timeout=120)
        await bus.close()

    # the consumer must exist before the candidates arrive (it delivers new messages only)
    svc = Services(work, cfg)
    port = free_port()
    key = f"thr_ai_scorer_{int(shadow)}"
    svc.start("ai_scorer", port, key=key)
    try:
        svc.wait_healthy([key])
        svc.stop(key)
        asyncio.run(preload())
        svc.start("ai_scorer", port, key=key)
        svc.wait_healthy([key])
        first = last = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            scored = metric(port, "signals_scored_total")
            now = time.perf_counter()
            if first is None and scored > 0:
                first = (now, scored)
            if scored >= count:
                last = (now, scored)
                break
            time.sleep(0.02)
        if first is None or last is None:
            raise RuntimeError(f"the scorer did not drain {count} candidates: {svc.log(key)[-2000:]}")
        rate = (last[1] - first[1]) / (last[0] - first[0])
        return {"candidates": count, "batch_size": 256, "shadow": shadow, "seconds": last[0] - first[0],
                "candidates_per_s": rate}
    finally:
        svc.stop_all()


# -- simulator and executor ------------------------------------------------------------------------------------
def bench_simulator(messages: list[Any], repeat: int) -> dict[str, Any]:
    from tidegate.bus.messages import ApprovedMsg, BookMsg
    from tidegate.config.schema import AppConfig
    from tidegate.execution.engine import ExecutionEngine
    from tidegate.execution.simulator import OrderRequest, PaperExchange
    from tidegate.execution.venue import load_offline_exchange, market_rules

    best = float("inf")
    fills = 0
    for _ in range(repeat):
        ex = PaperExchange()
        next_quote, seq, fills_run = 0, 0, 0
        t0 = time.perf_counter()
        for m in messages:
            if isinstance(m, BookMsg):
                bb = m.bids[0][0] if m.bids else None
                ba = m.asks[0][0] if m.asks else None
                reps = ex.on_book(m.recv_ns, m.bid_changes, m.ask_changes, bb, ba)
                if bb is not None and ba is not None and m.recv_ns >= next_quote:
                    next_quote = m.recv_ns + 100_000_000
                    for coid in ex.open_orders():
                        ex.cancel(coid, m.recv_ns)
                    seq += 1
                    ex.submit(OrderRequest(f"b{seq}", "buy", bb, 0.01), m.recv_ns)
                    ex.submit(OrderRequest(f"s{seq}", "sell", ba, 0.01), m.recv_ns)
            else:
                reps = ex.on_trade(m.recv_ns, m.price, m.qty, m.aggressor)
            fills_run += sum(1 for r in reps if r.kind == "fill")
        best = min(best, time.perf_counter() - t0)
        fills = fills_run
    cfg = AppConfig.model_validate({"executor": {"warmup_seconds": 0}})
    ex_ccxt = load_offline_exchange(REPO / cfg.exchange.markets_file)
    engine = ExecutionEngine(cfg, {SYMBOL: market_rules(ex_ccxt, SYMBOL)}, started_wall=0.0)
    t0 = time.perf_counter()
    last_sig = 0
    n_sig = 0
    for m in messages:
        if isinstance(m, BookMsg):
            engine.on_book(m)
            if m.bids and m.asks and m.recv_ns - last_sig >= 500_000_000:
                last_sig = m.recv_ns
                n_sig += 1
                side = "buy" if n_sig % 2 else "sell"
                engine.on_approved(ApprovedMsg(
                    signal_id=f"s{n_sig}", symbol=SYMBOL, side=side, ts_ns=m.ts_ns, recv_ns=m.recv_ns, emitted_ns=0,
                    scored_ns=0, price=m.mid or 1.0, route="paper", model_id="m", score=0.9, tau_entry=0.5,
                    bucket=0), 1e9)
        else:
            engine.on_trade(m)
    engine_s = time.perf_counter() - t0
    return {"simulator": {"events": len(messages), "seconds": best, "events_per_s": len(messages) / best,
                          "fills": fills, "quote_refresh_ms": 100},
            "execution_engine": {"events": len(messages), "signals": n_sig, "seconds": engine_s,
                                 "events_per_s_engine": len(messages) / engine_s}}


def bench_executor_rss(nats_url: str, registry: Path, work: Path, speed: float) -> dict[str, Any]:
    """The whole pipeline on the full capture; the executor's RSS sampled every 0.2 s."""
    from tidegate.infra.process import free_port

    ns, bucket = unique_names("br")
    cfg = write_config(work / "rss.yml", nats_url=nats_url, namespace=ns, kv_bucket=bucket, registry_root=registry,
                       overrides={"collector": {"speed": speed}, "ai_scorer": {"shadow": {"enabled": True}}})
    asyncio.run(put_state(nats_url, bucket, mode="canary", canary_fraction=0.1, active_model_id="bench-a",
                          candidate_model_id="bench-a", tau_entry=0.0))
    svc = Services(work, cfg)
    names = ("signal_engine", "ai_scorer", "executor", "risk")
    ports = {n: free_port() for n in (*names, "collector")}
    try:
        for n in names:
            svc.start(n, ports[n], key=f"rss_{n}")
        svc.wait_healthy([f"rss_{n}" for n in names])
        pid = svc.procs["rss_executor"].pid
        start_rss = rss_mb(pid)
        svc.start("collector", ports["collector"], key="rss_collector")
        samples = [start_rss]
        t0 = time.monotonic()
        while not (svc.health("rss_collector") or {}).get("done"):
            samples.append(rss_mb(pid))
            time.sleep(0.2)
            if time.monotonic() - t0 > 900:
                raise RuntimeError("replay did not finish")
        for _ in range(10):
            samples.append(rss_mb(pid))
            time.sleep(0.2)
        return {"speed": speed, "replay_s": time.monotonic() - t0, "start_mb": start_rss, "max_mb": max(samples),
                "end_mb": samples[-1], "approved_signals": metric(ports["ai_scorer"], "signals_approved_total"),
                "trades_opened": metric(ports["executor"], "trades_opened_total"),
                "trades_closed": metric(ports["risk"], "trades_closed_total")}
    finally:
        svc.stop_all()


PARTS = ("scoring", "simulator", "tick", "throughput", "rss")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "services.json"))
    ap.add_argument("--calls", type=int, default=20000, help="single-row scoring calls per path")
    ap.add_argument("--rate", type=float, default=500.0, help="ticks/s for the tick → scored latency")
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of the latency run")
    ap.add_argument("--candidates", type=int, default=60000, help="candidates for the throughput run")
    ap.add_argument("--rss-speed", type=float, default=20.0, help="replay speed of the RSS run")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test of the script)")
    ap.add_argument("--stages", action="store_true",
                    help="also time tick → candidate on the bus (the signal_engine's share; one more subscriber)")
    ap.add_argument("--only", action="append", choices=PARTS, default=None,
                    help="run only these parts (repeatable); their figures replace the same keys of the "
                         "existing --out document, every other figure is kept as it was")
    args = ap.parse_args()
    if args.quick:
        args.calls, args.seconds, args.candidates, args.rss_speed = 2000, 3.0, 3000, 0.0
    parts = set(args.only or PARTS)
    from tidegate.infra.nats_server import NatsServer

    out = Path(args.out)
    result: dict[str, Any] = json.loads(out.read_text()) if args.only and out.is_file() else {}
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "platform": platform.platform()}
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        if "scoring" in parts:
            print("scoring latency ...", flush=True)
            result["scoring"] = bench_scoring(tmp, args.calls)
        messages: list[Any] = []
        if parts & {"simulator", "tick"}:
            source, messages = market_messages(20000 if args.quick else None)
            result["source"] = source
        if "simulator" in parts:
            print(f"simulator on {len(messages)} {result['source']} events ...", flush=True)
            result.update(bench_simulator(messages, 1 if args.quick else 3))
        if parts & {"tick", "throughput", "rss"}:
            (tmp / "nats").mkdir()
            server = NatsServer(tmp / "nats").start()
            try:
                registry = tmp / "registry"
                register_model(registry, tmp)
                if "tick" in parts:
                    print("tick -> scored latency ...", flush=True)
                    result["tick_to_scored"] = bench_tick_to_scored(server.url, registry, tmp, messages, args.rate,
                                                                    args.seconds, args.stages)
                if "throughput" in parts:
                    print("scorer throughput ...", flush=True)
                    result["scorer_throughput"] = bench_scorer_throughput(server.url, registry, tmp,
                                                                          args.candidates, False)
                    result["scorer_throughput_with_shadow"] = bench_scorer_throughput(server.url, registry, tmp,
                                                                                      args.candidates, True)
                if "rss" in parts:
                    print("executor RSS over the full replay ...", flush=True)
                    result["executor_rss"] = bench_executor_rss(server.url, registry, tmp, args.rss_speed)
            finally:
                server.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
