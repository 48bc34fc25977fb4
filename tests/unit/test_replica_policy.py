"""Replica policy rules: max of estimates, events (pre-scale), panic, stabilisation, bounds."""

import numpy as np

from predictors.policy import PolicyConfig, ReplicaPolicy
from predictors.replay import Env, Event, replay


def test_forecast_covers_minutes_in_flight_and_bounds():
    p = ReplicaPolicy(PolicyConfig(capacity=10.0, startup_delay=2, max_replicas=8))
    d = p.decide(100, [10.0, 55.0, 20.0, 5.0], current=2, last_load=10.0)
    assert (d.replicas, d.reason) == (6, "forecast")  # max over minutes t .. t+D
    d = p.decide(101, [200.0, 200.0, 200.0], current=6, last_load=10.0)
    assert (d.replicas, d.reason) == (8, "bound")


def test_reactive_floor():
    p = ReplicaPolicy(PolicyConfig(capacity=10.0))
    d = p.decide(5, [5.0, 5.0, 5.0], current=1, last_load=40.0)
    assert (d.replicas, d.reason) == (4, "reactive")


def test_panic_when_load_above_band():
    p = ReplicaPolicy(PolicyConfig(capacity=10.0, panic=True, panic_factor=1.5))
    d = p.decide(5, [20.0, 20.0, 20.0], current=2, last_load=60.0, prev_load=30.0, last_upper=20.0)
    assert d.reason == "panic" and d.replicas == 18  # ceil((60 * 1.5 + 30 * 3) / 10)


def test_scale_down_stabilisation_and_step():
    p = ReplicaPolicy(PolicyConfig(capacity=10.0, down_window=3, max_down_step=0.5))
    cur = p.decide(0, [100.0] * 3, current=1, last_load=0.0).replicas
    assert cur == 10
    seq = []
    for t in range(1, 6):
        cur = p.decide(t, [10.0] * 3, current=cur, last_load=0.0).replicas
        seq.append(cur)
    assert seq == [10, 10, 5, 2, 1]  # held for the window, then at most -50 % per minute


def test_event_prescale_before_start():
    cfg = PolicyConfig(capacity=10.0, startup_delay=2, event_lead=5, events=(Event(110, 130, 30.0),))
    p = ReplicaPolicy(cfg)
    band = [10.0] * 8
    assert p.decide(100, band, current=1, last_load=10.0).replicas == 1  # start beyond D + lead
    d = p.decide(103, band, current=1, last_load=10.0)
    assert (d.replicas, d.reason) == (38, "event")  # ceil(10 * 30 * 1.25 / 10)


def test_declared_30x_promotion_fully_provisioned_from_first_minute():
    rng = np.random.default_rng(3)
    t = np.arange(3 * 1440)
    demand = rng.poisson(100 * (1.5 + np.sin(2 * np.pi * t / 1440))).astype(float)
    start, end = 2 * 1440 + 1200, 2 * 1440 + 1320  # 20:00 - 22:00 of day 3
    demand[start:end] *= 30
    env, w, res = replay(demand, ["predictive", "hpa"], capacity=25.0, events=[Event(start, end, 30.0)], warmup=1440)
    need = np.ceil(demand[start:end] / env.capacity)
    served = res["predictive"].serving[start:end]
    assert served[0] >= need[0]
    assert (served >= need).all()
    assert (res["hpa"].serving[start:end] < need).any()  # the reactive baseline is late


def test_panic_off_by_default_and_event_upper_used_for_events():
    p = ReplicaPolicy(PolicyConfig(capacity=10.0))
    d = p.decide(5, [20.0, 20.0, 20.0], current=2, last_load=60.0, prev_load=30.0, last_upper=20.0)
    assert d.reason == "reactive" and d.replicas == 6
    cfg = PolicyConfig(capacity=10.0, startup_delay=2, event_lead=5, event_margin=0.0, events=(Event(103, 130, 10.0),))
    d = ReplicaPolicy(cfg).decide(100, [10.0] * 8, current=1, last_load=10.0, event_upper=[20.0] * 8)
    assert (d.replicas, d.reason) == (20, "event")  # ceil(20 * 10 / 10)


def test_no_scale_down_stabilisation_by_default():
    p = ReplicaPolicy(PolicyConfig(capacity=10.0))
    assert p.decide(0, [100.0] * 3, current=1, last_load=0.0).replicas == 10
    assert p.decide(1, [10.0] * 3, current=10, last_load=0.0).replicas == 1  # the band covers t .. t + D
