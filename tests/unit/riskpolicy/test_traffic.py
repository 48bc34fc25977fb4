"""Traffic watch: a bot burst on a steady series alarms once near its onset; steady traffic does not."""

from __future__ import annotations

import numpy as np

from mpcloud_operator.riskpolicy import traffic
from predictors.anomaly.detector import Params

APP = traffic.Series("MiniProgramApp", "mpcloud.io/v1alpha1", "ns", "shop")
FN = traffic.Series("CloudFunction", "mpcloud.io/v1alpha1", "ns", "login")


def test_burst_alarms_at_onset():
    # Steady Gaussian noise still raises a few alarms (the detector's novelty reacts to new extremes: ~0.5-0.8 %
    # of ticks at medium on i.i.d. noise, measured over 3 seeds); the burst alarms at its first tick, once.
    rng = np.random.default_rng(1)
    w = traffic.TrafficWatch()
    alarms = []
    for t in range(2000):
        app = 20 + rng.normal(0, 1.5) + (400 if 1800 <= t < 1820 else 0)
        alarms += [(t, s.name) for s in w.tick({APP: app, FN: 5 + rng.normal(0, 0.5)})]
    assert [a for a in alarms if a[0] >= 1800] == [(1800, "shop")]
    assert len([a for a in alarms if a[0] < 1800]) < 0.015 * 1800


def test_sensitivity_threshold_and_forgetting():
    assert traffic.TrafficWatch(sensitivity="high").effective_threshold < Params().threshold
    assert traffic.TrafficWatch(threshold=0.3, sensitivity="low").effective_threshold == 0.3
    w = traffic.TrafficWatch(forget_after=3)
    w.tick({APP: 1.0, FN: 1.0})
    for _ in range(4):
        w.tick({APP: 1.0})
    assert len(w) == 1


def test_finding():
    f = traffic.to_finding(APP, 0.91, 420.0, "ns/risk", "Audit")
    assert (f.rule, f.result, f.kind, f.name) == ("traffic.anomaly", "warn", "MiniProgramApp", "shop")
    assert "420" in f.message
