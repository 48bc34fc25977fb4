"""Forecasters, periodicity and batch forecasting on synthetic series with known answers."""

import numpy as np
import pytest

from predictors.forecasters import BacktestSelector, GBQuantile, HoltWinters, SeasonalNaive
from predictors.periodicity import detect_period, detect_period_batch

DAY = 1440
T = np.arange(4 * DAY)
SINE = 100 + 50 * np.sin(2 * np.pi * T / DAY)


def truth(n0, h):
    t = np.arange(n0, n0 + h)
    return 100 + 50 * np.sin(2 * np.pi * t / DAY)


def test_detect_period_daily_weekly_and_none():
    rng = np.random.default_rng(0)
    assert detect_period(SINE + rng.normal(0, 5, len(SINE))) == DAY
    assert detect_period(rng.poisson(5, 4 * DAY).astype(float)) is None
    assert detect_period(SINE[:DAY]) is None  # short history: fewer than 2 cycles
    t = np.arange(21 * DAY)
    weekly = np.where((t // DAY) % 7 == 3, 200.0, 10.0) + rng.normal(0, 1, len(t))  # one busy weekday
    assert detect_period(weekly, (DAY, 7 * DAY)) == 7 * DAY
    timer = np.zeros(3 * DAY)
    timer[::60] = 1.0
    assert detect_period(timer, (30, 60, DAY)) == 60


def test_detect_period_robust_to_nan_and_trend():
    x = SINE * (1 + T / len(T))  # growing
    x[100:200] = np.nan
    assert detect_period(x) == DAY
    assert list(detect_period_batch(np.vstack([SINE, np.zeros_like(SINE)]), (DAY,))) == [DAY, 0]


@pytest.mark.parametrize("model", [SeasonalNaive(), HoltWinters(period=DAY), SeasonalNaive(seasons=3)])
def test_seasonal_models_on_pure_sine(model):
    fc = model.fit(SINE).predict(60)
    np.testing.assert_allclose(fc.mean, truth(len(SINE), 60), atol=1.0)
    assert (fc.q(0.95) >= fc.mean - 1e-9).all()


def test_step_level_shift():
    x = np.r_[np.full(600, 10.0), np.full(600, 50.0)]
    x[50:70] = np.nan  # missing data
    for model in (SeasonalNaive(), HoltWinters(), BacktestSelector()):
        np.testing.assert_allclose(model.fit(x).predict(5).mean, 50.0, atol=1.0)


def test_weekly_pattern_seasonal_naive():
    t = np.arange(21 * DAY)
    x = np.where((t // DAY) % 7 >= 5, 20.0, 100.0)  # weekends low
    fc = SeasonalNaive(period=7 * DAY).fit(x).predict(DAY)
    expected = np.where(((len(x) + np.arange(DAY)) // DAY) % 7 >= 5, 20.0, 100.0)
    np.testing.assert_allclose(fc.mean, expected)


def test_zeros_and_short_history():
    for model in (SeasonalNaive(), HoltWinters(), BacktestSelector(), GBQuantile(n_rows=300, max_iter=10)):
        fc = model.fit(np.zeros(50)).predict(10)
        assert np.all(fc.mean == 0)
        assert np.all(np.isfinite(fc.q(0.9)))


def test_gb_quantile_monotone_and_reasonable():
    rng = np.random.default_rng(1)
    x = SINE[: 3 * DAY] + rng.normal(0, 3, 3 * DAY)
    fc = GBQuantile(max_horizon=30, n_rows=1500, max_iter=30).fit(x).predict(30)
    assert (fc.q(0.95) >= fc.q(0.5)).all() and (fc.q(0.9) >= fc.q(0.5)).all()
    assert np.abs(fc.q(0.5) - truth(3 * DAY, 30)).mean() < 15


def test_selector_prefers_seasonal_on_sine():
    sel = BacktestSelector().fit(SINE)
    assert sel.chosen.name in ("seasonal-naive", "holt-winters")
    np.testing.assert_allclose(sel.predict(30).mean, truth(len(SINE), 30), atol=2.0)


def _run_online(x, D=2, capacity=1.0, **kw):
    from predictors.online import OnlineConfig, OnlineForecaster

    fc = OnlineForecaster(1, D + 1, OnlineConfig(**kw), capacity=capacity, memory=len(x) + 1)
    for v in x:
        fc.observe([v])
    fc.select(fc.due())
    return fc


def _upper_window(fc, t):
    return float(fc.bands(t, fc.h)[0][0])


def test_online_band_covers_window_peak_and_follows_cost():
    rng = np.random.default_rng(0)
    x = rng.poisson(50, 3000).astype(float)
    cheap = _run_online(x, capacity=5.0, under_cost=1.0)
    safe = _run_online(x, capacity=5.0, under_cost=1000.0)
    t = len(x)
    assert _upper_window(safe, t) > _upper_window(cheap, t)  # a costlier miss -> a wider band
    assert _upper_window(safe, t) >= np.percentile(x, 99)  # covers the window peak, not the mean


def test_online_learns_a_timer_and_block_structure():
    x = np.zeros(3 * 1440)
    x[::60] = 30.0  # hourly timer
    fc = _run_online(x, capacity=3.0, under_cost=100.0)
    t = len(x)  # next spike at minute t (t % 60 == 0)
    assert _upper_window(fc, t) >= 30.0  # the spike at minute t is covered


def test_online_treats_zero_gap_in_busy_series_as_missing():
    x = np.full(600, 100.0)
    x[500:520] = 0.0
    fc = _run_online(x[:520])
    assert np.isnan(fc.last()[0]) and fc.level[0] == pytest.approx(100.0)


def test_online_chooses_sqrt_scale_for_count_noise_and_log_for_multiplicative():
    """Poisson noise around a daily cycle: the spread grows like sqrt(level) -> sqrt scale; noise that is a
    fixed fraction of a level spanning two orders of magnitude -> log scale."""
    from predictors.online import TRANSFORM_NAMES

    rng = np.random.default_rng(1)
    t = np.arange(4 * 1440)
    lam = 200 + 180 * np.sin(2 * np.pi * t / 1440)
    poisson = rng.poisson(lam).astype(float)
    assert TRANSFORM_NAMES[_run_online(poisson, capacity=40.0, under_cost=100.0).transform[0]] == "sqrt"
    mult = (np.exp(3 + 2 * np.sin(2 * np.pi * t / 1440)) * rng.lognormal(0, 0.3, len(t))).round()
    assert TRANSFORM_NAMES[_run_online(mult, capacity=20.0, under_cost=100.0).transform[0]] == "log"


def test_online_holt_candidate_projects_a_ramp():
    fc = _run_online(10.0 + 2.0 * np.arange(400), damping=1.0)  # +2 per minute
    x_last, t = 10.0 + 2.0 * 399, 400
    # the window peak is x[t + 2] = x[-1] + 6: Holt projects the slope, the EWMAs lag behind the last value
    P = fc.window_points(t)[0]
    assert P[fc.candidates.index("holt")] == pytest.approx(x_last + 6.0, abs=0.5)
    assert P[fc.candidates.index("slow")] < x_last


def test_online_calibrates_rising_minutes_separately():
    from predictors.online import OnlineConfig

    rising = _run_online(np.array([10.0] * 50 + [30.0])).run_bin()[0]  # last minute above the slow EWMA
    fc = _run_online(np.array([10.0] * 50 + [5.0]))
    assert rising == fc.run_bin()[0] + len(OnlineConfig().run_edges)
    assert fc.n_bins() == 1 + 2 * len(OnlineConfig().run_edges)


def test_online_rows_are_independent_and_load_equals_observing():
    """Many rows at once give each row the bands it gets alone; `load` (a row's history replayed) ends in the
    state of observing it all along."""
    from predictors.online import OnlineForecaster

    rng = np.random.default_rng(3)
    t = np.arange(3 * 1440)
    X = np.vstack([rng.poisson(50 + 40 * np.sin(2 * np.pi * t / 1440)), rng.poisson(5, len(t)),
                   np.where(t % 60 == 0, 30, 0)]).astype(float)
    caps = np.array([10.0, 1.0, 3.0])
    together = OnlineForecaster(3, 3, capacity=caps, memory=len(t))
    for j in range(len(t)):
        together.observe(X[:, j])
    together.select(together.due())
    loaded = OnlineForecaster(3, 3, capacity=caps, first=0, now=len(t), memory=len(t))
    loaded.load([2, 0], X[[2, 0]])
    loaded.select([0, 2])
    for r in range(3):
        alone = _run_online(X[r], capacity=caps[r])
        np.testing.assert_allclose(together.bands(len(t), 3, [r])[0], alone.bands(len(t), 3)[0], rtol=1e-9)
    np.testing.assert_allclose(loaded.bands(len(t), 3, [0, 2])[0], together.bands(len(t), 3, [0, 2])[0], rtol=1e-9)
