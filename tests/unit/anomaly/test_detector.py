"""The online detector: no peeking, vectorised = one series at a time, detects planted anomalies once."""

from __future__ import annotations

import numpy as np
import pytest

from predictors.anomaly.detector import Detector, Params


def _run(x: np.ndarray, period: int = 0, params: Params = Params()) -> np.ndarray:
    """x: (ticks, series) -> scores of the same shape."""
    det = Detector(x.shape[1], period, params)
    return np.stack([det.update(row) for row in x])


def _daily(n=3000, period=288, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 + 30 * np.sin(2 * np.pi * t / period) + rng.normal(0, 3, n)


def test_scores_use_no_future_values():
    x = np.stack([_daily(seed=s) for s in range(3)], axis=1)
    full = _run(x, 288)
    y = x.copy()
    y[2000:] = 1e6  # a different future
    assert np.array_equal(_run(y, 288)[:2000], full[:2000])
    assert np.array_equal(_run(x[:1500], 288), full[:1500])


def test_batched_equals_one_series_at_a_time():
    x = np.stack([_daily(seed=s) for s in range(4)], axis=1)
    x[1200:, 2] += 80  # one series shifts
    batched = _run(x, 288)
    for j in range(4):
        assert np.allclose(_run(x[:, j:j + 1], 288)[:, 0], batched[:, j])


def test_scores_are_in_range_and_silent_during_warmup():
    x = _daily()[:, None]
    s = _run(x, 288)
    assert s.shape == x.shape and np.all((s >= 0) & (s < 1))
    assert np.all(s[:Params().warmup] == 0)


def test_a_planted_level_shift_is_reported_once_at_its_onset():
    x = _daily()
    clean = _run(x[:, None], 288)[:, 0]
    x[2000:] += 120  # far outside anything seen
    s = _run(x[:, None], 288)[:, 0]
    thr = Params().threshold
    hits = np.flatnonzero(s >= thr)
    assert 2000 in hits
    assert len(hits[(hits > 2000) & (hits < 2288)]) <= 2  # the refractory keeps one episode to one or two alarms
    assert np.sum(clean[600:] >= thr) <= 3  # the clean series is quiet once the season is learned


def test_a_bot_burst_on_request_counts_raises_a_detection():
    rng = np.random.default_rng(7)
    base = rng.poisson(200 + 100 * np.sin(2 * np.pi * np.arange(4 * 1440) / 1440))
    burst = base.astype(float)
    burst[5000:5030] *= 4  # scalper burst: 4x for half an hour
    s = _run(burst[:, None], 1440)[:, 0]
    assert s[5000:5030].max() >= Params().threshold
    assert s[4000:5000].max() < s[5000:5030].max()


def test_missing_samples_score_zero_and_do_not_disturb():
    x = _daily()
    y = x.copy()
    y[1000] = np.nan
    s = _run(y[:, None], 288)[:, 0]
    assert s[1000] == 0.0
    assert np.all(np.isfinite(s))


def test_params_are_checked():
    with pytest.raises(ValueError):
        Detector(3, 0, Params(means=(1.0, 0.1), gains=(1.0,)))


def test_flat_and_constant_series_are_quiet():
    x = np.stack([np.full(2000, 5.0), np.zeros(2000)], axis=1)
    assert np.all(_run(x) == 0)
