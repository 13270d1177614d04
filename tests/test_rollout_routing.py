"""Deterministic routing: stable across processes, monotone in the fraction, close to the fraction."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from tidegate.rollout import RolloutState, bucket, is_canary, route


def test_bucket_is_stable_across_processes() -> None:
    here = [bucket(1337, f"sig-{i}") for i in range(50)]
    code = "from tidegate.rollout import bucket; print([bucket(1337, f'sig-{i}') for i in range(50)])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123"})
    assert str(here) == other.stdout.strip()
    assert all(0 <= b < 10_000 for b in here)


def test_canary_share_is_close_to_the_fraction_and_the_seed_reshuffles() -> None:
    ids = [f"s{i}" for i in range(20_000)]
    share = sum(is_canary(1337, i, 0.10) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    a = {i for i in ids if is_canary(1, i, 0.1)}
    b = {i for i in ids if is_canary(2, i, 0.1)}
    assert len(a & b) < 0.2 * len(a)  # a new salt picks mostly different signals


@given(st.text(min_size=1, max_size=20), st.floats(0, 1), st.floats(0, 1), st.integers(0, 2**31))
def test_raising_the_fraction_never_flips_a_canary_back(signal_id: str, f1: float, f2: float, seed: int) -> None:
    lo, hi = sorted((f1, f2))
    if is_canary(seed, signal_id, lo):
        assert is_canary(seed, signal_id, hi)


def test_routes_by_mode() -> None:
    assert route(RolloutState(mode="disabled", canary_fraction=1.0), "x") == "paper"
    assert route(RolloutState(mode="full"), "x") == "full"
    assert route(RolloutState(mode="canary", canary_fraction=1.0), "x") == "canary"
    assert route(RolloutState(mode="canary", canary_fraction=0.0), "x") == "paper"
