"""Keep-alive policy state: a save/restore round trip (through bytes) gives identical answers afterwards."""

from __future__ import annotations

import io

import numpy as np
import pytest

from predictors.keepalive import make_policy
from predictors.keepalive import state
from predictors.keepalive.policies import NEVER


def _roundtrip(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with np.load(io.BytesIO(buf.getvalue())) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", ["mpcloud", "hybrid", "fixed-10", "never-unload"])
def test_restored_policy_answers_like_the_saved_one(name: str) -> None:
    rng = np.random.default_rng(7)
    n, split, end = 40, 300, 600
    rates = rng.uniform(0.005, 0.4, n)
    counts = (rng.random((n, end)) < rates[:, None]).astype(float)
    counts[:5] = 0
    counts[:5, ::15] = 1  # a few timers
    original = make_policy(name)
    original.reset(n, np.ones(n))
    for t in range(split):
        original.loaded(t)
        original.observe(t, counts[:, t])
    saved = _roundtrip(state.dump(original))
    restored = make_policy(name)
    restored.reset(n, np.ones(n))
    state.load(restored, saved)
    for t in range(split, end):
        assert np.array_equal(original.loaded(t), restored.loaded(t)), f"minute {t}"
        original.observe(t, counts[:, t])
        restored.observe(t, counts[:, t])
    if name == "mpcloud":
        assert restored.lam == original.lam


def test_state_is_compact_and_fits_a_larger_policy() -> None:
    rng = np.random.default_rng(1)
    n = 200
    policy = make_policy("mpcloud")
    policy.reset(n, np.ones(n))
    for t in range(400):
        policy.loaded(t)
        policy.observe(t, (rng.random(n) < 0.05).astype(float))
    arrays = state.dump(policy)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    assert len(buf.getvalue()) / n < 2000  # bytes per function (dense histograms would be ~6,500)
    bigger = make_policy("mpcloud")
    bigger.reset(2 * n, np.ones(2 * n))
    state.load(bigger, _roundtrip(arrays))
    assert np.array_equal(bigger.last[:n], policy.last) and (bigger.last[n:] == NEVER).all()
    with pytest.raises(ValueError, match="saved state has 400"):
        small = make_policy("mpcloud")
        small.reset(n, np.ones(n))
        state.load(small, _roundtrip(state.dump(bigger)))
