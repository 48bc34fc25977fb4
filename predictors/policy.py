"""Replica policy: forecasts + current load + declared events -> replicas, with the reason.

Like Alibaba AHPA, the count is the max of several estimates, then stabilised and clipped:

    replicas = clip(max(forecast, reactive, event, panic, min), .., max)

* ``forecast`` -- ceil(upper_q(u) * (1 + safety_margin) / C) for every minute u from now to
  now + startup_delay (pods requested now serve from now + D; pods already serving must be kept for the
  minutes in between), where upper_q is the forecaster's calibrated quantile band;
* ``reactive`` -- ceil(last_load * (1 + reactive_margin) / C): never below what the last minute needed;
* ``event``    -- during a declared event (and `event_lead` minutes + D before it, to pre-scale), the
  conservative calibrated band (`event_upper`: level 0.999 of the recent residuals) times the event
  multiplier times (1 + event_margin): an under-provisioned minute of a declared promotion costs most;
* ``panic``    -- observed load above the band predicted for it: react immediately with
  ceil(last_load * panic_factor / C) plus the last minute's growth extrapolated over D + 1 minutes,
  and hold (no scale-down) for `panic_hold` minutes;
* scale-down: only to the max of the recommendations of the last `down_window` minutes, and by at most
  `max_down_step` (a fraction of the current count) per minute; scale-up by at most `max_up_step` pods
  per minute if set; then min/max bounds.

`ReplicaPolicy` is pure (no I/O, no Kubernetes); `PredictiveDecider` turns the online forecaster's bands
into its inputs, for the replay simulator (`predictors.replay.PredictivePolicy`) and the operator alike.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Event:
    """A declared scheduled event: demand in minutes [start, end) expected x multiplier."""

    start: int
    end: int
    multiplier: float


REASONS = ("forecast", "reactive", "event", "panic", "bound", "stabilization")


@dataclass
class PolicyConfig:
    capacity: float
    startup_delay: int = 2
    min_replicas: int = 1
    max_replicas: int = 100_000
    safety_margin: float = 0.0
    reactive_margin: float = 0.0
    panic: bool = False
    panic_factor: float = 1.0
    panic_hold: int = 2
    down_window: int = 1
    max_down_step: float = 1.0
    max_up_step: int | None = None
    event_lead: int = 5
    event_margin: float = 0.25
    events: tuple[Event, ...] = ()


@dataclass
class Decision:
    replicas: int
    reason: str
    estimates: dict[str, int] = field(default_factory=dict)


class ReplicaPolicy:
    """Stateful per-app replica policy (keeps the stabilisation window and the panic timer)."""

    def __init__(self, cfg: PolicyConfig):
        self.cfg = cfg
        self.recs: deque[int] = deque(maxlen=max(1, cfg.down_window))
        self.panic_until = -1

    def _ceil(self, load: float) -> int:
        return int(math.ceil(max(load, 0.0) / self.cfg.capacity - 1e-9))

    def event_multiplier(self, u: int) -> float:
        m = 1.0
        for ev in self.cfg.events:
            if ev.start <= u < ev.end:
                m = max(m, float(ev.multiplier))
        return m

    def decide(
        self,
        t: int,
        upper: Sequence[float] | np.ndarray,
        current: int,
        last_load: float | None = None,
        prev_load: float | None = None,
        last_upper: float | None = None,
        event_upper: Sequence[float] | np.ndarray | None = None,
    ) -> Decision:
        """Replicas to request at minute t.

        upper[k] is the upper forecast band (without event multipliers) of minute t + k, for
        k = 0 .. D + event_lead (at least D + 1 values); last_load is the demand observed in minute t - 1
        (NaN / None if missing), prev_load the one of t - 2, last_upper the band that was predicted for t - 1;
        event_upper (default: upper) is the band used for declared-event minutes.
        """
        cfg = self.cfg
        D = cfg.startup_delay
        est: dict[str, int] = {}
        est["forecast"] = max(self._ceil(float(upper[k]) * (1 + cfg.safety_margin)) for k in range(min(D + 1, len(upper))))
        ev = 0
        eu = upper if event_upper is None else event_upper
        for k in range(min(len(eu), D + cfg.event_lead + 1)):
            m = self.event_multiplier(t + k)
            if m > 1.0:
                ev = max(ev, self._ceil(float(eu[k]) * m * (1 + cfg.safety_margin + cfg.event_margin)))
        if ev:
            est["event"] = ev
        have_load = last_load is not None and last_load == last_load
        if have_load:
            est["reactive"] = self._ceil(last_load * (1 + cfg.reactive_margin))
            if cfg.panic and last_upper is not None and last_upper == last_upper and last_load > last_upper:
                self.panic_until = t + cfg.panic_hold
            if t <= self.panic_until:
                growth = 0.0
                if prev_load is not None and prev_load == prev_load:
                    growth = max(0.0, last_load - prev_load) * (D + 1)
                est["panic"] = self._ceil(last_load * cfg.panic_factor + growth)
        reason = max(est, key=lambda k: (est[k], -REASONS.index(k)))
        want = est[reason]
        self.recs.append(want)
        if want < current:
            hold = min(current, max(self.recs))
            if t <= self.panic_until:
                hold = current
            floor = current - max(1, int(math.ceil(current * cfg.max_down_step)))
            new = max(hold, floor, want)
            if new > want:
                reason = "stabilization"
            want = new
        elif cfg.max_up_step is not None and want > current + cfg.max_up_step:
            want = current + cfg.max_up_step
        if want < cfg.min_replicas:
            want, reason = cfg.min_replicas, "bound"
        if want > cfg.max_replicas:
            want, reason = cfg.max_replicas, "bound"
        return Decision(int(want), reason, est)


class PredictiveDecider:
    """The predictive policy's decision for one app from the online forecaster's bands.

    The one place that turns `OnlineForecaster.bands` into replicas: the replay's `PredictivePolicy` and the
    operator's scaling core both call it, so the benchmark measures the code the operator runs."""

    def __init__(self, cfg: PolicyConfig):
        self.rp = ReplicaPolicy(cfg)
        self.last_upper: dict[int, float] = {}

    @property
    def cfg(self) -> PolicyConfig:
        return self.rp.cfg

    def horizon(self) -> int:
        """Minutes of bands a decision needs (`OnlineForecaster.bands(t, n)`)."""
        return self.cfg.startup_delay + 1 + self.cfg.event_lead

    def decide(self, t: int, window_band: float, bands: np.ndarray, event_bands: np.ndarray | None, current: int,
               last: float, prev: float, m_last: float = 1.0, m_prev: float = 1.0) -> Decision:
        """Replicas at minute t. window_band: band of the window peak max(x_t .. x_{t+D}); bands[k]: band of
        minute t + k; event_bands: the conservative band (declared events); last / prev: the raw demand of
        minutes t - 1 / t - 2 (NaN if missing) and m_last / m_prev their declared-event multipliers."""
        cfg = self.cfg
        D = cfg.startup_delay
        upper = [float(window_band)] * (D + 1) + [float(v) for v in bands[D + 1 : self.horizon()]]
        d = self.rp.decide(
            t,
            upper,
            current,
            last_load=last / m_last if last == last else None,
            prev_load=prev / m_prev if prev == prev else None,
            last_upper=self.last_upper.get(t - 1),
            event_upper=event_bands if cfg.events else None,
        )
        self.last_upper = {t: upper[0]}
        # Express reactive/panic estimates in real (event-inflated) load: scale by the multiplier.
        if m_last > 1.0 and d.reason in ("reactive", "panic"):
            d.replicas = int(min(cfg.max_replicas, math.ceil(d.replicas * m_last)))
        return d
