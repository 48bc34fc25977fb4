"""Online (minute-by-minute) demand forecaster with calibrated upper bands, for one series.

It is what the predictive policy uses in the replay simulator, and what the operator can keep per app.
Cheap per minute (a few float operations); the heavier work runs at a refit every `refit_every` minutes.

Candidates (all on the *clean* series: declared-event minutes divided by their multiplier):

* ``level``    -- EWMA of the last minutes (alpha `alpha_fast`): follows level shifts and steps;
* ``hold``     -- max of the last `hold_window` minutes: robust for step-wise / bursty series;
* ``seasonal`` -- seasonal naive profile when a period (1 d / 7 d, `predictors.periodicity`) is found:
  mean of the last `seasons` cycles, smoothed over +-`smooth` minutes, scaled by the ratio between the
  recent level of the series and of the profile (handles day-to-day growth and level shifts).

Each candidate's forecast for horizon D+1 (the minute a pod requested now starts to serve) is scored
when its minute arrives: residuals e = log1p(x) - log1p(f) over the last `window` minutes. At each refit
the candidate whose calibrated `quantile` band (f + 1) * exp(Q_q(e)) - 1 is the cheapest on average is
selected (a backtest-based selector, per series). Robust to NaN (skipped), zeros (log1p), level shifts
(EWMA / ratio), and short history (no period -> level / hold).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from predictors.periodicity import detect_period

CANDIDATES = ("level", "hold", "seasonal")


@dataclass
class OnlineConfig:
    quantile: float = 0.95
    alpha_fast: float = 0.5
    alpha_ratio: float = 0.1
    hold_window: int = 5
    seasons: int = 3
    smooth: int = 2
    window: int = 1440
    min_residuals: int = 30
    refit_every: int = 60
    period_candidates: tuple[int, ...] = (30, 60, 1440, 10080)
    default_log_margin: float = 0.5  # band before enough residuals exist: x e^0.5 ~ 1.65


class OnlineForecaster:
    """Upper-quantile forecasts of the next minutes from the minutes observed so far."""

    def __init__(self, horizon: int, cfg: OnlineConfig | None = None, events: Sequence = ()):
        self.cfg = cfg or OnlineConfig()
        self.h = int(horizon)  # scoring horizon (D + 1)
        self.events = tuple(events)
        self.n = 0  # number of minutes ingested
        self.clean: list[float] = []
        self.level = math.nan
        self.lx = math.nan  # EWMA of clean x (slow), for the seasonal ratio
        self.ls = math.nan  # EWMA of the profile at the same minutes
        self.period: int | None = None
        self.profile_start = 0
        self.profile = np.zeros(0)
        self.pending: dict[str, deque[tuple[int, float]]] = {c: deque() for c in CANDIDATES}
        self.resid: dict[str, deque[float]] = {c: deque(maxlen=self.cfg.window) for c in CANDIDATES}
        self.fc_hist: dict[str, deque[float]] = {c: deque(maxlen=self.cfg.window) for c in CANDIDATES}
        self.chosen = "level"
        self.log_q = self.cfg.default_log_margin
        self.next_refit = 0

    # ----------------------------------------------------------------------------------------- helpers
    def multiplier(self, u: int) -> float:
        m = 1.0
        for ev in self.events:
            if ev.start <= u < ev.end:
                m = max(m, float(ev.multiplier))
        return m

    def _profile_at(self, u: int) -> float:
        i = u - self.profile_start
        if 0 <= i < len(self.profile):
            return float(self.profile[i])
        return math.nan

    # ----------------------------------------------------------------------------------------- updates
    def observe_until(self, observed: np.ndarray) -> None:
        """Ingest the minutes of `observed` not seen yet (observed[i] is the demand of minute i)."""
        n_new = len(observed)
        if n_new > self.n:
            for u in range(self.n, n_new):
                self._ingest(u, float(observed[u]))
            self.n = n_new
        if self.n >= self.next_refit:
            self._refit()
            self.next_refit = self.n + self.cfg.refit_every

    def _ingest(self, u: int, x: float) -> None:
        if x != x or x < 0:  # NaN / invalid: missing minute
            self.clean.append(math.nan)
            return
        x = x / self.multiplier(u)
        self.clean.append(x)
        a = self.cfg.alpha_fast
        self.level = x if self.level != self.level else a * x + (1 - a) * self.level
        s = self._profile_at(u)
        if s == s:
            b = self.cfg.alpha_ratio
            self.lx = x if self.lx != self.lx else b * x + (1 - b) * self.lx
            self.ls = s if self.ls != self.ls else b * s + (1 - b) * self.ls
        lx = math.log1p(x)
        for c in CANDIDATES:
            q = self.pending[c]
            while q and q[0][0] < u:
                q.popleft()
            if q and q[0][0] == u:
                _, f = q.popleft()
                self.resid[c].append(lx - math.log1p(max(f, 0.0)))
                self.fc_hist[c].append(f)

    def _refit(self) -> None:
        cfg = self.cfg
        clean = np.asarray(self.clean, dtype=np.float64)
        t = len(clean)
        # Period detection on (up to) the last 4 weeks.
        if t >= 2 * min(cfg.period_candidates) + 2:
            self.period = detect_period(clean[-4 * 10080 :], cfg.period_candidates)
        else:
            self.period = None
        # Seasonal profile for minutes [t - 120, t + refit_every + 4h).
        self.profile = np.zeros(0)
        if self.period:
            P = self.period
            lo, hi = max(0, t - 120), t + cfg.refit_every + 240
            w = cfg.smooth if P >= 1440 else 0  # timers: keep the spike sharp
            xs = np.where(np.isnan(clean), 0.0, clean)
            ok = (~np.isnan(clean)).astype(np.float64)
            k = 2 * w + 1
            cx = np.concatenate([[0.0], np.cumsum(xs)])
            co = np.concatenate([[0.0], np.cumsum(ok)])
            u = np.arange(lo, hi)
            acc = np.zeros(len(u))
            cnt = np.zeros(len(u))
            for s in range(1, cfg.seasons + 1):
                c = u - s * P  # centre of the smoothing window, must lie fully in the past
                a, b = c - w, c + w + 1
                valid = (a >= 0) & (b <= t)
                a, b = np.clip(a, 0, t), np.clip(b, 0, t)
                num = cx[b] - cx[a]
                den = co[b] - co[a]
                good = valid & (den > 0)
                acc[good] += num[good] / den[good]
                cnt[good] += 1
            prof = np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)
            self.profile_start, self.profile = lo, prof
            # Re-seed the ratio EWMAs over the last two hours with the new profile.
            self.lx = self.ls = math.nan
            b = cfg.alpha_ratio
            for uu in range(lo, t):
                x, s = clean[uu], prof[uu - lo]
                if x == x and s == s:
                    self.lx = x if self.lx != self.lx else b * x + (1 - b) * self.lx
                    self.ls = s if self.ls != self.ls else b * s + (1 - b) * self.ls
        # Selector: cheapest calibrated band among candidates with enough residuals.
        best, best_cost, best_q = None, math.inf, cfg.default_log_margin
        for c in CANDIDATES:
            r = self.resid[c]
            if len(r) < cfg.min_residuals or (c == "seasonal" and not self.period):
                continue
            q = float(np.quantile(np.fromiter(r, float), cfg.quantile))
            f = np.fromiter(self.fc_hist[c], float)
            cost = float(np.mean((f + 1.0) * math.exp(q)))
            if cost < best_cost:
                best, best_cost, best_q = c, cost, q
        if best is None:
            best = "hold"
        self.chosen, self.log_q = best, best_q

    # ---------------------------------------------------------------------------------------- forecast
    def point(self, c: str, u: int) -> float:
        """Point forecast of candidate c for minute u (clean scale), from the minutes ingested so far."""
        if c == "level":
            return self.level if self.level == self.level else 0.0
        if c == "hold":
            vals = [v for v in self.clean[-self.cfg.hold_window :] if v == v]
            return max(vals) if vals else 0.0
        s = self._profile_at(u)
        if s != s or self.lx != self.lx:
            return self.point("level", u)
        eps = 1.0
        ratio = (self.lx + eps) / (self.ls + eps)
        return max(0.0, (s + eps) * min(max(ratio, 0.05), 20.0) - eps)

    def step(self, t: int) -> None:
        """Record the candidates' forecasts for minute t - 1 + h (scored when it arrives)."""
        u = t - 1 + self.h
        for c in CANDIDATES:
            if c == "seasonal" and not self.period:
                continue
            self.pending[c].append((u, self.point(c, u)))

    def upper(self, u: int) -> float:
        """Calibrated upper-quantile forecast of the clean demand at minute u (no event multiplier)."""
        f = self.point(self.chosen, u)
        return (f + 1.0) * math.exp(self.log_q) - 1.0

    def median(self, u: int) -> float:
        return self.point(self.chosen, u)
