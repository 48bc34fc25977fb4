"""Per-series forecasters with one interface: `fit(history)` then `predict(horizon, quantiles)`.

* `SeasonalNaive`      -- mean of the last `seasons` cycles at the same phase (period given or detected);
* `HoltWinters`        -- additive level + damped trend (+ seasonality when a period is known);
* `GBQuantile`         -- scikit-learn HistGradientBoostingRegressor(loss="quantile") on lags and
                          calendar features (direct multi-horizon: the horizon is a feature);
* `BacktestSelector`   -- backtests its candidates on the end of the history (pinball loss) and keeps
                          the best one per series.

All take a 1-D per-minute history (NaN = missing), are robust to zeros, NaN, level shifts and short
history (they fall back to a level forecast), and return a `Forecast` (point forecast and quantiles,
all clipped at 0). Quantiles of the simple models come from their in-sample residuals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from predictors.periodicity import DEFAULT_CANDIDATES, detect_period

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95)


@dataclass
class Forecast:
    """Forecast of the next `horizon` minutes: point (mean) and quantiles {q: array(horizon)}."""

    mean: np.ndarray
    quantiles: dict[float, np.ndarray] = field(default_factory=dict)

    def q(self, q: float) -> np.ndarray:
        return self.quantiles[q]


def fill_missing(x: np.ndarray) -> np.ndarray:
    """NaN -> linear interpolation between known minutes (edges: nearest known value; all-NaN -> 0)."""
    x = np.asarray(x, dtype=np.float64).copy()
    nan = np.isnan(x)
    if not nan.any():
        return x
    if nan.all():
        return np.zeros_like(x)
    idx = np.arange(len(x))
    x[nan] = np.interp(idx[nan], idx[~nan], x[~nan])
    return x


def pinball(y: np.ndarray, f: np.ndarray, q: float) -> float:
    d = np.asarray(y) - np.asarray(f)
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


class Forecaster(ABC):
    """Fit on a per-minute history, predict the next `horizon` minutes with quantiles."""

    name = "forecaster"

    @abstractmethod
    def fit(self, history: np.ndarray) -> Forecaster: ...

    @abstractmethod
    def predict(self, horizon: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast: ...

    def _with_residual_quantiles(self, point: np.ndarray, resid: np.ndarray, quantiles: Sequence[float]) -> Forecast:
        point = np.maximum(point, 0.0)
        resid = resid[np.isfinite(resid)]
        out: dict[float, np.ndarray] = {}
        for q in quantiles:
            off = float(np.quantile(resid, q)) if len(resid) >= 10 else 0.0
            out[float(q)] = np.maximum(point + off, 0.0)
        return Forecast(point, out)


class SeasonalNaive(Forecaster):
    """x[t + h] = mean(x[t + h - k P], k = 1..seasons); period None -> detected (1 d / 7 d), else level."""

    name = "seasonal-naive"

    def __init__(self, period: int | None = None, seasons: int = 1, candidates: Sequence[int] = DEFAULT_CANDIDATES):
        self.period_arg, self.seasons, self.candidates = period, seasons, tuple(candidates)

    def fit(self, history: np.ndarray) -> SeasonalNaive:
        self.x = fill_missing(history)
        p = self.period_arg if self.period_arg else detect_period(history, self.candidates)
        self.period = p if p and len(self.x) >= p + 1 else None
        return self

    def _point(self, x: np.ndarray, horizon: int) -> np.ndarray:
        n = len(x)
        if not self.period:
            return np.full(horizon, float(np.mean(x[-min(n, 15) :])) if n else 0.0)
        P = self.period
        h = np.arange(horizon)
        acc, cnt = np.zeros(horizon), np.zeros(horizon)
        for k in range(1, self.seasons + 1):
            src = n + h - k * P
            while (src >= n).any():  # horizon longer than the period: wrap to earlier cycles
                src = np.where(src >= n, src - P, src)
            ok = src >= 0
            acc[ok] += x[src[ok]]
            cnt[ok] += 1
        return np.where(cnt > 0, acc / np.maximum(cnt, 1), float(np.mean(x[-15:])))

    def predict(self, horizon: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        x = self.x
        point = self._point(x, horizon)
        # In-sample residuals of the same rule at lag P (or 1 minute for the level fallback).
        lag = self.period or 1
        resid = x[lag:] - x[:-lag] if len(x) > lag else np.zeros(0)
        return self._with_residual_quantiles(point, resid[-2880:], quantiles)


class HoltWinters(Forecaster):
    """Additive Holt-Winters with damped trend; seasonal only when a period is given/detected with 2 cycles."""

    name = "holt-winters"

    def __init__(
        self,
        period: int | None = None,
        alpha: float = 0.3,
        beta: float = 0.02,
        gamma: float = 0.1,
        phi: float = 0.9,
        candidates: Sequence[int] = DEFAULT_CANDIDATES,
    ):
        self.period_arg, self.alpha, self.beta, self.gamma, self.phi = period, alpha, beta, gamma, phi
        self.candidates = tuple(candidates)

    def fit(self, history: np.ndarray) -> HoltWinters:
        x = fill_missing(history)
        p = self.period_arg if self.period_arg else detect_period(history, self.candidates)
        self.period = p if p and len(x) >= 2 * p else None
        P = self.period
        a, b, g, phi = self.alpha, self.beta, self.gamma, self.phi
        if P:
            season = (x[:P] - x[:P].mean()).copy()
            level, trend, start = float(x[:P].mean()), 0.0, P
        else:
            season = np.zeros(1)
            level, trend, start = (float(x[0]) if len(x) else 0.0), 0.0, 1
        resid = []
        for t in range(start, len(x)):
            s = season[t % P] if P else 0.0
            f = level + phi * trend + s
            resid.append(x[t] - f)
            new_level = a * (x[t] - s) + (1 - a) * (level + phi * trend)
            trend = b * (new_level - level) + (1 - b) * phi * trend
            level = new_level
            if P:
                season[t % P] = g * (x[t] - level) + (1 - g) * s
        self.level, self.trend, self.season, self.n = level, trend, season, len(x)
        self.resid = np.asarray(resid[-2880:])
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        h = np.arange(1, horizon + 1)
        damp = np.cumsum(self.phi ** h)
        point = self.level + damp * self.trend
        if self.period:
            point = point + self.season[(self.n + h - 1) % self.period]
        return self._with_residual_quantiles(point, self.resid, quantiles)


class GBQuantile(Forecaster):
    """Gradient-boosted quantile regression on lags + calendar features (one model per quantile).

    Rows are (origin o, horizon h) pairs sampled from the history; features: h, x[o], means of the
    last 5 / 15 / 60 minutes at o, the value one day and one week before the target minute (NaN if
    unavailable: the model handles missing values natively), minute of day and day of week of the target
    (from `start_minute`, epoch or offset minutes).
    """

    name = "gb-quantile"

    def __init__(self, max_horizon: int = 60, quantiles: Sequence[float] = DEFAULT_QUANTILES, n_rows: int = 4000,
                 max_iter: int = 60, start_minute: int = 0, seed: int = 0):
        self.max_horizon, self.quantiles, self.n_rows, self.max_iter = max_horizon, tuple(quantiles), n_rows, max_iter
        self.start_minute, self.seed = start_minute, seed

    def _features(self, x: np.ndarray, c: np.ndarray, o: np.ndarray, h: np.ndarray) -> np.ndarray:
        n = len(x)

        def mean_last(w: int) -> np.ndarray:
            lo = np.maximum(o + 1 - w, 0)
            return (c[o + 1] - c[lo]) / (o + 1 - lo)

        tgt = o + h

        def lag(L: int) -> np.ndarray:
            src = tgt - L
            ok = (src >= 0) & (src <= o)
            return np.where(ok, x[np.clip(src, 0, n - 1)], np.nan)

        minute = self.start_minute + tgt
        return np.column_stack([h, x[o], mean_last(5), mean_last(15), mean_last(60), lag(1440), lag(10080),
                                minute % 1440, (minute // 1440) % 7])

    def fit(self, history: np.ndarray) -> GBQuantile:
        from sklearn.ensemble import HistGradientBoostingRegressor

        x = fill_missing(history)
        self.x = x
        self.c = np.concatenate([[0.0], np.cumsum(x)])
        n = len(x)
        self.models = {}
        if n < 120:
            return self
        rng = np.random.default_rng(self.seed)
        o = rng.integers(30, n - 1, size=self.n_rows)
        h = rng.integers(1, self.max_horizon + 1, size=self.n_rows)
        keep = o + h < n
        o, h = o[keep], h[keep]
        X = self._features(x, self.c, o, h)
        self.cols = ~np.all(np.isnan(X), axis=0)  # e.g. the 1-week lag on a short history
        X = X[:, self.cols]
        y = x[o + h]
        for q in self.quantiles:
            m = HistGradientBoostingRegressor(loss="quantile", quantile=q, max_iter=self.max_iter,
                                              learning_rate=0.1, max_leaf_nodes=15, random_state=self.seed)
            self.models[float(q)] = m.fit(X, y)
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        x, n = self.x, len(self.x)
        if not self.models:
            lvl = float(np.mean(x[-15:])) if n else 0.0
            return Forecast(np.full(horizon, lvl), {float(q): np.full(horizon, lvl) for q in quantiles})
        h = np.minimum(np.arange(1, horizon + 1), self.max_horizon)
        o = np.full(horizon, n - 1)
        X = self._features(x, self.c, o, h)[:, self.cols]
        out = {q: np.maximum(m.predict(X), 0.0) for q, m in self.models.items()}
        qs = sorted(out)
        for a, b in zip(qs, qs[1:]):  # no quantile crossing
            out[b] = np.maximum(out[b], out[a])
        point = out.get(0.5, out[qs[len(qs) // 2]])
        return Forecast(point, {float(q): out[float(q)] for q in quantiles if float(q) in out})


class BacktestSelector(Forecaster):
    """Backtest each candidate on the last `backtest` minutes (fit on what precedes, pinball loss at
    `score_quantile` averaged over rolling origins), keep the best, refit it on the whole history."""

    name = "selector"

    def __init__(self, candidates: Sequence[Forecaster] | None = None, backtest: int = 240, horizon: int = 15,
                 origins: int = 4, score_quantile: float = 0.9):
        self.candidates = list(candidates) if candidates else [SeasonalNaive(), HoltWinters()]
        self.backtest, self.horizon, self.origins, self.score_quantile = backtest, horizon, origins, score_quantile

    def fit(self, history: np.ndarray) -> BacktestSelector:
        x = np.asarray(history, dtype=np.float64)
        n = len(x)
        self.scores: dict[str, float] = {}
        best, best_score = self.candidates[0], np.inf
        if n > self.backtest + 60:
            step = max(1, self.backtest // self.origins)
            for cand in self.candidates:
                losses = []
                for k in range(self.origins):
                    o = n - self.backtest + k * step
                    y = x[o : o + self.horizon]
                    ok = np.isfinite(y)
                    if not ok.any():
                        continue
                    fc = cand.fit(x[:o]).predict(len(y), (self.score_quantile,))
                    losses.append(pinball(y[ok], fc.q(self.score_quantile)[ok], self.score_quantile))
                score = float(np.mean(losses)) if losses else np.inf
                self.scores[cand.name] = score
                if score < best_score:
                    best, best_score = cand, score
        self.chosen = best.fit(x)
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        return self.chosen.predict(horizon, quantiles)
