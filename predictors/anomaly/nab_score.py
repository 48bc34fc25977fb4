"""The NAB scoring rules, reimplemented (see ../shared/anomaly/nab/README.md, "Scoring").

A detector emits one score a_i in [0, 1] per row; row i is a detection iff a_i >= threshold. Each scored row has a
value (`row_values`): inside a label window a scaled sigmoid of its position (A_TP at the window's first row, ~0 at
its last), outside a false-positive cost (-A_FP before any window has ended, a smaller penalty just after one). A
window counts once, with its earliest detection, or -A_FN when missed. One threshold per profile for the whole file
set is chosen by sweeping every distinct score (`optimise_threshold`); the raw score is normalised between the null
detector (-A_FN per window) and the perfect one (A_TP per window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Profile:
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


PROFILES: dict[str, Profile] = {
    "standard": Profile(1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile(1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile(1.0, 0.11, 2.0),
}
NO_DETECTION = 1.1  # the threshold candidate that detects nothing


def sigmoid(y):
    """NAB's scaled sigmoid 2/(1+e^(5y)) - 1, and -1 beyond y = 3."""
    y = np.asarray(y, dtype=float)
    return np.where(y > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(y, 3.0))) - 1.0)


def probation_rows(n: int) -> int:
    """Rows at the start of a file that are never scored (the detector still sees them)."""
    return min(math.floor(0.15 * n), 750)


def row_values(n: int, windows: list[tuple[int, int]], profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """(value of detecting each row, window index of each row or -1) for a file of n rows.

    `windows` are inclusive row ranges, sorted and disjoint."""
    value = np.full(n, -profile.fp)
    win = np.full(n, -1, dtype=np.int64)
    i = np.arange(n)
    prev_end: int | None = None
    prev_len = 0
    bounds = sorted(windows) + [(n, n)]
    for k, (lo, hi) in enumerate(bounds):
        if prev_end is not None:  # rows after the previous window, up to this one
            gap = i[prev_end + 1:lo]
            pos = (gap - prev_end) / max(prev_len - 1, 1)
            value[prev_end + 1:lo] = profile.fp * sigmoid(pos)
        if k == len(bounds) - 1:
            break
        w = hi - lo + 1
        inside = i[lo:hi + 1]
        value[lo:hi + 1] = profile.tp * sigmoid(-(hi - inside + 1) / w) / float(sigmoid(-1.0))
        win[lo:hi + 1] = k
        prev_end, prev_len = hi, w
    return value, win


def file_score(scores: np.ndarray, windows: list[tuple[int, int]], profile: Profile, threshold: float) -> float:
    """Raw NAB score of one file at one threshold."""
    scores = np.asarray(scores, dtype=float)
    n = len(scores)
    value, win = row_values(n, windows, profile)
    p = probation_rows(n)
    det = np.zeros(n, dtype=bool)
    det[p:] = scores[p:] >= threshold
    total = float(value[det & (win < 0)].sum())
    for k in range(len(windows)):
        hit = det & (win == k)
        total += float(value[hit].max()) if hit.any() else -profile.fn
    return total


@dataclass
class Result:
    threshold: float
    raw: float
    score: float  # normalised, 100 = perfect, 0 = null


def normalise(raw: float, n_windows: int, profile: Profile) -> float:
    null, perfect = -profile.fn * n_windows, profile.tp * n_windows
    if perfect == null:  # no windows at all: every detection is a false positive
        return 100.0 + raw
    return 100.0 * (raw - null) / (perfect - null)


def _sweep_inputs(scored: list[tuple[np.ndarray, list[tuple[int, int]]]], profile: Profile):
    a_parts, v_parts, g_parts = [], [], []
    n_windows = 0
    for scores, windows in scored:
        scores = np.asarray(scores, dtype=float)
        value, win = row_values(len(scores), windows, profile)
        p = probation_rows(len(scores))
        a_parts.append(scores[p:])
        v_parts.append(value[p:])
        g_parts.append(np.where(win[p:] >= 0, win[p:] + n_windows, -1))
        n_windows += len(windows)
    return np.concatenate(a_parts), np.concatenate(v_parts), np.concatenate(g_parts), n_windows


def sweep(scored: list[tuple[np.ndarray, list[tuple[int, int]]]], profile: Profile) -> tuple[np.ndarray, np.ndarray, int]:
    """Summed raw score over all files at every candidate threshold: (thresholds descending, raw scores, #windows).

    The first candidate is NO_DETECTION; then each distinct score, highest first."""
    a, v, g, n_windows = _sweep_inputs(scored, profile)
    order = np.argsort(-a, kind="stable")
    a, v, g = a[order], v[order], g[order]
    delta = v.copy()
    inw = np.flatnonzero(g >= 0)
    if len(inw):
        # A window's score is the max value of its detected rows (-A_FN if none): as the threshold falls, it gains
        # the increase of its running max. Group rows by window (stable in threshold order) and cummax per group,
        # with an offset per window so that one accumulate serves all groups.
        gi = g[inw]
        by_win = inw[np.argsort(gi, kind="stable")]
        gw = g[by_win]
        offset = gw * 10.0 * (profile.tp + profile.fn + 1.0)
        run = np.maximum.accumulate(v[by_win] + offset) - offset
        prev = np.empty_like(run)
        prev[1:] = run[:-1]
        first = np.ones(len(gw), dtype=bool)
        first[1:] = gw[1:] != gw[:-1]
        prev[first] = -profile.fn
        delta[by_win] = run - prev
    total = -profile.fn * n_windows + np.cumsum(delta)
    last_of_tie = np.ones(len(a), dtype=bool)
    last_of_tie[:-1] = a[:-1] != a[1:]
    thresholds = np.concatenate([[NO_DETECTION], a[last_of_tie]])
    raws = np.concatenate([[-profile.fn * n_windows], total[last_of_tie]])
    return thresholds, raws, n_windows


def optimise_threshold(scored, profile: Profile) -> Result:
    """NAB's convention: the threshold that maximises the summed raw score over all files (ties -> highest)."""
    thresholds, raws, n_windows = sweep(scored, profile)
    k = int(np.argmax(raws))  # first maximum = highest threshold among ties
    return Result(float(thresholds[k]), float(raws[k]), normalise(float(raws[k]), n_windows, profile))


def score_at(scored, profile: Profile, threshold: float) -> Result:
    """Score of all files at a given (e.g. shipped) threshold."""
    raw = sum(file_score(s, w, profile, threshold) for s, w in scored)
    n_windows = sum(len(w) for _, w in scored)
    return Result(float(threshold), float(raw), normalise(raw, n_windows, profile))


def score_all(scored, threshold: float | None = None) -> dict[str, Result]:
    """Every profile: re-optimised threshold (threshold=None) or the given one."""
    return {name: (optimise_threshold(scored, p) if threshold is None else score_at(scored, p, threshold))
            for name, p in PROFILES.items()}
