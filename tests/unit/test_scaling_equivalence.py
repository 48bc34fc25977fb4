"""One policy, one code path: the operator's scaling core decides what the replay measures, minute by minute.

The replay simulator runs `predictors.replay.PredictivePolicy` on each series alone; the operator's core
(`mpcloud_operator.scaling.core.Scaler.tick`, driven by `scaling.offline.run_core` over a trace-backed range
source and a fake clock) runs all series at once as apps of one forecaster. Pods and reasons must be equal
at every minute -- including a declared 30x event, model refits and a data gap.
"""

from __future__ import annotations

import math

import numpy as np

from mpcloud_operator.scaling.offline import run_core
from predictors.policy import Event
from predictors.replay import Env, PredictivePolicy, default_capacity, default_warmup, simulate


def traces() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    t = np.arange(3 * 1440)
    daily = rng.poisson(40 + 35 * np.sin(2 * np.pi * t / 1440)).astype(float)
    daily[2000:2006] *= 6  # a flash crowd
    bursty = rng.poisson(3, 2100).astype(float) * (1 + 20 * (rng.random(2100) < 0.01))
    busy = rng.poisson(120, 1800).astype(float)
    busy[1500:1540] = 0.0  # a data gap (exact zeros in a busy series)
    return [daily, bursty, busy]


def test_live_core_decides_what_the_replay_decides_minute_by_minute():
    xs = traces()
    events = [(), (Event(1900, 1960, 30.0),), ()]
    for j, evs in enumerate(events):
        for ev in evs:
            xs[j][ev.start : ev.end] *= ev.multiplier
    caps, warm, init, replayed = [], [], [], []
    for x, evs in zip(xs, events):
        env = Env(default_capacity(x), 2, events=evs)
        w = default_warmup(len(x))
        res = simulate(x, PredictivePolicy(), env, warmup=w)
        d0 = max(1, w - min(60, w // 2))
        caps.append(env.capacity)
        warm.append(d0)
        init.append(int(max(1, math.ceil(x[d0 - 1] / env.capacity - 1e-9))))
        replayed.append(res)
    pods, reasons = run_core(xs, caps, warm, init, events=events)
    for i, res in enumerate(replayed):
        diff = np.flatnonzero(pods[i] != res.pods)
        assert not len(diff), (i, diff[:5], pods[i][diff[:5]], res.pods[diff[:5]])
        assert reasons[i][warm[i]:] == res.reasons[warm[i]:]
    assert {"forecast", "event"} <= set(reasons[1]) and len(set(replayed[0].pods.tolist())) > 5
