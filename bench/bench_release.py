"""Benchmark: guard-rail breach visible in Prometheus -> executor's rollout view shows mode disabled.

Starts its own nats-server and Prometheus (0.5 s scrape), an exporter with healthy
guard-rail series, and the local release driver (analysis interval 0.5 s). Once a
release is in canary, the win rate drops below the baseline; the benchmark polls
Prometheus until the breach is queryable (t_visible) while an executor-style
RolloutView on its own NATS connection waits for ``mode == disabled``
(t_disabled). Reported: t_disabled - t_visible per run, against the target
"<= evaluation interval + 1 s". Writes bench/results/release.json.

    .venv/bin/python bench/bench_release.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

INTERVAL = 0.5


def _visible(prom_url: str, port: int) -> bool:
    q = f'winrate_canary{{instance="127.0.0.1:{port}"}} < 0.5'
    url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(json.loads(r.read())["data"]["result"])


async def one_run(i: int, tmp: Path, prom, port: int, nats_url: str, exporter) -> dict:  # type: ignore
    import nats
    from release_helpers import HEALTHY, make_registry, release_doc

    from tidegate.config.schema import AppConfig
    from tidegate.release.local import LocalDriver
    from tidegate.release.spec import parse_release
    from tidegate.rollout import open_view

    exporter.set(**HEALTHY)
    await asyncio.sleep(1.5)  # healthy values scraped again
    bucket = f"bench_{i}_{time.time_ns()}"
    registry = make_registry(tmp / f"reg{i}" / "registry")
    app = AppConfig.model_validate({"nats": {"url": nats_url, "kv_bucket": bucket}})
    doc = release_doc(f"bench-{i}", prometheus_url=prom.url, port=port,
                      stages=[{"name": "shadow", "weight": 0, "duration": 0.5},
                              {"name": "canary", "weight": 10, "duration": 600},
                              {"name": "full", "weight": 100}])
    doc["spec"]["analysis"]["interval"] = INTERVAL
    driver = LocalDriver(parse_release(doc), state_dir=tmp / f"state{i}", app=app, registry=registry,
                         nats_url=nats_url)
    nc = await nats.connect(nats_url)
    view = await open_view(nc, bucket)
    task = asyncio.create_task(driver.run())
    await view.wait_for(lambda s: s.mode == "canary", 30)
    await asyncio.sleep(1.0)
    exporter.set(winrate_canary=0.40, sample_canary=500)
    t_set = time.monotonic()
    while not await asyncio.to_thread(_visible, prom.url, port):
        await asyncio.sleep(0.01)
    t_visible = time.monotonic()
    await view.wait_for(lambda s: s.mode == "disabled", 30)
    t_disabled = time.monotonic()
    await asyncio.wait_for(task, 10)
    await view.stop()
    await nc.close()
    assert driver.status is not None and driver.status.rollbackReason == "winrate"
    return {"set_to_visible_s": t_visible - t_set, "visible_to_disabled_s": t_disabled - t_visible,
            "set_to_disabled_s": t_disabled - t_set}


async def main_async(runs: int) -> dict:
    from release_helpers import Exporter

    from tidegate.infra.nats_server import NatsServer
    from tidegate.infra.prometheus_server import PrometheusServer

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nats_srv = NatsServer(tmp / "nats").start()
        prom = PrometheusServer(tmp / "prom", slots=1, scrape_interval="500ms").start()
        port = prom.claim_slot()
        exporter = Exporter(port)
        try:
            await asyncio.to_thread(prom.wait_up, port, 30)
            results = [await one_run(i, tmp, prom, port, nats_srv.url, exporter) for i in range(runs)]
        finally:
            exporter.close()
            prom.stop()
            nats_srv.stop()
    lat = [r["visible_to_disabled_s"] for r in results]
    target = INTERVAL + 1.0
    return {"benchmark": "release_breach_to_executor_view", "runs": runs, "analysis_interval_s": INTERVAL,
            "scrape_interval_s": 0.5, "target_s": target,
            "visible_to_disabled_s": {"p50": statistics.median(lat), "max": max(lat), "min": min(lat),
                                      "mean": statistics.fmean(lat)},
            "within_target": max(lat) <= target, "samples": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/release.json")
    args = parser.parse_args()
    result = asyncio.run(main_async(args.runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    v = result["visible_to_disabled_s"]
    print(f"breach visible -> executor sees mode=disabled: p50 {v['p50'] * 1000:.0f} ms, max {v['max'] * 1000:.0f} ms "
          f"(target <= {result['target_s']:.1f} s) -> {args.out}")


if __name__ == "__main__":
    main()
