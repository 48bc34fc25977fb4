"""Keep-alive policies: the hybrid histogram rules of Serverless in the Wild, mpcloud, CLI."""

import gzip
import json

import numpy as np
import pytest

from predictors.keepalive import HybridHistogram, MpcloudPolicy, make_policy, simulate
from predictors.keepalive.report import below_fixed_curve


def hybrid_with_idle_times(idle_times, policy=None):
    p = policy or HybridHistogram()
    p.reset(1, np.ones(1))
    for g in idle_times:
        if g <= p.B:
            p.hist[0, g] += 1
        else:
            p.oob_pred[0] = g if p.oob[0] == 0 else p.oob_alpha * g + (1 - p.oob_alpha) * p.oob_pred[0]
            p.oob[0] += 1
    lo, hi = p.windows(np.array([0]))
    return int(lo[0]), int(hi[0])


def test_hybrid_windows_follow_head_and_tail_percentiles_with_10pct_margins():
    # 100 idle times: 5 at 30 min, 90 spread over 40..49, 4 at 60, 1 at 100 (CV of bin counts 4.4 >= 2).
    idle = [30] * 5 + [g for g in range(40, 50) for _ in range(9)] + [60] * 4 + [100]
    lo, hi = hybrid_with_idle_times(idle)
    assert lo == 27  # pre-warm: 5th percentile (30) minus 10 %
    assert hi == 66  # keep-alive until the 99th percentile (60) plus 10 %


def test_hybrid_head_below_one_minute_means_no_unload():
    lo, hi = hybrid_with_idle_times([1] * 50 + [2] * 45 + [5] * 5)
    assert lo == 1 and hi == 6  # pre-warm window 0: stays loaded after the execution; 5 * 1.1 -> 6


def test_hybrid_not_representative_uses_the_4h_keepalive():
    # Uniform over 100 bins: CV of the 240 bin counts is 1.18 < 2.
    assert hybrid_with_idle_times(list(range(20, 120))) == (1, 240)
    assert hybrid_with_idle_times([]) == (1, 240)  # no idle time yet (right after the first invocation)
    short = HybridHistogram(name="hybrid-short", fallback_minutes=10)
    assert hybrid_with_idle_times(list(range(20, 120)), short) == (1, 10)
    assert hybrid_with_idle_times([7], HybridHistogram(min_idle_times=5)) == (1, 240)


def test_hybrid_out_of_bounds_uses_the_forecast():
    lo, hi = hybrid_with_idle_times([300, 300, 300, 10])  # 3 of 4 idle times beyond 4 h
    assert (lo, hi) == (255, 345)  # 300 -15 % / +15 %


def test_hybrid_start_up_in_simulation():
    c = np.zeros((1, 300))
    c[0, [0, 200]] = 1
    res = simulate(c, make_policy("hybrid"))
    # 4 h keep-alive after the first call covers the 200-min gap; then the window is [180, 220] (beyond the end).
    assert res.cold_starts.sum() == 0 and res.wasted_minutes[0] == 199
    res = simulate(c, make_policy("hybrid-short"))
    assert res.cold_starts.sum() == 1 and res.wasted_minutes[0] == 10


def loaded_matrix(policy, c, mem=None):
    policy.reset(c.shape[0], np.ones(c.shape[0]) if mem is None else mem)
    out = np.zeros(c.shape, dtype=bool)
    for t in range(c.shape[1]):
        out[:, t] = policy.loaded(t)
        policy.observe(t, c[:, t])
    return out


def test_timer_windows_mpcloud_tighter_than_hybrid():
    c = np.zeros((1, 480))
    c[0, 3::30] = 1
    hy = simulate(c, make_policy("hybrid"))
    mp = simulate(c, make_policy("mpcloud"))
    assert hy.cold_starts.sum() == 0
    assert mp.cold_starts.sum() <= 1  # at most the first period
    # Steady state (second half): hybrid pre-warms at 27, mpcloud at the period itself.
    idle = c[0] == 0
    hy_waste = (loaded_matrix(make_policy("hybrid"), c)[0] & idle)[240:].sum()
    mp_waste = (loaded_matrix(make_policy("mpcloud"), c)[0] & idle)[240:].sum()
    assert hy_waste == 3 * 8  # minutes 27, 28, 29 (the call at 30 restarts the window)
    assert mp_waste <= 8
    # After a few periods the hybrid window is [27, 33]: 6 idle loaded minutes per period.
    p = make_policy("hybrid")
    p.reset(1, np.ones(1))
    for t in range(0, 151):
        p.observe(t, c[:, t + 3])
    assert (p.lo[0], p.hi[0]) == (27, 33)


def test_mpcloud_weighs_memory():
    rng = np.random.default_rng(3)
    base = (rng.random((1, 600)) < 0.05).astype(float)
    c = np.repeat(base, 2, axis=0)
    res = simulate(c, MpcloudPolicy(), memory_mb=np.array([10.0, 1000.0]))
    assert res.wasted_minutes[0] > res.wasted_minutes[1]  # the small function is kept warm longer
    assert res.cold_starts[0] <= res.cold_starts[1]


def test_make_policy_names():
    assert make_policy("fixed-30").name == "fixed-30"
    assert make_policy("mpcloud-l500").lam == 500
    with pytest.raises(ValueError):
        make_policy("lru")


def test_below_fixed_curve():
    rows = [{"policy": "fixed-1", "cold_starts": 100, "wasted_mb_minutes": 10.0},
            {"policy": "fixed-10", "cold_starts": 10, "wasted_mb_minutes": 100.0},
            {"policy": "mpcloud", "cold_starts": 20, "wasted_mb_minutes": 50.0}]
    assert below_fixed_curve(rows) is True
    rows[2]["cold_starts"] = 80
    assert below_fixed_curve(rows) is False


def test_keepalive_command(tmp_path):
    from click.testing import CliRunner

    from mpcloud_operator.commands.keepalive import keepalive

    trace, meta = tmp_path / "t.csv.gz", tmp_path / "m.csv"
    with gzip.open(trace, "wt") as fh:
        fh.write("timestamp_minute,series_id,count\n")
        for sid, period in (("a", 7), ("b", 30), ("c", 1)):
            for t in range(120):
                fh.write(f"{t},{sid},{1 if t % period == 0 else 0}\n")
    meta.write_text("series_id,avg_allocated_mb\na,100\nb,200\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(keepalive, ["--trace", str(trace), "--meta", str(meta), "--out", str(out),
                                       "--policies", "fixed-sweep,hybrid,mpcloud,oracle"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "keepalive.json").read_text())
    names = [p["policy"] for p in data["policies"]]
    assert names[:2] == ["fixed-1", "fixed-2"] and "hybrid" in names and "mpcloud" in names
    ref = next(p for p in data["policies"] if p["policy"] == "fixed-10")
    assert ref["cold_starts_vs_fixed10"] == 1.0
    assert data["waste_unit"] == "MB·min"
    assert (out / "keepalive-pareto.png").stat().st_size > 1000
    bad = CliRunner().invoke(keepalive, ["--trace", str(trace), "--out", str(out), "--policies", "nope"])
    assert bad.exit_code != 0


def test_mpcloud_budget_tracks_shadow_hybrid_memory():
    rng = np.random.default_rng(5)
    c = (rng.random((60, 400)) < rng.random((60, 1)) * 0.2).astype(float)
    mem = rng.uniform(10, 300, 60)
    mp = simulate(c, make_policy("mpcloud"), mem)
    hy = simulate(c, make_policy("hybrid"), mem)
    ratio = mp.wasted_mb_minutes.sum() / hy.wasted_mb_minutes.sum()
    # Budget 0.9 x hybrid's idle memory, steered online; a soft budget (integral controller, bounded lag).
    assert 0.8 < ratio < 1.1
    fixed = MpcloudPolicy(cold_cost_minutes=500)
    assert fixed.budget is None and make_policy("mpcloud-l500").budget is None


def test_mpcloud_long_gaps_beyond_4h_are_learned():
    # A job every 360 min (beyond the 1-minute histogram range): after a few periods it is pre-warmed.
    c = np.zeros((1, 360 * 8 + 1))
    c[0, ::360] = 1
    res = simulate(c, MpcloudPolicy(cold_cost_minutes=2000))
    assert res.cold_starts.sum() <= 3
    assert res.wasted_minutes[0] < 0.5 * c.shape[1]  # not kept warm all the time


def test_mpcloud_timer_round_period_from_meta():
    # A 60-min timer: with trigger=timer the second period is pre-warmed on a narrow window.
    c = np.zeros((1, 400))
    c[0, 5::60] = 1
    plain = MpcloudPolicy(cold_cost_minutes=1500)
    timer = MpcloudPolicy(cold_cost_minutes=1500, triggers=["timer"])
    lp, lt = loaded_matrix(plain, c), loaded_matrix(timer, c)
    idle = c[0] == 0
    # Between the 2nd and 3rd invocation (minutes 66..124): the timer window is tighter.
    assert (lt[0] & idle)[66:125].sum() < (lp[0] & idle)[66:125].sum()
    assert lt[0, 125]  # the 3rd invocation is warm


def test_mpcloud_first_gap_hazard_counts_functions_that_never_return():
    # 40 functions invoked once and never again, 10 that return after 3 min: the pooled first-gap hazard
    # soon stops keeping one-shot functions warm for long.
    c = np.zeros((50, 300))
    for i in range(50):
        c[i, 2 * i] = 1
        if i >= 40:
            c[i, 2 * i + 3] = 1
    p = MpcloudPolicy(cold_cost_minutes=200)
    simulate(c, p)
    assert p.first_exposure[0].sum() > 40 * 50  # waiting functions counted as at risk
    h = p.first_events[0] / np.maximum(p.first_exposure[0], 1)
    assert h[3] > 0.1 and h[100:241].max() == 0.0
