"""The operator's scaling core run offline: recorded per-minute series as its range source, a fake clock.

`bench/scaling.py` measures the predictive policy through this -- the tick the operator runs, not a copy
of it -- and `tests/unit/test_scaling_equivalence.py` checks that it decides, minute by minute, what the
replay simulator's `predictors.replay.PredictivePolicy` decides under the replay's rules
(`predictors/replay.py`: a decision at minute t sees minutes < t; replicas requested at t serve from t + D).

Series are aligned at their start: trace minute 0 is epoch minute `EPOCH_MINUTE` (a multiple of 60, so the
forecaster's hourly profile rebuilds fall on the same trace minutes as in the replay). Series i joins the
core at its `decide_from[i]` (before that its replicas are `init[i]`, as in the replay) and leaves after
its last minute. Its whole past is loaded on the tick it joins (`refill_chunks` large enough), and
`min_history` is 0: the replay has no such gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mpcloud_operator.scaling.core import DEFAULT_QUERY, AppInput, Scaler, Settings
from predictors.online import OnlineConfig
from predictors.policy import Event

EPOCH_MINUTE = 6_000_000
NAMESPACE = "trace"


class SeriesSource:
    """A RangeSource over a matrix of per-minute series (row i = app `s{i}`), answering only minutes before
    `now` (the fake clock's minute): no peeking."""

    def __init__(self, X: np.ndarray, tick_seconds: float = 60.0) -> None:
        self.X = np.asarray(X, dtype=np.float64)
        self.tick = tick_seconds
        self.now = EPOCH_MINUTE
        self.labels = [{"namespace": NAMESPACE, "app": f"s{i}"} for i in range(len(self.X))]

    def query_range(self, query: str, start: float, end: float, step: float) -> tuple[list[dict[str, str]], np.ndarray]:
        n = int(round((end - start) / step)) + 1
        first = int(round(start / step)) - 1  # the sample stamped s holds minute s / step - 1
        idx = np.arange(first, first + n) - EPOCH_MINUTE
        ok = (idx >= 0) & (idx < self.X.shape[1]) & (idx + EPOCH_MINUTE < self.now)
        out = np.full((len(self.X), n), np.nan)
        out[:, ok] = self.X[:, idx[ok]]
        return self.labels, out


def run_core(series: Sequence[np.ndarray], capacities: Sequence[float], decide_from: Sequence[int],
             init: Sequence[int], *, startup_delay: int = 2, events: Sequence[Sequence[Event]] | None = None,
             min_replicas: int = 1, max_replicas: int = 100_000, online: OnlineConfig | None = None,
             timings: list | None = None) -> tuple[list[np.ndarray], list[list[str]]]:
    """Pods d_t and reasons per series, decided by the operator's scaling core minute by minute."""
    k = len(series)
    n = max(len(x) for x in series)
    X = np.full((k, n), np.nan)
    for i, x in enumerate(series):
        X[i, : len(x)] = x
    src = SeriesSource(X)
    s = Settings(tick_seconds=60.0, history_minutes=n, startup_delay=startup_delay, min_history=0,
                 refill_chunks=math.ceil(n / 720) + 1, online=online or OnlineConfig())
    scaler = Scaler(src, s)
    events = events or [()] * k
    apps = [AppInput(NAMESPACE, f"s{i}", f"uid-{i}", "predictive", DEFAULT_QUERY, capacity=float(capacities[i]),
                     min_replicas=min_replicas, max_replicas=max_replicas, current=int(init[i]),
                     up_percent=10**9, up_replicas=10**9, down_window=1, down_percent=100,
                     events=tuple(((EPOCH_MINUTE + e.start) * 60.0, (EPOCH_MINUTE + e.end) * 60.0, float(e.multiplier))
                                  for e in events[i]))
            for i in range(k)]
    pods = [np.full(len(x), int(init[i]), dtype=np.int64) for i, x in enumerate(series)]
    reasons = [["init"] * len(x) for x in series]
    for t in range(min(decide_from), n):
        src.now = EPOCH_MINUTE + t
        live = [i for i in range(k) if decide_from[i] <= t < len(series[i])]
        outs = scaler.tick([apps[i] for i in live], (EPOCH_MINUTE + t) * 60.0 + 1.0)
        for i, o in zip(live, outs):
            pods[i][t] = o.replicas
            reasons[i][t] = o.reason
            apps[i].current = o.replicas
        if timings is not None:
            timings.append(scaler.timings)
    return pods, reasons
