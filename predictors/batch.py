"""Vectorised forecasting of many series per tick (the operator calls this for every app each minute).

`forecast_batch(history, horizon, quantiles, periods)` works on a matrix (n_series, n_minutes) with
numpy across series -- no per-series Python loop:

* missing minutes (NaN) are replaced by the row's recent mean;
* level = EWMA (alpha 0.3) of the last 30 minutes; trend = difference of the last two 15-minute means,
  damped (phi 0.9) over the horizon;
* rows with a period P (given, or detected by `detect_period_batch`): seasonal naive mean of the last
  up to 3 cycles at the target phase, scaled by (recent mean + 1) / (same window one cycle earlier + 1)
  (handles level shifts and growth); other rows: level + damped trend;
* quantiles: the point forecast times exp(Q_q) of the log1p residuals of the same rule over the last
  `resid_window` minutes (one value per row), so bands are per-series calibrated.

Detecting periods is the expensive part (O(n m) per candidate); call `detect_period_batch` once an hour
and pass `periods` on the per-minute ticks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from predictors.periodicity import DEFAULT_CANDIDATES, detect_period_batch


@dataclass
class BatchForecast:
    mean: np.ndarray  # (n_series, horizon)
    quantiles: dict[float, np.ndarray]  # q -> (n_series, horizon)
    periods: np.ndarray  # (n_series,), 0 = none


def _fill_nan(X: np.ndarray) -> np.ndarray:
    nan = np.isnan(X)
    if not nan.any():
        return X
    tail = X[:, -60:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        fill = np.nanmean(tail, axis=1)
    fill = np.nan_to_num(fill)
    return np.where(nan, fill[:, None], X)


def forecast_batch(
    history: np.ndarray,
    horizon: int,
    quantiles: Sequence[float] = (0.5, 0.9, 0.95),
    periods: np.ndarray | None = None,
    *,
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    seasons: int = 3,
    resid_window: int = 120,
    alpha: float = 0.3,
    phi: float = 0.9,
    dtype: type = np.float32,
) -> BatchForecast:
    """Point forecasts and quantile bands of the next `horizon` minutes for every row of `history`."""
    X = np.asarray(history, dtype=dtype)
    if X.ndim != 2:
        raise ValueError("history must be 2-D (n_series, n_minutes)")
    n, m = X.shape
    X = _fill_nan(X)
    X = np.maximum(X, 0)
    H = int(horizon)
    if periods is None:
        periods = detect_period_batch(X, candidates)
    periods = np.asarray(periods, dtype=np.int64)
    # Level (EWMA over the last L minutes) and damped trend.
    L = min(30, m)
    w = alpha * (1 - alpha) ** np.arange(L)[::-1]
    w = (w / w.sum()).astype(dtype)
    level = X[:, m - L :] @ w
    k = min(15, m // 2)
    trend = (X[:, m - k :].mean(axis=1) - X[:, m - 2 * k : m - k].mean(axis=1)) / max(k, 1) if k > 0 else np.zeros(n, dtype)
    damp = np.cumsum(phi ** np.arange(1, H + 1)).astype(dtype)
    point = np.maximum(level[:, None] + trend[:, None] * damp[None, :], 0)
    # In-sample residuals of the level rule at horizon 1..: x[t] vs mean of x[t-H-5 .. t-H).
    R = min(resid_window, max(m - H - 5, 0))
    log_resid = None
    if R > 0:
        c = np.concatenate([np.zeros((n, 1), dtype), np.cumsum(X, axis=1, dtype=dtype)], axis=1)
        t = np.arange(m - R, m)
        ref = (c[:, t - H] - c[:, t - H - 5]) / 5
        log_resid = np.log1p(X[:, t]) - np.log1p(np.maximum(ref, 0))
    # Seasonal rows.
    seas = np.nonzero((periods > 0) & (periods + H <= m))[0]
    if len(seas):
        P = periods[seas][:, None]
        h = np.arange(H)[None, :]
        acc = np.zeros((len(seas), H), dtype)
        cnt = np.zeros((len(seas), H), dtype)
        rows = seas[:, None]
        for s in range(1, seasons + 1):
            src = m + h - s * P
            ok = src >= 0
            acc += np.where(ok, X[rows, np.clip(src, 0, m - 1)], 0)
            cnt += ok
        base = acc / np.maximum(cnt, 1)
        W = min(30, m)
        recent = X[seas, m - W :].mean(axis=1)
        j = np.clip(m - W - periods[seas][:, None] + np.arange(W)[None, :], 0, m - 1)
        before = X[rows, j].mean(axis=1)
        ratio = np.clip((recent + 1) / (before + 1), 0.05, 20)
        point[seas] = np.maximum((base + 1) * ratio[:, None] - 1, 0)
        if log_resid is not None:
            t = np.arange(m - R, m)[None, :]
            src = np.clip(t - P, 0, m - 1)
            log_resid[seas] = np.log1p(X[rows, t]) - np.log1p(X[rows, src] * ratio[:, None])
    out: dict[float, np.ndarray] = {}
    for q in quantiles:
        if log_resid is None or q == 0.5:
            out[float(q)] = point
            continue
        Q = np.quantile(log_resid, q, axis=1).astype(dtype)
        out[float(q)] = np.maximum((point + 1) * np.exp(np.maximum(Q, 0))[:, None] - 1, point)
    return BatchForecast(point, out, periods)
