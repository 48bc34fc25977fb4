"""mpcloud keep-alive / pre-warm policy: per-minute hazard of the next invocation against its memory cost.

For one function, let `g` be the gap (minutes) from its last invoked minute to the next one. Being loaded
at elapsed minute `k` avoids a cold start with probability `P(g = k)` and wastes the function's memory for
that minute with probability `P(g > k)`. With a cold start priced at lambda (`cold_cost_minutes`)
minutes of a median-memory function, the expected cost of each minute is independent of the others, so
the optimal policy for a renewal process is: **be loaded at elapsed minute k iff
P(g = k) > (memory / median memory / lambda) · P(g > k)**. The
loaded set is any set of offsets, not one window: a timer with period P gets exactly {P} (or {P-1..P+1}
with jitter), an hourly job running for 3 minutes gets {1} ∪ {58}, a busy function {1, 2, ...}, a rare
function nothing. Small functions are kept warm longer than big ones (the decision weighs memory).

What it learns, all online (decisions at minute t use only minutes < t):

* per-function gap histogram, 1-minute bins up to `range_minutes`, exponentially decayed
  (`decay` per observed gap) so the estimate follows drifting periods and daily changes;
* a population prior (mean of the functions' normalised histograms, refreshed every `prior_every`
  minutes) mixed in with `prior_weight` pseudo-gaps, so a function with few gaps starts from what typical
  functions do instead of a blind 4 h keep-alive; periodicity appears as mass concentrated on one bin;
* periodicity: after `run` consecutive gaps equal to the previous one (±1 min, ±2 %), the smoothing and
  prior pseudo-counts shrink by 1 / (1 + `periodic_boost` · run), so a timer's window is its exact period;
* out-of-range gaps (longer than the histogram): when most gaps are out of range, a forecast of the
  next gap (exponential mean) and a pre-warm window of ±`oob_margin` around it, used only when its memory
  cost is below one cold start.

Default lambda = 1500 minutes: chosen on the Azure 2019 shared sample as a round value that spends less
memory than the hybrid policy there (a cost knob, not a fitted model: `mpcloud-lN` sets lambda = N).
Each decision is O(1) per function (a lookup in a per-function bool row); the rows of the functions
invoked in a minute are recomputed in O(range) each, all functions every `prior_every` minutes.
"""

from __future__ import annotations

import numpy as np

from predictors.keepalive.policies import NEVER, Policy


class MpcloudPolicy(Policy):
    def __init__(self, cold_cost_minutes: float = 1500.0, range_minutes: int = 240, prior_weight: float = 1.0,
                 decay: float = 0.99, prior_every: int = 30, oob_margin: float = 0.05, spread: float = 0.25,
                 spread_weight: float = 2.0, default_prior_weight: float = 10.0,
                 periodic_boost: float = 4.0, name: str = "mpcloud"):
        self.name = name
        self.lam = float(cold_cost_minutes)
        self.B = int(range_minutes)
        self.alpha = float(prior_weight)
        self.decay = float(decay)
        self.prior_every = int(prior_every)
        self.oob_margin = float(oob_margin)
        self.spread = float(spread)
        self.spread_weight = float(spread_weight)
        self.default_prior_weight = float(default_prior_weight)
        self.periodic_boost = float(periodic_boost)

    def reset(self, n_functions, memory_mb, future=None):
        super().reset(n_functions, memory_mb, future)
        B = self.B
        # Waste price of one loaded idle minute, in cold starts. Memory is relative to the median function,
        # so lambda reads "minutes of a typical function's memory worth one cold start" with or without meta.
        rel = self.memory_mb / max(float(np.median(self.memory_mb)), 1e-9)
        self.cost = rel / self.lam
        self.hist = np.zeros((n_functions, B + 2), dtype=np.float32)  # col k = gap k; col B+1 = out of range
        self.smooth = np.zeros((n_functions, B + 2), dtype=np.float32)  # same gaps, each spread to g(1±spread)
        self.mask = np.zeros((n_functions, B + 2), dtype=bool)  # loaded at elapsed minute k (B+1: beyond)
        self.default_prior = default_gap_prior(B)
        self.prior = self.default_prior.copy()
        self.oob_pred = np.zeros(n_functions)
        self.prev_gap = np.zeros(n_functions, dtype=np.int64)
        self.run = np.zeros(n_functions)  # consecutive gaps equal (±1 min, ±2 %) to the one before: a timer
        self.oob_lo = np.zeros(n_functions, dtype=np.int64)
        self.oob_hi = np.full(n_functions, -1, dtype=np.int64)
        self.rows = np.arange(n_functions)
        self.kernel = gap_kernel(B, self.spread)

    def loaded(self, t):
        k = t - self.last
        idx = np.minimum(k, self.B + 1)
        idx = np.where(k < 0, 0, idx)
        base = self.mask[self.rows, idx]
        oob = (k > self.B) & (k >= self.oob_lo) & (k <= self.oob_hi)
        return (self.last != NEVER) & (base | oob)

    def observe(self, t, counts):
        inv = np.flatnonzero(np.asarray(counts) > 0)
        if len(inv):
            prev = self.last[inv]
            has = prev != NEVER
            f, gap = inv[has], t - prev[has]
            if len(f):
                self.hist[f] *= self.decay
                self.smooth[f] *= self.decay
                col = np.minimum(gap, self.B + 1)
                self.hist[f, col] += 1.0
                self.smooth[f] += self.kernel[col]
                tol = np.maximum(1, 0.02 * gap)
                same = np.abs(gap - self.prev_gap[f]) <= tol
                self.run[f] = np.where(same, self.run[f] + 1, 0)
                self.prev_gap[f] = gap
                g = gap.astype(float)
                fo = f[gap > self.B]
                go = g[gap > self.B]
                seen_oob = self.oob_pred[fo] > 0
                self.oob_pred[fo] = np.where(seen_oob, 0.5 * go + 0.5 * self.oob_pred[fo], go)
            self.last[inv] = t
        if self.prior_every and t % self.prior_every == 0 and t > 0:
            self._refresh_prior()
            self._update(self.rows)
        elif len(inv):
            self._update(inv)

    def _refresh_prior(self):
        n = self.hist.sum(axis=1)
        ok = n > 0
        if ok.any():
            pop = (self.hist[ok] / n[ok, None]).sum(axis=0)
            w = self.default_prior_weight
            self.prior = ((pop + w * self.default_prior) / (ok.sum() + w)).astype(np.float32)

    def _update(self, rows):
        h = self.hist[rows]
        n = h.sum(axis=1)
        sm = self.smooth[rows]
        sm = sm / np.maximum(n, 1e-9)[:, None]  # normalised (kernel rows sum to 1, so sum(smooth) == n)
        # Periodicity: after k gaps in a row equal to the previous one, trust the exact histogram more.
        shrink = 1.0 / (1.0 + self.periodic_boost * self.run[rows])
        beta = (np.where(n > 0, self.spread_weight, 0.0) * shrink)[:, None]
        alpha = (self.alpha * shrink)[:, None]
        p = (h + beta * sm + alpha * self.prior) / (n[:, None] + beta + alpha)
        # P(g > k) = sum of p over columns k+1 .. B+1 (the out-of-range column counts as "longer").
        tail = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]
        beyond = np.concatenate([tail[:, 1:], np.zeros((len(rows), 1), dtype=tail.dtype)], axis=1)
        m = p > self.cost[rows, None] * beyond
        m[:, 0] = False
        m[:, self.B + 1] = False
        self.mask[rows] = m
        # Mostly out-of-range gaps: pre-warm around the forecast if that costs less than one cold start.
        oob_share = np.divide(h[:, self.B + 1], n, out=np.zeros(len(rows)), where=n > 0)
        pred = self.oob_pred[rows]
        lo = np.floor(pred * (1 - self.oob_margin)).astype(np.int64)
        hi = np.ceil(pred * (1 + self.oob_margin)).astype(np.int64)
        worth = (oob_share > 0.5) & (pred > 0) & (oob_share * 1.0 > self.cost[rows] * (hi - lo + 1) * 0.5)
        self.oob_lo[rows] = np.where(worth, lo, 0)
        self.oob_hi[rows] = np.where(worth, hi, -1)


def gap_kernel(range_minutes: int, spread: float) -> np.ndarray:
    """Row g: one observed gap g spread evenly over g·(1 ± spread) (at least g ± 1), columns 0..B+1.

    A gap seen once says "about g", not "exactly g"; the smoothed histogram enters the estimate with a
    fixed pseudo-count (`spread_weight`), so it fills the holes of a young histogram but fades against
    the exact histogram of a well-observed timer (which keeps its sharp, 1-minute pre-warm window).
    """
    B = range_minutes
    K = np.zeros((B + 2, B + 2), dtype=np.float32)
    for g in range(1, B + 1):
        lo = max(1, min(g - 1, int(np.floor(g * (1 - spread)))))
        hi = min(B, max(g + 1, int(np.ceil(g * (1 + spread)))))
        K[g, lo:hi + 1] = 1.0 / (hi - lo + 1)
    K[B + 1, B + 1] = 1.0
    return K


def default_gap_prior(range_minutes: int, horizon: int = 1440) -> np.ndarray:
    """Prior of the next gap before anything is known: log-uniform over 1 .. `horizon` minutes.

    Scale-free (no preferred time scale): as likely to come back within 1-2 minutes as within 1-2 hours.
    Mass beyond the histogram range goes to the out-of-range column.
    """
    B = range_minutes
    k = np.arange(1, horizon + 1, dtype=float)
    w = np.log1p(1.0 / k)  # P(k <= g < k+1) for a log-uniform g on [1, horizon + 1]
    w /= w.sum()
    prior = np.zeros(B + 2, dtype=np.float32)
    prior[1:B + 1] = w[:B]
    prior[B + 1] = w[B:].sum()
    return prior
