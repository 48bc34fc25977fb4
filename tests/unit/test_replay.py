"""Replay simulator rules (delay, no peeking, oracle) and the HPA baseline against hand-computed cases."""

import numpy as np
import pytest

from predictors.replay import (
    Env, FixedPeakPolicy, HPAPolicy, default_capacity, evaluate, oracle_plan, replay, serving_from_pods, simulate,
)


class Scripted:
    """Requests a fixed pod count per minute and records what it was shown."""

    name = "scripted"

    def __init__(self, plan):
        self.plan, self.seen = plan, []

    def reset(self, env):
        pass

    def decide(self, t, observed, current, ready):
        self.seen.append((t, len(observed), current, ready))
        with pytest.raises(IndexError):
            observed[t]  # the current minute is never visible
        assert not observed.flags.writeable
        return self.plan[t], "forecast"


def test_startup_delay_and_immediate_scale_down():
    d = np.array([1, 1, 5, 5, 5, 5, 2, 2])
    assert list(serving_from_pods(d, 2)) == [1, 1, 1, 1, 5, 5, 2, 2]
    assert list(serving_from_pods(d, 0)) == list(d)


def test_simulator_delay_view_and_counts():
    demand = np.array([10.0] * 10)
    plan = [1, 1, 1, 3, 3, 3, 3, 1, 1, 1]
    pol = Scripted(plan)
    env = Env(capacity=5.0, startup_delay=2)
    res = simulate(demand, pol, env, warmup=2, decide_from=2)
    assert [s[1] for s in pol.seen] == list(range(2, 10))  # decision at t sees t values (0 .. t-1)
    init = 2  # ceil(10 / 5) before decide_from
    assert list(res.pods) == [init, init, 1, 3, 3, 3, 3, 1, 1, 1]
    assert list(res.serving) == [2, 2, 1, 1, 1, 3, 3, 1, 1, 1]
    m = res.metrics
    # capacity 5 per pod, demand 10: under when serving < 2 -> minutes 2, 3, 4, 7, 8, 9
    assert m["under_minutes"] == 6
    assert m["replica_minutes"] == 1 + 1 + 1 + 3 + 3 + 1 + 1 + 1
    assert m["scaling_actions"] == 3  # 2->1 at minute 2, 1->3, 3->1


def test_metrics_hand_computed():
    demand = np.array([10.0, 10.0, 20.0, 20.0])
    env = Env(capacity=10.0, startup_delay=0)
    m = evaluate(demand, np.array([1, 1, 1, 2]), env, warmup=0)
    assert m["under_minutes"] == 1
    assert m["unserved_frac"] == pytest.approx(10 / 60)
    assert m["replica_minutes"] == 5
    assert m["scaling_actions"] == 1


def test_no_peeking_future_changes_do_not_change_past_decisions():
    rng = np.random.default_rng(0)
    a = rng.poisson(50, 3000).astype(float)
    b = a.copy()
    b[2000:] *= 5  # different future
    env = Env(capacity=10.0)
    for name in ("hpa", "kpa", "fixed-peak", "predictive"):
        from predictors.replay import make_policy

        ra = simulate(a, make_policy(name), env, warmup=600)
        rb = simulate(b, make_policy(name), env, warmup=600)
        # decision at minute t sees data up to t-1: identical through minute 2000
        assert np.array_equal(ra.pods[:2001], rb.pods[:2001]), name


def test_oracle_never_under_and_is_cheapest():
    rng = np.random.default_rng(1)
    demand = rng.poisson(30, 500) * (1 + 4 * (np.arange(500) % 100 > 80))
    env, w, res = replay(demand, ["oracle", "hpa", "predictive", "fixed-peak"], capacity=10.0, warmup=100)
    assert res["oracle"].metrics["under_minutes"] == 0
    for name in ("hpa", "predictive", "fixed-peak"):
        assert res[name].metrics["replica_minutes"] >= res["oracle"].metrics["replica_minutes"] or \
            res[name].metrics["under_minutes"] > 0
    # oracle pods cover every minute already in flight
    d = oracle_plan(np.array([10.0, 50.0, 10.0, 10.0]), Env(capacity=10.0, startup_delay=2))
    assert list(d) == [5, 5, 1, 1]


def test_default_capacity_rule():
    x = np.arange(1, 101, dtype=float)
    assert default_capacity(x) == pytest.approx(np.percentile(x, 95) / 10)
    assert default_capacity(np.zeros(10)) == 1.0
    sparse = np.zeros(10_000)
    sparse[::500] = 50.0
    assert default_capacity(sparse) == pytest.approx(np.percentile(sparse, 99.9) / 10)


def test_hpa_hand_computed_scale_up_tolerance_and_rate():
    env = Env(capacity=10.0, startup_delay=2)
    pol = HPAPolicy()
    pol.reset(env)
    # 4 ready pods, load 28 -> utilisation 0.7 = target -> keep
    assert pol.decide(10, np.array([28.0]), 4, 4) == (4, "reactive")
    # load 30 -> ratio 0.75/0.7 = 1.07 within tolerance 0.1 -> keep
    assert pol.decide(11, np.array([30.0]), 4, 4)[0] == 4
    # load 70 -> desired ceil(70 / 7) = 10
    assert pol.decide(12, np.array([70.0]), 4, 4)[0] == 10
    # rate limit: 1 pod, load 1000 -> desired 143, limit per minute 1 -> 5 -> 10 -> 20 -> 40
    pol.reset(env)
    assert pol.decide(1, np.array([1000.0]), 1, 1)[0] == 40


def test_hpa_scale_down_stabilisation_window():
    env = Env(capacity=10.0, startup_delay=0)
    pol = HPAPolicy()
    pol.reset(env)
    out = []
    cur = 10
    for t, load in enumerate([70.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0]):
        cur, _ = pol.decide(t, np.array([load]), cur, cur)
        out.append(cur)
    # recommendation 10 stays the max of the last 5 minutes until it leaves the window
    assert out == [10, 10, 10, 10, 10, 1, 1]


def test_fixed_peak_uses_history_peak():
    env = Env(capacity=10.0)
    pol = FixedPeakPolicy()
    pol.reset(env)
    assert pol.decide(3, np.array([5.0, 95.0, 20.0]), 1, 1)[0] == 10


def test_replay_command_writes_json_and_png_and_rejects_an_empty_window(tmp_path):
    import gzip
    import json

    from click.testing import CliRunner

    from mpcloud_operator.commands.replay import replay as replay_cmd

    trace = tmp_path / "t.csv.gz"
    start = 14_963_040  # epoch minutes (1998-06-14 00:00 UTC)
    with gzip.open(trace, "wt") as fh:
        fh.write("timestamp_minute,series_id,count\n")
        for t in range(600):
            fh.write(f"{start + t},site,{100 + (900 if 300 <= t < 330 else 0) + (t % 7)}\n")
    out = tmp_path / "out"
    args = ["--trace", str(trace), "--policies", "hpa,predictive,oracle", "--out", str(out)]
    r = CliRunner().invoke(replay_cmd, [*args, "--window", f"{start + 200},{start + 400}"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "t-site.json").read_text())
    assert set(report["policies"]) == {"hpa", "predictive", "oracle"}
    assert report["policies"]["oracle"]["under_minutes"] == 0
    assert (out / "t-site.png").stat().st_size > 1000
    bad = CliRunner().invoke(replay_cmd, [*args, "--window", "0,100"])  # trace offsets instead of epoch minutes
    assert bad.exit_code != 0 and "does not overlap" in bad.output


def test_plot_rejects_an_empty_window(tmp_path):
    from predictors.plot import plot_replay

    x = np.full(100, 10.0)
    env, _, res = replay(x, ["hpa", "oracle"], warmup=20)
    with pytest.raises(ValueError, match="empty"):
        plot_replay(x, res, env, tmp_path / "p.png", start=150, end=120)
