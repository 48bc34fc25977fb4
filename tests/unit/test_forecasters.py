"""Forecasters, periodicity and batch forecasting on synthetic series with known answers."""

import numpy as np
import pytest

from predictors.batch import forecast_batch
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


def test_forecast_batch_shapes_and_known_answers():
    rows = np.vstack([SINE[: 3 * DAY], np.full(3 * DAY, 7.0), np.r_[np.full(2 * DAY, 5.0), np.full(DAY, 40.0)]])
    rows[1, -10:-5] = np.nan
    fb = forecast_batch(rows, 15, (0.5, 0.95))
    assert fb.mean.shape == (3, 15) and fb.quantiles[0.95].shape == (3, 15)
    assert list(fb.periods) == [DAY, 0, 0]
    np.testing.assert_allclose(fb.mean[0], truth(3 * DAY, 15), rtol=0.02)
    np.testing.assert_allclose(fb.mean[1], 7.0, atol=0.01)
    np.testing.assert_allclose(fb.mean[2], 40.0, atol=0.5)
    assert (fb.quantiles[0.95] >= fb.mean - 1e-4).all()


def _run_online(x, D=2, capacity=1.0, **kw):
    from predictors.online import OnlineConfig, OnlineForecaster

    fc = OnlineForecaster(D + 1, OnlineConfig(**kw), capacity=capacity)
    for t in range(1, len(x) + 1):
        fc.observe_until(x[:t])
        fc.step(t)
    return fc


def test_online_band_covers_window_peak_and_follows_cost():
    rng = np.random.default_rng(0)
    x = rng.poisson(50, 3000).astype(float)
    cheap = _run_online(x, capacity=5.0, under_cost=1.0)
    safe = _run_online(x, capacity=5.0, under_cost=1000.0)
    t = len(x)
    assert safe.upper_window(t) > cheap.upper_window(t)  # a costlier miss -> a wider band
    assert safe.upper_window(t) >= np.percentile(x, 99)  # covers the window peak, not the mean


def test_online_learns_a_timer_and_block_structure():
    x = np.zeros(3 * 1440)
    x[::60] = 30.0  # hourly timer
    fc = _run_online(x, capacity=3.0, under_cost=100.0)
    t = len(x)  # next spike at minute t (t % 60 == 0)
    assert fc.upper_window(t) >= 30.0  # the spike at minute t is covered


def test_online_treats_zero_gap_in_busy_series_as_missing():
    x = np.full(600, 100.0)
    x[500:520] = 0.0
    fc = _run_online(x[:520])
    assert np.isnan(fc.clean[-1]) and fc.level == pytest.approx(100.0)


def test_online_chooses_sqrt_scale_for_count_noise_and_log_for_multiplicative():
    """Poisson noise around a daily cycle: the spread grows like sqrt(level) -> sqrt scale; noise that is a
    fixed fraction of a level spanning two orders of magnitude -> log scale."""
    rng = np.random.default_rng(1)
    t = np.arange(4 * 1440)
    lam = 200 + 180 * np.sin(2 * np.pi * t / 1440)
    poisson = rng.poisson(lam).astype(float)
    assert _run_online(poisson, capacity=40.0, under_cost=100.0).transform == "sqrt"
    mult = (np.exp(3 + 2 * np.sin(2 * np.pi * t / 1440)) * rng.lognormal(0, 0.3, len(t))).round()
    assert _run_online(mult, capacity=20.0, under_cost=100.0).transform == "log"


def test_online_holt_candidate_projects_a_ramp():
    from predictors.online import OnlineConfig, OnlineForecaster

    fc = OnlineForecaster(3, OnlineConfig(damping=1.0), capacity=1.0)
    x = 10.0 + 2.0 * np.arange(400)  # +2 per minute
    fc.observe_until(x)
    t = len(x)
    # the window peak is x[t + 2] = x[-1] + 6: Holt projects the slope, the EWMAs lag behind the last value
    assert fc.window_point("holt", t) == pytest.approx(x[-1] + 6.0, abs=0.5)
    assert fc.window_point("slow", t) < x[-1]


def test_online_calibrates_rising_minutes_separately():
    from predictors.online import OnlineConfig, OnlineForecaster

    fc = OnlineForecaster(3, OnlineConfig(), capacity=1.0)
    fc.observe_until(np.array([10.0] * 50 + [30.0]))  # last minute above the slow EWMA
    rising = fc.run_bin()
    fc2 = OnlineForecaster(3, OnlineConfig(), capacity=1.0)
    fc2.observe_until(np.array([10.0] * 50 + [5.0]))
    falling = fc2.run_bin()
    assert rising == falling + len(OnlineConfig().run_edges)
    assert fc.n_bins() == 1 + 2 * len(OnlineConfig().run_edges)
