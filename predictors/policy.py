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

`ReplicaPolicy` is pure (no I/O, no Kubernetes); `PredictivePolicy` plugs it and the online forecaster
into the replay simulator's `Policy` interface.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from predictors.online import OnlineConfig, OnlineForecaster
from predictors.replay import Env, Event

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


class PredictivePolicy:
    """Simulator adaptor: OnlineForecaster (calibrated quantile band) + ReplicaPolicy."""

    name = "predictive"

    def __init__(self, online: OnlineConfig | None = None, **policy_kwargs):
        self.online_cfg = online or OnlineConfig()
        self.policy_kwargs = policy_kwargs

    def reset(self, env: Env) -> None:
        self.env = env
        self.cfg = PolicyConfig(
            capacity=env.capacity,
            startup_delay=env.startup_delay,
            min_replicas=env.min_replicas,
            max_replicas=env.max_replicas,
            events=tuple(env.events),
            **self.policy_kwargs,
        )
        self.fc = OnlineForecaster(env.startup_delay + 1, self.online_cfg, env.events, env.capacity)
        self.rp = ReplicaPolicy(self.cfg)
        self.last_upper: dict[int, float] = {}

    def decide(self, t: int, observed: np.ndarray, current: int, ready: int) -> tuple[int, str]:
        fc = self.fc
        fc.observe_until(observed)
        fc.step(t)
        n_up = self.cfg.startup_delay + 1 + self.cfg.event_lead
        D = self.cfg.startup_delay
        upper = [fc.upper_window(t)] * (D + 1) + [fc.upper(t + k) for k in range(D + 1, n_up)]
        last = float(observed[-1]) if len(observed) else math.nan
        prev = float(observed[-2]) if len(observed) > 1 else math.nan
        m_last = fc.multiplier(t - 1)
        lu = self.last_upper.pop(t - 1, None)
        d = self.rp.decide(
            t,
            upper,
            current,
            last_load=last / m_last if last == last else None,
            prev_load=prev / fc.multiplier(t - 2) if prev == prev else None,
            last_upper=lu,
            event_upper=[fc.upper_max(t + k) for k in range(n_up)] if self.cfg.events else None,
        )
        self.last_upper[t] = upper[0]
        # Express reactive/panic estimates in real (event-inflated) load: scale by the multiplier.
        if m_last > 1.0 and d.reason in ("reactive", "panic"):
            return int(min(self.cfg.max_replicas, math.ceil(d.replicas * m_last))), d.reason
        return d.replicas, d.reason
