"""Online anomaly detector for many series at once, with no peeking.

`Detector(n, period).update(x)` takes one value per series (shape (n,); NaN = no sample this tick) and returns one
score per series in [0, 1), computed from that value and state built from earlier values only. Each tick is a
fixed number of vectorised numpy operations on arrays of shape (channels, n), plus one (n, period) ring buffer when
a season is given, so 10,000 series cost one call per tick (a few ms, bench/anomaly.py).

The score is *novelty across channels*. Each channel is a view of the series:
- the value and its running means at a few rates (a sustained shift to a level that only spikes reached before is
  news for a slow mean);
- with a period, the change against the same phase one period ago;
- how often the value lately sat above its running 95th percentile, or below its 5th (a burst of spikes, or a
  drop-out, that stays inside the usual range);
- optionally the running step size (volatility; off by default).
A channel's novelty is how far it leaves the range it has shown over the last one to two `horizon`s of ticks, as a
fraction of that range. The gain-weighted novelties are summed into s and mapped to s / (1 + s). Then a refractory
step: a sustained anomaly is reported once, at its onset, and again only when it grows `growth` times beyond a
decaying peak (repeated alarms within one episode cost false positives and add nothing). Values shortly after an
alarm are not kept as the next period's reference, so an anomaly does not echo one period later. Ranges are learned
during `warmup` ticks (the seasonal channel's during half a period after its first full period), with no score.
`novelty` holds the last tick's per-channel novelties (channel order: means, volatility, season, above, below),
to say why a series alarmed.

Why novelty rather than z-scores: on operational series the scale of "normal" noise is heavy-tailed and drifts, so
z-scores against a running scale alarm on every burst (tried: NAB standard ~36); leaving the envelope of what was
seen lately, at several smoothing scales, is what separates incidents from noise. Parameters were tuned on the
shared NAB files with a two-half cross-validation (bench/README.md); the detector never sees labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Params:
    warmup: int = 250                                   # ticks before any score (state still learns)
    means: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03)    # EWMA rates of the value channels (1.0 = the raw value)
    gains: tuple[float, ...] = (1.0, 1.0, 1.0, 2.0)     # novelty gain per value channel
    vol_rate: float = 0.1                               # EWMA rate of |step| (volatility channel)
    vol_gain: float = 0.0                               # 0 = volatility channel off
    season_gain: float = 0.35                           # seasonal-change channel (needs a period)
    season_warmup: float = 0.5                          # periods of seasonal change seen before it scores
    echo: float = 0.1                                   # raw score counted as an alarm for the echo rule
    echo_span: float = 1 / 12                           # after an alarm, this part of a period is no reference
    tail: float = 0.05                                  # tail quantiles tracked (q_lo = tail, q_hi = 1 - tail)
    tail_step: float = 0.01                             # their step, as a fraction of the value range
    tail_rate: float = 0.02                             # EWMA rate of the tail frequencies
    tail_gain: float = 0.5                              # 0 = tail-frequency channels off
    combine: str = "sum"                                # channels' novelties: "sum" or "max"
    horizon: int = 4000                                 # ranges cover the last 1-2 horizons of ticks (0 = all)
    growth: float = 1.7                                 # a new alarm must exceed the decayed peak this much
    refractory: float = 0.98                            # per-tick decay of the last reported peak
    threshold: float = 0.0475                           # shipped detection threshold (see bench/README.md)


class Detector:
    """Vectorised state for n series; `period` = season length in ticks (0 = none, e.g. 1440 for 1-min ticks)."""

    def __init__(self, n: int, period: int = 0, params: Params = Params()):
        if len(params.gains) != len(params.means):
            raise ValueError("Params.gains needs one gain per entry of Params.means")
        self.n, self.p, self.period = n, params, max(int(period), 0)
        m = len(params.means)
        self.vol, self.season, self.tails = m, m + 1, m + 2  # channel indices (tails: above q_hi, below q_lo)
        self.rates = np.array([*params.means, params.vol_rate, 1.0, params.tail_rate, params.tail_rate])[:, None]
        self.gains = np.array([*params.gains, params.vol_gain, params.season_gain if self.period else 0.0,
                               params.tail_gain, params.tail_gain])[:, None]
        self.q_hi, self.q_lo = np.zeros(n), np.zeros(n)
        self.t = np.zeros(n, dtype=np.int64)
        k = m + 4
        self.ch = np.zeros((k, n))
        self.lo = np.zeros((k, n))
        self.hi = np.zeros((k, n))
        self.seen = np.zeros((k, n), dtype=bool)
        self.hi_cur = self.lo_cur = self.hi_old = self.lo_old = self.hi  # horizon buckets (replaced, never mutated)
        self.novelty = np.zeros((k, n))
        self.prev = np.zeros(n)
        self.peak = np.zeros(n)
        self.buf = np.zeros((n, self.period), dtype=np.float32) if self.period else None
        self.rows = np.arange(n)
        self.alarm_t = np.full(n, -(10 ** 9), dtype=np.int64)

    def _channels(self, xv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This tick's channel values, and where each channel is defined yet."""
        target = np.empty_like(self.ch)
        target[:self.vol] = xv
        target[self.vol] = np.abs(xv - self.prev)
        defined = np.ones_like(self.seen)
        defined[self.vol] = self.t >= 1
        if self.buf is not None:
            target[self.season] = xv - self.buf[self.rows, self.t % self.period]
            defined[self.season] = self.t >= self.period
        else:
            target[self.season] = 0.0
            defined[self.season] = False
        target[self.tails] = xv > self.q_hi
        target[self.tails + 1] = xv < self.q_lo
        defined[self.tails:self.tails + 2] = self.t >= self.p.warmup // 2
        started = defined & ~self.seen  # a channel's first value seeds its mean
        return np.where(started, target, self.ch + self.rates * (target - self.ch)), defined

    def update(self, x) -> np.ndarray:
        p = self.p
        x = np.asarray(x, dtype=float)
        ok = np.isfinite(x)
        xv = np.where(ok, x, self.prev)
        ch, defined = self._channels(xv)
        # --- novelty: how far each channel leaves its range so far, relative to that range
        span = np.maximum(self.hi - self.lo, 1e-9 * (np.abs(self.hi) + 1.0))
        beyond = np.maximum(np.maximum(ch - self.hi, self.lo - ch), 0.0) / span
        learned = self.seen.copy()
        learned[self.season] &= self.t >= self.period + int(p.season_warmup * self.period)
        nov = np.where(learned, beyond, 0.0) * self.gains
        s = nov.max(axis=0) if p.combine == "max" else nov.sum(axis=0)
        self.novelty = nov
        raw = s / (1.0 + s)
        # --- refractory: report onsets and growth only
        live = ok & (self.t >= p.warmup)
        out = np.where(live & (raw > self.peak * p.growth), raw, 0.0)
        self.peak = np.where(ok, np.maximum(self.peak * p.refractory, raw * live), self.peak)
        # --- learn, only where a sample arrived
        if self.buf is not None:
            k = self.t % self.period
            past = self.buf[self.rows, k]
            # values shortly after an alarm are no reference for the next period (else the anomaly echoes)
            self.alarm_t = np.where(live & (raw >= p.echo), self.t, self.alarm_t)
            episode = (self.t - self.alarm_t) <= p.echo_span * self.period
            keep = np.where(episode | ~ok, past, xv)
            self.buf[self.rows, k] = keep
        upd = defined & ok[None, :]
        first = upd & ~self.seen
        self.ch = np.where(upd, ch, self.ch)
        if p.horizon:
            # two buckets of `horizon` ticks: the range is that of the last one to two horizons
            roll = upd & ((self.t > 0) & (self.t % p.horizon == 0))[None, :]
            self.hi_old = np.where(first, ch, np.where(roll, self.hi_cur, self.hi_old))
            self.lo_old = np.where(first, ch, np.where(roll, self.lo_cur, self.lo_old))
            self.hi_cur = np.where(first | roll, ch, np.where(upd, np.maximum(self.hi_cur, ch), self.hi_cur))
            self.lo_cur = np.where(first | roll, ch, np.where(upd, np.minimum(self.lo_cur, ch), self.lo_cur))
            self.hi = np.maximum(self.hi_cur, self.hi_old)
            self.lo = np.minimum(self.lo_cur, self.lo_old)
        else:
            self.hi = np.where(first, ch, np.where(upd, np.maximum(self.hi, ch), self.hi))
            self.lo = np.where(first, ch, np.where(upd, np.minimum(self.lo, ch), self.lo))
        self.seen |= upd
        # running tail quantiles (Robbins-Monro steps scaled to the value range)
        step = self.p.tail_step * (self.hi[0] - self.lo[0])  # 0 for a constant series: no tails to track
        step = np.where(self.t < 2, 0.0, step * np.where(self.t < self.p.warmup, 5.0, 1.0))
        q = 1.0 - self.p.tail
        self.q_hi = np.where(self.t < 1, xv, self.q_hi + ok * step * np.where(xv > self.q_hi, q, -(1 - q)))
        self.q_lo = np.where(self.t < 1, xv, self.q_lo + ok * step * np.where(xv < self.q_lo, -q, 1 - q))
        self.prev = np.where(ok, xv, self.prev)
        self.t = self.t + ok
        return out
