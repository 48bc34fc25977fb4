"""Keep-alive simulator: accounting on hand-made traces, and no peeking at the future."""

import numpy as np
import pytest

from predictors.keepalive import make_policy, simulate, summarize
from predictors.keepalive.policies import FixedKeepAlive, NeverUnload, Oracle


def trace(*rows):
    return np.array(rows, dtype=float)


def test_fixed_keepalive_accounting():
    c = trace([1, 0, 0, 1, 0, 0, 0, 0, 1])
    res = simulate(c, FixedKeepAlive(2), memory_mb=np.array([10.0]))
    # t0 first (not counted); loaded t1,t2 (waste); t3 cold (gap 3 > 2); loaded t4,t5 (waste); t8 cold.
    assert res.first_invocations.tolist() == [1]
    assert res.cold_starts.tolist() == [2]
    assert res.wasted_minutes.tolist() == [4]
    s = summarize(res)
    assert s["cold_starts"] == 2 and s["first_invocations"] == 1 and s["invoked_minutes"] == 3
    assert s["cold_start_rate"] == pytest.approx(1.0)
    assert s["wasted_mb_minutes"] == pytest.approx(40.0)
    assert s["functions_with_cold_start"] == 1


def test_consecutive_minutes_and_counts_above_one_are_one_warm_instance():
    c = trace([3, 5, 1, 0, 2])
    res = simulate(c, FixedKeepAlive(1))
    assert res.cold_starts.tolist() == [1]  # t4: gap 3 > 1
    assert res.wasted_minutes.tolist() == [1]  # t3
    assert summarize(res)["invoked_minutes"] == 4


def test_first_invocation_is_never_a_cold_start_and_no_meta_counts_minutes():
    c = trace([0, 0, 1, 0, 0], [0, 0, 0, 0, 0])
    for policy in (FixedKeepAlive(10), make_policy("hybrid"), make_policy("mpcloud"), NeverUnload(), Oracle()):
        res = simulate(c, policy)
        assert res.cold_starts.sum() == 0
        assert res.first_invocations.tolist() == [1, 0]
        assert res.memory_mb.tolist() == [1.0, 1.0]
    assert simulate(c, FixedKeepAlive(10)).wasted_minutes.tolist() == [2, 0]


def test_bounds():
    c = trace([1, 0, 0, 1, 0, 0, 0, 0, 1], [0, 1, 1, 0, 0, 0, 0, 0, 0])
    never = simulate(c, NeverUnload(), memory_mb=np.array([2.0, 3.0]))
    assert never.cold_starts.sum() == 0
    assert never.wasted_minutes.tolist() == [6, 6]
    assert summarize(never)["wasted_mb_minutes"] == pytest.approx(6 * 2 + 6 * 3)
    oracle = simulate(c, Oracle())
    assert oracle.cold_starts.sum() == 0 and oracle.wasted_minutes.sum() == 0


def test_p75_excludes_single_invocation_functions():
    c = trace([1, 0, 0, 1, 0, 0, 1], [1, 0, 0, 0, 0, 0, 0])
    s = summarize(simulate(c, FixedKeepAlive(1)))
    assert s["p75_function_cold_pct"] == pytest.approx(100.0)  # only the first function counts
    assert s["p75_function_cold_pct_incl_first"] == pytest.approx(100.0)


class Recorder:
    """Wraps a policy and records each decision."""

    def __init__(self, inner):
        self.inner, self.name, self.decisions = inner, inner.name, []

    def reset(self, n, mem, future=None):
        self.inner.reset(n, mem, future)

    def loaded(self, t):
        d = np.array(self.inner.loaded(t), dtype=bool)
        self.decisions.append(d)
        return d

    def observe(self, t, counts):
        self.inner.observe(t, counts)


@pytest.mark.parametrize("name", ["fixed-10", "hybrid", "hybrid-short", "mpcloud", "never-unload"])
def test_no_peeking(name):
    rng = np.random.default_rng(1)
    a = (rng.random((40, 200)) < rng.random((40, 1)) * 0.3) * rng.integers(1, 5, (40, 200))
    a[:5, ::30] = 1  # a few timers
    cut = 120
    b = a.copy()
    b[:, cut:] = (rng.random((40, 200 - cut)) < 0.5)  # a different future from minute `cut` on
    ra, rb = Recorder(make_policy(name)), Recorder(make_policy(name))
    mem = rng.uniform(10, 300, 40)
    simulate(a, ra, mem)
    simulate(b, rb, mem)
    for t in range(cut + 1):  # the decision for minute `cut` itself must not see minute `cut`
        assert np.array_equal(ra.decisions[t], rb.decisions[t]), (name, t)
    assert any(not np.array_equal(x, y) for x, y in zip(ra.decisions[cut + 1:], rb.decisions[cut + 1:])) \
        or name == "never-unload"
