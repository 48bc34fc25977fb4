"""mpcloud keep-alive / pre-warm policy: per-minute hazard of the next invocation against its memory cost.

For one function, let `g` be the gap (minutes) from its last invoked minute to the next one. Being loaded
at elapsed minute `k` avoids a cold start with probability `P(g = k)` and wastes the function's memory for
that minute with probability `P(g > k)`. With a cold start priced at lambda minutes of a median-memory
function, the expected cost of each minute is independent of the others, so the optimal policy for a
renewal process is: **be loaded at elapsed minute k iff P(g = k) / P(g > k) > (memory / median memory) /
lambda**. The loaded set is any set of offsets, not one window: a timer with period P gets exactly {P} (or
{P-1..P+1} with jitter), an hourly job running for 3 minutes gets {1} ∪ {58}, a busy function {1, 2, ...},
a rare function nothing. Small functions are kept warm longer than big ones (the decision weighs memory).
The same lambda for every function is the Lagrange multiplier of a memory budget: for a given total idle
memory it puts each idle minute where it saves the most cold starts.

**The price is not a fitted constant.** By default (`budget="hybrid"`) lambda is steered online so that
mpcloud's cumulative idle memory stays at `budget_ratio` (0.9) × the idle memory that the hybrid
histogram policy of Serverless in the Wild would have spent on the same invocations so far. That policy is
run as a causal shadow inside mpcloud (it sees the same minutes `< t`; its decisions are accounted, never
executed). The controller is an integral controller on log(lambda): every minute,
`log lambda = log lambda0 + (budget_ratio · W_hybrid(t) − W_mpcloud(t)) / (control_minutes · mean hybrid
waste per minute)`, clipped to `lambda_bounds`: spending less than the budget raises the price of a cold
start, spending more lowers it. Because the decision reads lambda at decision time (the per-function
hazard ratios are stored, not the loaded sets), a new price acts in the next minute. In an operator the
budget can be any memory figure; `mpcloud-lN` fixes lambda = N (no controller) for sweeps.

What it learns, all online (decisions at minute t use only minutes < t):

* per-function gap histogram, 1-minute bins up to `range_minutes` (4 h), then geometric bins (+15 % each)
  up to `long_range_minutes` (7 days), exponentially decayed (`decay` per observed gap). Gaps beyond 4 h
  (bursty tenants, daily jobs) are in the same hazard rule: a coarse bin is loaded as a whole when its
  probability beats the memory of keeping the instance through it (instead of the SitW forecast window);
* a population prior (mean of the functions' normalised histograms, refreshed every `prior_every`
  minutes) mixed in with `prior_weight` pseudo-gaps; periodicity appears as mass concentrated on one bin;
* each observed gap is also spread over g·(1 ± `spread`, 50 %): a share `spread_fraction` (50 %) of every
  observed gap plus `spread_weight` pseudo-counts (a gap seen once says "about g"). Without it the loaded
  set of a bursty function has holes where no gap happened to fall, and arrivals land in them; the
  smoothing and the share vanish for a detected timer (below), which keeps its exact 1-minute window.
* after a function's **first** invocation (no gap yet) it uses a pooled Kaplan-Meier hazard of first gaps
  (per group: timers / others), in which functions still waiting count as at risk, so the functions that
  never come back lower it (the plain population histogram only sees the ones that did);
* `half_life_minutes` (off): forget by elapsed time instead of `decay` per gap. **Round periods**: a gap within ±1 minute of a round period (`round_periods`: 10,
  12, 15, 20, 30, 45, 60, 90, 120, 180, 240 min) of a function whose trigger is `timer` is spread over
  ±1 minute only, so a timer's second period is already pre-warmed on a 3-minute window. The trigger comes
  from the optional meta file (`triggers`); without meta (or for other triggers) nothing changes;
* periodicity: after `run` consecutive gaps equal to the previous one (±1 min, ±2 %), the smoothing and
  prior pseudo-counts shrink by 1 / (1 + `periodic_boost` · run), so a timer's window is its exact period.

Cost per minute tick: O(1) per function for the decision (one lookup of a stored ratio), O(bins) for each
function invoked in the minute, plus 1 / `prior_every` of all functions refreshed per minute (round robin,
so no tick recomputes everything), plus the shadow hybrid policy (itself O(1) + O(range) per invocation).
"""

from __future__ import annotations

import numpy as np

from predictors.keepalive.policies import NEVER, HybridHistogram, Policy

ROUND_PERIODS = (10, 12, 15, 20, 30, 45, 60, 90, 120, 180, 240)


class MpcloudPolicy(Policy):
    def __init__(self, cold_cost_minutes: float | None = None, budget: str | None = "hybrid",
                 budget_ratio: float = 0.9, lambda0: float = 1000.0, lambda_bounds=(30.0, 30000.0),
                 control_minutes: float = 30.0, range_minutes: int = 240, long_range_minutes: int = 10080,
                 long_bin_growth: float = 0.15, prior_weight: float = 1.0, decay: float = 0.99,
                 prior_every: int = 30, spread: float = 0.5, spread_weight: float = 2.0,
                 default_prior_weight: float = 10.0, periodic_boost: float = 4.0,
                 round_periods=ROUND_PERIODS, spread_fraction: float = 0.5,
                 half_life_minutes: float | None = None, first_pseudo_exposure: float = 5.0, triggers=None,
                 name: str = "mpcloud"):
        self.name = name
        if cold_cost_minutes is not None:  # fixed price: no budget controller
            budget = None
        self.budget = budget
        self.lam0 = float(cold_cost_minutes if cold_cost_minutes is not None else lambda0)
        self.lam = self.lam0
        self.budget_ratio = float(budget_ratio)
        self.lambda_bounds = (float(lambda_bounds[0]), float(lambda_bounds[1]))
        self.control_minutes = float(control_minutes)
        self.B = int(range_minutes)
        self.long_range = int(long_range_minutes)
        self.long_bin_growth = float(long_bin_growth)
        self.alpha = float(prior_weight)
        self.decay = float(decay)
        self.prior_every = int(prior_every)
        self.spread = float(spread)
        self.spread_weight = float(spread_weight)
        self.default_prior_weight = float(default_prior_weight)
        self.periodic_boost = float(periodic_boost)
        self.round_periods = tuple(int(p) for p in round_periods)
        self.first_pseudo_exposure = float(first_pseudo_exposure)
        self.spread_fraction = float(spread_fraction)
        self.half_life = float(half_life_minutes) if half_life_minutes else 0.0
        self.triggers = triggers  # optional per-function trigger names (meta file); only "timer" is used

    # -- state ------------------------------------------------------------------------------------------
    def reset(self, n_functions, memory_mb, future=None):
        super().reset(n_functions, memory_mb, future)
        self.lam = self.lam0
        # Memory relative to the median function: lambda reads "minutes of a typical function's memory worth
        # one cold start" with or without meta.
        self.rel = (self.memory_mb / max(float(np.median(self.memory_mb)), 1e-9)).astype(np.float32)
        self.edges, self.width, self.lut = gap_bins(self.B, self.long_range, self.long_bin_growth)
        C = len(self.width)  # columns: 0 unused, 1..B minutes, coarse bins, last = beyond long_range
        self.C = C
        self.hist = np.zeros((n_functions, C), dtype=np.float32)
        self.smooth = np.zeros((n_functions, C), dtype=np.float32)
        self.ratio = np.zeros((n_functions, C), dtype=np.float32)  # P(bin) / expected idle minutes in it
        self.default_prior = default_gap_prior(self.edges, self.width)
        self.prev_gap = np.zeros(n_functions, dtype=np.int64)
        self.run = np.zeros(n_functions)
        self.rows = np.arange(n_functions)
        self.kernel = gap_kernel(self.B, C, self.spread)
        self.sharp = gap_kernel(self.B, C, 0.0)
        timer = np.zeros(n_functions, dtype=bool)
        if self.triggers is not None and len(self.triggers) == n_functions:
            timer = np.array([str(x).lower() == "timer" for x in self.triggers])
        self.timer = timer
        # Population priors: one for timer-triggered functions (meta), one for the rest.
        self.group = timer.astype(np.int64)
        self.prior = np.repeat(self.default_prior[None, :], 2, axis=0)
        # First gaps (after a function's first invocation): pooled Kaplan-Meier hazard per group, with
        # censoring (functions still waiting count as at risk), so functions that never come back count.
        self.ninv = np.zeros(n_functions, dtype=np.int8)  # invoked minutes so far, capped at 2
        self.first_events = np.zeros((2, C))
        self.first_exposure = np.zeros((2, C))
        after = np.cumsum(self.default_prior[::-1])[::-1]
        self.default_hazard = np.divide(self.default_prior, self.width * after,
                                        out=np.zeros(C), where=after > 0).clip(0, 0.999)
        self.first_ratio = np.repeat(self._hazard_ratio(self.default_hazard)[None, :], 2, axis=0)
        self.round = np.zeros(C, dtype=bool)
        for p in self.round_periods:
            if p <= self.B:
                self.round[max(1, p - 1):min(self.B, p + 1) + 1] = True
        self._cursor = 0
        self._update(self.rows)
        # Budget controller state.
        self.shadow = None
        if self.budget == "hybrid":
            self.shadow = HybridHistogram(name="shadow-hybrid")
            self.shadow.reset(n_functions, memory_mb)
        elif self.budget is not None:
            raise ValueError(f"unknown budget {self.budget!r}")
        self.w_self = 0.0
        self.w_budget = 0.0
        self._loaded = np.zeros(n_functions, dtype=bool)
        self._shadow_loaded = np.zeros(n_functions, dtype=bool)
        self.ticks = 0

    # -- decision ---------------------------------------------------------------------------------------
    def loaded(self, t):
        k = t - self.last
        col = self.lut[np.clip(k, 0, len(self.lut) - 1)]
        r = self.ratio[self.rows, col]
        out = (self.last != NEVER) & (r * self.lam > self.rel)
        self._loaded = out
        if self.shadow is not None:
            self._shadow_loaded = self.shadow.loaded(t)
        return out

    # -- learning ---------------------------------------------------------------------------------------
    def observe(self, t, counts):
        c = np.asarray(counts)
        invoked = c > 0
        inv = np.flatnonzero(invoked)
        if self.shadow is not None:
            idle = ~invoked
            self.w_self += float(self.memory_mb[self._loaded & idle].sum())
            self.w_budget += self.budget_ratio * float(self.memory_mb[self._shadow_loaded & idle].sum())
            self.shadow.observe(t, c)
            self.ticks += 1
            rate = self.w_budget / self.ticks
            if rate > 0:
                x = (self.w_budget - self.w_self) / (self.control_minutes * rate)
                self.lam = float(np.clip(self.lam0 * np.exp(np.clip(x, -50, 50)), *self.lambda_bounds))
        waiting = np.flatnonzero(self.ninv == 1)
        if len(waiting):
            colw = self.lut[np.minimum(t - self.last[waiting], len(self.lut) - 1)]
            grp = self.group[waiting]
            np.add.at(self.first_exposure, (grp, colw), 1.0)
            hit = invoked[waiting]
            np.add.at(self.first_events, (grp[hit], colw[hit]), 1.0)
        if len(inv):
            self.ninv[inv] = np.minimum(self.ninv[inv] + 1, 2)
            prev = self.last[inv]
            has = prev != NEVER
            f, gap = inv[has], t - prev[has]
            if len(f):
                if self.half_life:  # forget by elapsed time, not by number of gaps (bursts)
                    fac = np.power(0.5, gap / self.half_life).astype(np.float32)[:, None]
                else:
                    fac = np.float32(self.decay)
                self.hist[f] *= fac
                self.smooth[f] *= fac
                col = self.lut[np.minimum(gap, len(self.lut) - 1)]
                self.hist[f, col] += 1.0
                sharp = self.timer[f] & self.round[col]
                self.smooth[f] += np.where(sharp[:, None], self.sharp[col], self.kernel[col])
                tol = np.maximum(1, 0.02 * gap)
                same = np.abs(gap - self.prev_gap[f]) <= tol
                self.run[f] = np.where(same, self.run[f] + 1, 0)
                self.prev_gap[f] = gap
            self.last[inv] = t
        if self.prior_every and t > 0 and t % self.prior_every == 0:
            self._refresh_prior()
        # Round robin: each function's ratios are recomputed at least every `prior_every` minutes (so a new
        # prior reaches everyone), and at once when it is invoked.
        step = -(-self.n // max(self.prior_every, 1))
        rr = self.rows[self._cursor:self._cursor + step]
        self._cursor = 0 if self._cursor + step >= self.n else self._cursor + step
        rows = np.union1d(rr, inv) if len(inv) else rr
        if len(rows):
            self._update(rows)

    def _refresh_prior(self):
        n = self.hist.sum(axis=1)
        w = self.default_prior_weight
        for g in (0, 1):
            ok = (n > 0) & (self.group == g)
            pop = (self.hist[ok] / n[ok, None]).sum(axis=0) if ok.any() else 0.0
            self.prior[g] = ((pop + w * self.default_prior) / (ok.sum() + w)).astype(np.float32)
            a = self.first_pseudo_exposure * self.width
            den = self.first_exposure[g] + a
            h = np.divide(self.first_events[g] + a * self.default_hazard, den, out=self.default_hazard.copy(),
                          where=den > 0)
            self.first_ratio[g] = self._hazard_ratio(h)

    def _hazard_ratio(self, h):
        """Per-minute hazard -> loading ratio h / (1 - h) (0 for column 0 and the beyond column)."""
        h = np.clip(h, 0.0, 0.999)
        r = (h / (1.0 - h)).astype(np.float32)
        r[0] = 0.0
        r[-1] = 0.0
        return r

    def _update(self, rows):
        h = self.hist[rows]
        n = h.sum(axis=1)
        sm = self.smooth[rows] / np.maximum(n, 1e-9)[:, None]  # kernel rows sum to 1: sum(smooth) == n
        shrink = 1.0 / (1.0 + self.periodic_boost * self.run[rows])
        beta = (np.where(n > 0, self.spread_weight, 0.0) * shrink)[:, None]
        alpha = (self.alpha * shrink)[:, None]
        phi = (self.spread_fraction * shrink)[:, None]  # share of the observed gaps taken as "about g"
        hx = (1.0 - phi) * h + phi * sm * n[:, None]
        p = (hx + beta * sm + alpha * self.prior[self.group[rows]]) / (n[:, None] + beta + alpha)
        r = hazard_ratio(p, self.width)
        if self.first_pseudo_exposure > 0:
            fresh = n <= 0  # no gap yet: the pooled first-gap hazard of its group
            r[fresh] = self.first_ratio[self.group[rows[fresh]]]
        self.ratio[rows] = r


def hazard_ratio(p: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Per bin: P(g in bin) / expected idle loaded minutes if loaded through the bin.

    For a 1-minute bin k that is P(g = k) / P(g > k). For a bin of w minutes with mass q and mass `after`
    beyond it (gap uniform inside the bin): q / (w · after + q · (w − 1) / 2). Column 0 and the last column
    (beyond the long range) are never loaded (ratio 0).
    """
    tail = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]
    after = np.concatenate([tail[:, 1:], np.zeros((len(p), 1), dtype=tail.dtype)], axis=1)
    denom = width[None, :] * after + p * (width[None, :] - 1) / 2
    r = np.divide(p, denom, out=np.full(p.shape, np.float32(1e30), dtype=np.float32), where=denom > 1e-12)
    r[:, 0] = 0.0
    r[:, -1] = 0.0
    return r


def gap_bins(range_minutes: int, long_range_minutes: int, growth: float):
    """Bin layout: edges[c] = first gap minute of column c; width[c]; lut[k] = column of gap k.

    Columns 1..B are single minutes; then geometric bins (each `growth` wider than where it starts) up to
    `long_range_minutes`; the last column holds every longer gap (and is never loaded).
    """
    B = range_minutes
    edges = list(range(B + 1))
    e = B + 1
    while e <= long_range_minutes:
        edges.append(e)
        e = max(e + 1, int(np.ceil(e * (1 + growth))))
    top = max(long_range_minutes, B) + 1
    edges.append(top)  # the beyond column starts here
    edges = np.asarray(edges, dtype=np.int64)
    width = np.diff(np.append(edges, top + 1)).astype(np.float32)
    width[-1] = 1.0  # unused (ratio forced to 0)
    lut = np.zeros(top + 1, dtype=np.int64)
    for c in range(1, len(edges)):
        lut[edges[c]:] = c
    return edges, width, lut


def gap_kernel(range_minutes: int, columns: int, spread: float) -> np.ndarray:
    """Row g: one observed gap g spread evenly over g·(1 ± spread) (at least g ± 1), columns 0..C-1.

    A gap seen once says "about g", not "exactly g"; the smoothed histogram enters the estimate with a
    fixed pseudo-count (`spread_weight`), so it fills the holes of a young histogram but fades against
    the exact histogram of a well-observed timer (which keeps its sharp, 1-minute pre-warm window).
    Coarse columns (beyond the 1-minute range) are not spread.
    """
    B = range_minutes
    K = np.zeros((columns, columns), dtype=np.float32)
    for g in range(1, B + 1):
        lo = max(1, min(g - 1, int(np.floor(g * (1 - spread)))))
        hi = min(B, max(g + 1, int(np.ceil(g * (1 + spread)))))
        K[g, lo:hi + 1] = 1.0 / (hi - lo + 1)
    for c in range(B + 1, columns):
        K[c, c] = 1.0
    return K


def default_gap_prior(edges: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Prior of the next gap before anything is known: log-uniform over 1 minute .. 2× the long range.

    Scale-free (no preferred time scale): as likely to come back within 1-2 minutes as within 1-2 hours.
    """
    top = int(edges[-1])
    hi = 2.0 * top
    prior = np.zeros(len(edges), dtype=np.float64)
    for c in range(1, len(edges)):
        a = float(edges[c])
        b = float(edges[c] + width[c]) if c < len(edges) - 1 else hi
        prior[c] = np.log(b / a)
    prior /= prior.sum()
    return prior.astype(np.float32)
