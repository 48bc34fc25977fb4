"""Periodicity detection for per-minute traffic series (as Crane EHPA does: test 1 d / 7 d).

Two plain functions, usable by any module (forecasters, keep-alive policies):

* `detect_period(x, candidates)` -> the best candidate period in minutes, or None;
* `detect_period_batch(X, candidates)` -> one period per row (0 = none), vectorised over rows.

Method (autocorrelation on a detrended, log-compressed series):

1. NaN (missing minutes) are replaced by the series mean, negative values by 0, and the series is
   compressed with log1p so a few flash crowds do not dominate the correlation.
2. For each candidate period P with at least `min_cycles` cycles of history, the trend is removed by
   subtracting a trailing moving average of width exactly P (this average contains no period-P
   component, so the seasonality survives while level shifts and ramps are removed).
3. The score is the Pearson correlation between the detrended series and itself shifted by P.
   The candidate with the best score above `threshold` wins; a longer candidate (e.g. 7 d over 1 d)
   must beat a shorter one by `prefer_short_margin` because the shorter one adapts faster.

`spectral_periods` (FFT power spectrum) lists the dominant periods; it is a diagnostic helper.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DAY = 1440
WEEK = 7 * DAY
DEFAULT_CANDIDATES: tuple[int, ...] = (DAY, WEEK)


def _prepare(X: np.ndarray) -> np.ndarray:
    """2-D float copy with NaN -> row mean, negatives -> 0, log1p compression."""
    X = np.array(X, dtype=np.float64, ndmin=2, copy=True)
    X[X < 0] = 0.0
    nan = np.isnan(X)
    if nan.any():
        with np.errstate(invalid="ignore"):
            means = np.nanmean(np.where(nan, np.nan, X), axis=1)
        means = np.nan_to_num(means)
        X[nan] = np.broadcast_to(means[:, None], X.shape)[nan]
    return np.log1p(X)


def _period_scores(Y: np.ndarray, period: int) -> np.ndarray:
    """Correlation at lag `period` of each row of Y after removing a trailing P-wide moving average."""
    n, m = Y.shape
    if m < 2 * period + 2:
        return np.full(n, np.nan)
    c = np.cumsum(np.concatenate([np.zeros((n, 1)), Y], axis=1), axis=1)
    ma = (c[:, period:] - c[:, :-period]) / period  # ma[:, j] = mean(Y[:, j:j+P]); aligned to Y[:, j+P-1]
    Z = Y[:, period - 1 :] - ma  # detrended, length m - P + 1
    a, b = Z[:, period:], Z[:, :-period]
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / den
    r[den <= 1e-12] = np.nan
    return r


def detect_period_batch(
    X: np.ndarray,
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    *,
    min_cycles: int = 2,
    threshold: float = 0.3,
    prefer_short_margin: float = 0.05,
) -> np.ndarray:
    """Best period (minutes) for every row of X (shape (n_series, n_minutes)); 0 where none qualifies.

    A candidate is tested only if the row has at least `min_cycles` cycles (and 2 P + 2 minutes) of
    history. Rows that are constant (e.g. all zero) get 0.
    """
    Y = _prepare(X)
    n, m = Y.shape
    best = np.zeros(n, dtype=np.int64)
    best_score = np.full(n, -np.inf)
    for p in sorted(int(c) for c in candidates):
        if p < 2 or m < max(min_cycles, 2) * p + 2:
            continue
        s = _period_scores(Y, p)
        ok = np.isfinite(s) & (s >= threshold) & (s > best_score + np.where(best > 0, prefer_short_margin, 0.0))
        best[ok] = p
        best_score[ok] = s[ok]
    return best


def detect_period(
    x: np.ndarray,
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    *,
    min_cycles: int = 2,
    threshold: float = 0.3,
    prefer_short_margin: float = 0.05,
) -> int | None:
    """Best period of one series among `candidates` (minutes), or None if none is clearly present."""
    p = int(
        detect_period_batch(
            np.asarray(x, dtype=np.float64)[None, :],
            candidates,
            min_cycles=min_cycles,
            threshold=threshold,
            prefer_short_margin=prefer_short_margin,
        )[0]
    )
    return p or None


def period_score(x: np.ndarray, period: int) -> float:
    """Autocorrelation score in [-1, 1] of one series at `period` (NaN if history is too short)."""
    return float(_period_scores(_prepare(np.asarray(x, dtype=np.float64)[None, :]), int(period))[0])


def spectral_periods(x: np.ndarray, top_k: int = 3, min_period: int = 2) -> list[tuple[int, float]]:
    """Dominant periods (minutes) of one series by FFT power, as [(period, share of power)], strongest first."""
    y = _prepare(np.asarray(x, dtype=np.float64)[None, :])[0]
    y = y - y.mean()
    m = len(y)
    if m < 2 * min_period:
        return []
    power = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(m)
    power[0] = 0.0
    valid = (freqs > 0) & (freqs <= 1.0 / min_period)
    total = float(power[valid].sum()) or 1.0
    idx = np.argsort(power * valid)[::-1][:top_k]
    return [(int(round(1.0 / freqs[i])), float(power[i] / total)) for i in idx if valid[i] and power[i] > 0]
