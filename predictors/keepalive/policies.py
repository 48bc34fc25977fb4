"""Keep-alive / pre-warm policies, vectorised over functions (one state array per quantity).

Interface (see `simulator.simulate`): `reset(n_functions, memory_mb, future=None)`, then per minute
`loaded(t) -> bool[n_functions]` (may use only minutes `< t`) followed by `observe(t, counts_t)`.

Idle time: at minute resolution the idle time of a function is the *gap* `g >= 1` in minutes between two
consecutive invoked minutes (1 = invoked again in the next minute). A window `[lo, hi]` means "loaded
during minutes `last + lo .. last + hi`" after the last invoked minute `last`: `lo = 1` keeps the
instance loaded right after the execution (no pre-warm), `lo > 1` unloads it and pre-warms it at `lo`.
"""

from __future__ import annotations

import numpy as np

NEVER = -(10**9)  # "never invoked" sentinel for the last invoked minute


class Policy:
    name = "policy"
    needs_future = False

    def reset(self, n_functions: int, memory_mb: np.ndarray, future: np.ndarray | None = None) -> None:
        self.n = n_functions
        self.memory_mb = np.asarray(memory_mb, dtype=np.float64)
        self.last = np.full(n_functions, NEVER, dtype=np.int64)

    def loaded(self, t: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def observe(self, t: int, counts: np.ndarray) -> None:
        self.last[np.asarray(counts) > 0] = t


class WindowPolicy(Policy):
    """Loaded while `lo <= t - last <= hi` (per-function windows)."""

    def reset(self, n_functions, memory_mb, future=None):
        super().reset(n_functions, memory_mb, future)
        self.lo = np.ones(n_functions, dtype=np.int64)
        self.hi = np.zeros(n_functions, dtype=np.int64)

    def loaded(self, t):
        k = t - self.last
        return (self.last != NEVER) & (k >= self.lo) & (k <= self.hi)


class FixedKeepAlive(WindowPolicy):
    """Industry default: keep the instance `minutes` after its last invocation (AWS ~10 min, Azure 20 min)."""

    def __init__(self, minutes: int):
        self.minutes = int(minutes)
        self.name = f"fixed-{self.minutes}"

    def reset(self, n_functions, memory_mb, future=None):
        super().reset(n_functions, memory_mb, future)
        self.hi[:] = self.minutes


class NeverUnload(Policy):
    """Upper bound on memory: loaded from the first invocation on (zero cold starts after the first)."""

    name = "never-unload"

    def loaded(self, t):
        return self.last != NEVER


class Oracle(Policy):
    """Lower bound: loaded exactly in the invoked minutes (it reads the future; the only policy that does)."""

    name = "oracle"
    needs_future = True

    def reset(self, n_functions, memory_mb, future=None):
        super().reset(n_functions, memory_mb, future)
        self._invoked = np.asarray(future) > 0

    def loaded(self, t):
        # From the second invoked minute on: the first one is cold under every policy.
        return self._invoked[:, t] & (self.last != NEVER)


class HybridHistogram(WindowPolicy):
    """Hybrid histogram policy of Shahrad et al., "Serverless in the Wild", USENIX ATC 2020 (Section 4.2).

    Reimplemented from the paper's description, per function instead of per application:

    * histogram of idle times with 1-minute bins over a range of 4 h (`range_minutes=240`); idle times
      beyond the range are counted as out-of-bounds (OOB);
    * pre-warm window = head (5th percentile) of the histogram minus a 10 % margin (rounded down),
      keep-alive until the tail (99th percentile) plus a 10 % margin (rounded up); a pre-warm window of 0
      means the instance is not unloaded after the execution;
    * the histogram is representative when the coefficient of variation of its bin counts is at least 2
      (`cv_threshold`) and it holds at least `min_idle_times` idle times; otherwise the policy falls back
      to the standard keep-alive of the whole range (4 h, `fallback_minutes`) without pre-warm. With no
      idle time observed yet (right after the first invocation) it also uses that fallback;
    * when most idle times (> 50 %) are OOB it forecasts the next idle time (the paper uses ARIMA; here an
      exponentially weighted mean of the OOB idle times, `oob_alpha`) and pre-warms at the forecast minus
      15 %, keeping alive until the forecast plus 15 % (`oob_margin`).

    `hybrid` uses the paper's values; `hybrid-short` only replaces the 4 h fallback by 10 minutes.
    """

    def __init__(self, name="hybrid", range_minutes=240, head_pct=5.0, tail_pct=99.0, margin=0.10,
                 cv_threshold=2.0, min_idle_times=1, fallback_minutes=240, oob_fraction=0.5,
                 oob_margin=0.15, oob_alpha=0.5):
        self.name = name
        self.B = int(range_minutes)
        self.head_q, self.tail_q = head_pct / 100.0, tail_pct / 100.0
        self.margin = margin
        self.cv_threshold = cv_threshold
        self.min_idle_times = min_idle_times
        self.fallback = int(fallback_minutes)
        self.oob_fraction = oob_fraction
        self.oob_margin = oob_margin
        self.oob_alpha = oob_alpha

    def reset(self, n_functions, memory_mb, future=None):
        super().reset(n_functions, memory_mb, future)
        self.hist = np.zeros((n_functions, self.B + 1))  # column g = idle time g minutes (column 0 unused)
        self.oob = np.zeros(n_functions)
        self.oob_pred = np.zeros(n_functions)

    def observe(self, t, counts):
        inv = np.flatnonzero(np.asarray(counts) > 0)
        if len(inv) == 0:
            return
        prev = self.last[inv]
        has = prev != NEVER
        f, gap = inv[has], t - prev[has]
        inr = gap <= self.B
        self.hist[f[inr], gap[inr]] += 1
        fo, go = f[~inr], gap[~inr].astype(float)
        first = self.oob[fo] == 0
        self.oob_pred[fo] = np.where(first, go, self.oob_alpha * go + (1 - self.oob_alpha) * self.oob_pred[fo])
        self.oob[fo] += 1
        self.last[inv] = t
        self.lo[inv], self.hi[inv] = self.windows(inv)

    def windows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pre-warm start, keep-alive end) for the given functions from their current histograms."""
        h = self.hist[rows, 1:]
        n_in = h.sum(axis=1)
        n_all = n_in + self.oob[rows]
        mean = n_in / self.B
        std = np.sqrt(np.maximum((h * h).mean(axis=1) - mean * mean, 0.0))
        cv = np.divide(std, mean, out=np.zeros_like(mean), where=mean > 0)
        representative = (n_in > 0) & (n_all >= self.min_idle_times) & (cv >= self.cv_threshold)
        cum = np.cumsum(h, axis=1)
        # Percentile = first bin whose cumulative count reaches the fraction (bins are 1..B minutes).
        head = np.argmax(cum >= self.head_q * n_in[:, None] - 1e-9, axis=1) + 1
        tail = np.argmax(cum >= self.tail_q * n_in[:, None] - 1e-9, axis=1) + 1
        lo = np.maximum(1, np.floor(head * (1 - self.margin))).astype(np.int64)
        hi = np.ceil(tail * (1 + self.margin) - 1e-9).astype(np.int64)
        lo = np.where(representative, lo, 1)
        hi = np.where(representative, hi, self.fallback)
        oob = (n_all > 0) & (self.oob[rows] > self.oob_fraction * n_all)
        pred = self.oob_pred[rows]
        lo = np.where(oob, np.maximum(1, np.floor(pred * (1 - self.oob_margin))), lo).astype(np.int64)
        hi = np.where(oob, np.ceil(pred * (1 + self.oob_margin)), hi).astype(np.int64)
        return lo, hi
