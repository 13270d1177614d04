"""The rollout state in a real NATS KV bucket: idempotent writes and a live view for services."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from tidegate.rollout import RolloutKV, RolloutState, open_view

pytestmark = pytest.mark.real


def test_view_sees_default_then_each_write_and_put_is_idempotent(nats_server) -> None:  # type: ignore
    async def main() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            bucket = f"rv_{time.time_ns()}"
            changes: list[tuple[str, str]] = []
            view = await open_view(nc, bucket, on_change=lambda old, new: changes.append((old.mode, new.mode)))
            assert view.state.mode == "disabled" and view.state.active_model_id is None
            store = await RolloutKV.open(nc.jetstream(), bucket)
            canary = RolloutState(mode="canary", canary_fraction=0.1, active_model_id="a", candidate_model_id="b",
                                  release="r", revision=1)
            assert await store.put(canary) is True
            got = await view.wait_for(lambda s: s.mode == "canary", 2)
            assert got.canary_fraction == 0.1 and got.candidate_model_id == "b"
            assert await store.put(canary.model_copy(update={"revision": 2})) is False  # same routing
            await store.kv.put("rollout", b"{not json")  # a bad value never crashes the view
            await store.put(RolloutState(mode="disabled", active_model_id="a", release="r", revision=3))
            await view.wait_for(lambda s: s.mode == "disabled" and s.revision == 3, 2)
            assert changes[-1] == ("canary", "disabled")
            assert len(await store.kv.history("rollout")) == 3
            await view.stop()
        finally:
            await nc.close()

    asyncio.run(main())
