"""Deterministic replay simulator: per-minute demand in, provisioned replicas and scaling metrics out.

Model (the same rules for every policy)
---------------------------------------
* ``r_t`` is the demand (requests) of one series in minute ``t`` (index into the dense per-minute array
  of `predictors.traces`; NaN counts as missing data for the policies and as 0 for the metrics).
* One replica serves ``C`` requests per minute within the SLO (``capacity``). Default ``C`` per series:
  p95 of its per-minute counts / 10, so a series at its p95 needs 10 replicas (fallbacks: p99.9 / 10,
  max / 10, then 1.0 for an all-zero series) -- see `default_capacity`; overridable.
* At every minute ``t`` (from ``decide_from`` on) the policy chooses the number of pods ``d_t``. It sees
  only ``r_0 .. r_{t-1}`` (a read-only array view of length ``t``: no peeking), the current pod count
  ``d_{t-1}`` and the ready count. Before ``decide_from`` every policy has the same ``d`` (the need of the
  last history minute), and all start from that state.
* A pod requested at minute ``t`` serves from ``t + D`` (``startup_delay``, default 2). Scale-down is
  immediate and removes the newest pods first (starting ones before ready ones). Hence the replicas that
  serve minute ``t`` are ``s_t = min(d_{t-D}, ..., d_t)``; a policy must keep enough pods for the demand
  of the minutes already covered by pods in flight.
* Minute ``t`` is under-provisioned when ``r_t > s_t * C``; the excess ``max(0, r_t - s_t C)`` is unserved.
* Metrics are computed over ``[warmup, n)`` (the same window for every policy):
  ``under_minutes``, ``unserved_frac`` = sum(excess) / sum(r), ``replica_minutes`` = sum(s_t),
  ``oracle_ratio`` = replica_minutes / the oracle's, ``scaling_actions`` = number of minutes with
  ``d_t != d_{t-1}``, plus the count of decisions per reason.
* ``oracle``: perfect foresight under the same rules: ``d_t = max(need_t .. need_{t+D})`` with
  ``need = ceil(r / C)``; this is the cheapest plan that never under-provisions (``s_t = need_t`` except
  in valleys shorter than ``D``), hence the lower bound for replica-minutes.

Baselines: `HPAPolicy` (Kubernetes HPA algorithm), `KPAPolicy` (Knative), `FixedPeakPolicy`; the
predictive policy is `PredictivePolicy`: the online forecaster (`predictors.online`) and the decision of
`predictors.policy.PredictiveDecider`, the same two the operator's scaling core runs for every app.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from predictors.online import OnlineConfig, OnlineForecaster
from predictors.policy import Event, PolicyConfig, PredictiveDecider

__all__ = ["Event", "Env", "PredictivePolicy", "HPAPolicy", "KPAPolicy", "FixedPeakPolicy", "replay", "simulate"]

@dataclass(frozen=True)
class Env:
    """What a policy may know besides the observed demand."""

    capacity: float
    startup_delay: int = 2
    min_replicas: int = 1
    max_replicas: int = 100_000
    events: tuple[Event, ...] = ()
    minutes: int = 0  # length of the series (how much history a policy must be able to keep; set by `simulate`)


class Policy(Protocol):
    """An online scaling policy. `decide` returns (pods, reason)."""

    name: str

    def reset(self, env: Env) -> None: ...

    def decide(self, t: int, observed: np.ndarray, current: int, ready: int) -> tuple[int, str]: ...


def default_capacity(counts: np.ndarray) -> float:
    """Requests per minute one replica serves: p95 / 10 (fallbacks p99.9 / 10, max / 10, 1.0)."""
    x = np.nan_to_num(np.asarray(counts, dtype=np.float64))
    for v in (np.percentile(x, 95), np.percentile(x, 99.9), x.max() if len(x) else 0.0):
        if v > 0:
            return float(v) / 10.0
    return 1.0


def need(demand: np.ndarray, capacity: float, lo: int = 0, hi: int = 100_000) -> np.ndarray:
    """ceil(r / C) clipped to [lo, hi] (NaN demand counts as 0)."""
    r = np.nan_to_num(np.asarray(demand, dtype=np.float64))
    return np.clip(np.ceil(r / capacity - 1e-9), lo, hi).astype(np.int64)


def serving_from_pods(d: np.ndarray, delay: int) -> np.ndarray:
    """s_t = min(d_{t-D} .. d_t) (pods before index 0 are taken equal to d_0)."""
    d = np.asarray(d, dtype=np.int64)
    s = d.copy()
    for k in range(1, delay + 1):
        shifted = np.concatenate([np.full(k, d[0]), d[:-k]]) if len(d) > k else np.full(len(d), d[0])
        s = np.minimum(s, shifted)
    return s


def oracle_plan(demand: np.ndarray, env: Env) -> np.ndarray:
    """Cheapest pod plan that never under-provisions: d_t = max(need_t .. need_{t+D})."""
    nd = need(demand, env.capacity, env.min_replicas, env.max_replicas)
    d = nd.copy()
    for k in range(1, env.startup_delay + 1):
        d[:-k] = np.maximum(d[:-k], nd[k:])
    return d


@dataclass
class RunResult:
    policy: str
    pods: np.ndarray  # d_t
    serving: np.ndarray  # s_t
    reasons: list[str]
    metrics: dict[str, float] = field(default_factory=dict)


def evaluate(demand: np.ndarray, pods: np.ndarray, env: Env, warmup: int) -> dict[str, float]:
    """Metrics of a pod plan over [warmup, n)."""
    r = np.nan_to_num(np.asarray(demand, dtype=np.float64))[warmup:]
    s = serving_from_pods(pods, env.startup_delay)[warmup:]
    cap = s * env.capacity
    excess = np.maximum(0.0, r - cap)
    d = np.asarray(pods)[max(warmup - 1, 0) :]
    total = float(r.sum())
    return {
        "minutes": int(len(r)),
        "under_minutes": int((excess > 1e-9).sum()),
        "unserved_frac": float(excess.sum() / total) if total > 0 else 0.0,
        "replica_minutes": float(s.sum()),
        "scaling_actions": int((np.diff(d) != 0).sum()),
        "demand": total,
    }


def simulate(
    demand: np.ndarray,
    policy: Policy,
    env: Env,
    *,
    warmup: int,
    decide_from: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Run one policy minute by minute over `demand` (see the module docstring for the rules)."""
    demand = np.asarray(demand, dtype=np.float64)
    n = len(demand)
    if decide_from is None:
        decide_from = max(1, warmup - min(60, warmup // 2))
    decide_from = min(max(1, decide_from), n)
    ro = demand.view()
    ro.flags.writeable = False
    r0 = float(np.nan_to_num(demand[decide_from - 1]))
    init = int(min(env.max_replicas, max(env.min_replicas, math.ceil(r0 / env.capacity - 1e-9))))
    pods = [init] * decide_from
    reasons = ["init"] * decide_from
    env = dataclasses.replace(env, minutes=n)
    policy.reset(env)
    D = env.startup_delay
    recent: deque[int] = deque([init] * (D + 1), maxlen=D + 1)  # d_{t-1-D} .. d_{t-1}
    for t in range(decide_from, n):
        ready = min(recent)
        want, why = policy.decide(t, ro[:t], pods[-1], ready)
        want = int(min(env.max_replicas, max(env.min_replicas, want)))
        pods.append(want)
        reasons.append(why)
        recent.append(want)
        if progress is not None and (t & 1023) == 0:
            progress(1024)
    d = np.asarray(pods, dtype=np.int64)
    res = RunResult(policy.name, d, serving_from_pods(d, D), reasons)
    res.metrics = evaluate(demand, d, env, warmup)
    res.metrics["reasons"] = dict(Counter(reasons[warmup:]))  # type: ignore[assignment]
    return res


def simulate_oracle(demand: np.ndarray, env: Env, *, warmup: int) -> RunResult:
    d = oracle_plan(demand, env)
    res = RunResult("oracle", d, serving_from_pods(d, env.startup_delay), ["oracle"] * len(d))
    res.metrics = evaluate(demand, d, env, warmup)
    res.metrics["reasons"] = {"oracle": len(d) - warmup}  # type: ignore[assignment]
    return res


# --------------------------------------------------------------------------------------------- baselines


class HPAPolicy:
    """Kubernetes HPA on observed load, evaluated once per minute.

    * metric: the load of the last complete minute r_{t-1} (one-minute metric lag); utilisation is the
      average over the *ready* pods, r / (ready * C), where ready = the pods that served minute t - 1;
      desired = ceil(ready * utilisation / target) = ceil(r / (target * C)) unless
      |utilisation / target - 1| <= tolerance (then the current count is kept). As in the Kubernetes
      replica calculator, when it would scale up while pods are still starting (current > ready), the
      starting pods count with 0 % utilisation: the ratio is recomputed over all `current` pods and the
      count is kept if that ratio is within tolerance or below 1;
    * scale-down stabilisation: the max of the recommendations of the last `down_window` minutes;
    * scale-up rate: per 15 s period max(+100 %, +4 pods); a minute holds 4 periods, so
      n -> max(2n, n + 4) applied 4 times; scale-down is not rate limited (default 100 % / 15 s).
    """

    name = "hpa"

    def __init__(self, target: float = 0.7, tolerance: float = 0.1, down_window: int = 5, periods_per_minute: int = 4):
        self.target, self.tolerance, self.down_window, self.periods = target, tolerance, down_window, periods_per_minute

    def reset(self, env: Env) -> None:
        self.env = env
        self.recs: deque[int] = deque(maxlen=self.down_window)

    def decide(self, t: int, observed: np.ndarray, current: int, ready: int) -> tuple[int, str]:
        C = self.env.capacity
        r = observed[-1]
        r = 0.0 if r != r else float(r)
        unready = max(0, current - ready)
        if ready > 0:
            ratio = r / (ready * C) / self.target  # average utilisation of the ready pods / target
            if unready == 0 or ratio <= 1.0:
                desired = current if abs(ratio - 1.0) <= self.tolerance else math.ceil(ratio * ready - 1e-9)
            else:  # scale-up while pods are starting: they count with 0 % utilisation
                new_ratio = r / (current * C) / self.target
                desired = math.ceil(new_ratio * current - 1e-9)
                if abs(new_ratio - 1.0) <= self.tolerance or (new_ratio < 1.0 and desired > current):
                    desired = current
        else:
            desired = math.ceil(r / (self.target * C) - 1e-9)
        desired = max(self.env.min_replicas, desired)
        self.recs.append(desired)
        rec = current
        if rec < desired:
            rec = desired
        down = max(self.recs)
        if rec > down:
            rec = down
        limit = current
        for _ in range(self.periods):
            limit = max(2 * limit, limit + 4)
        rec = min(rec, limit)
        return rec, "reactive"


class KPAPolicy:
    """Knative KPA at minute resolution: stable window 60 s (= the last minute), target utilisation 0.7,
    panic when the desired count reaches 2x the ready pods (then no scale-down for 60 s); no scale-down
    delay (Knative's default), so scale-down is immediate."""

    name = "kpa"

    def __init__(self, target: float = 0.7, panic_threshold: float = 2.0):
        self.target, self.panic_threshold = target, panic_threshold

    def reset(self, env: Env) -> None:
        self.env = env
        self.panic_until = -1

    def decide(self, t: int, observed: np.ndarray, current: int, ready: int) -> tuple[int, str]:
        r = observed[-1]
        r = 0.0 if r != r else float(r)
        desired = max(self.env.min_replicas, math.ceil(r / (self.target * self.env.capacity) - 1e-9))
        if desired >= self.panic_threshold * max(ready, 1):
            self.panic_until = t + 1
        if t <= self.panic_until:
            return max(desired, current), "panic"
        return desired, "reactive"


class FixedPeakPolicy:
    """Provision for the peak seen so far (the history's peak, growing if a higher one is observed)."""

    name = "fixed-peak"

    def reset(self, env: Env) -> None:
        self.env = env
        self.peak = 0.0
        self.seen = 0

    def decide(self, t: int, observed: np.ndarray, current: int, ready: int) -> tuple[int, str]:
        if self.seen < len(observed):
            new = observed[self.seen :]
            if len(new) and np.isfinite(new).any():
                self.peak = max(self.peak, float(np.nanmax(new)))
            self.seen = len(observed)
        return math.ceil(self.peak / self.env.capacity - 1e-9), "bound"


class PredictivePolicy:
    """Simulator adaptor: the online forecaster (one row) + `PredictiveDecider`, as in the operator."""

    name = "predictive"

    def __init__(self, online: OnlineConfig | None = None, **policy_kwargs):
        self.online_cfg = online or OnlineConfig()
        self.policy_kwargs = policy_kwargs

    def reset(self, env: Env) -> None:
        self.env = env
        cfg = PolicyConfig(capacity=env.capacity, startup_delay=env.startup_delay, min_replicas=env.min_replicas,
                           max_replicas=env.max_replicas, events=tuple(env.events), **self.policy_kwargs)
        self.decider = PredictiveDecider(cfg)
        self.fc: OnlineForecaster | None = None

    def decide(self, t: int, observed: np.ndarray, current: int, ready: int) -> tuple[int, str]:
        fc = self.fc
        if fc is None:  # sized to hold the whole series
            n = self.env.minutes or len(observed)
            fc = self.fc = OnlineForecaster(1, self.env.startup_delay + 1, self.online_cfg, capacity=self.env.capacity,
                                            events=[self.env.events], memory=n)
        while fc.now < len(observed):
            fc.observe(observed[fc.now : fc.now + 1])
        due = fc.due()
        if len(due):
            fc.select(due)
        uw, up, um = fc.bands(t, self.decider.horizon())
        last = float(observed[-1]) if len(observed) else math.nan
        prev = float(observed[-2]) if len(observed) > 1 else math.nan
        d = self.decider.decide(t, uw[0], up[0], um[0], current, last, prev,
                                float(fc.multiplier(t - 1)[0]), float(fc.multiplier(t - 2)[0]))
        return d.replicas, d.reason


def make_policy(name: str, **kwargs) -> Policy:
    """Policy by name: hpa, kpa, fixed-peak, predictive (the oracle is `simulate_oracle`)."""
    if name == "hpa":
        return HPAPolicy(**kwargs)
    if name == "kpa":
        return KPAPolicy(**kwargs)
    if name == "fixed-peak":
        return FixedPeakPolicy()
    if name == "predictive":
        return PredictivePolicy(**kwargs)
    raise ValueError(f"unknown policy {name!r} (known: hpa, kpa, fixed-peak, predictive, oracle)")


def default_warmup(n: int) -> int:
    """Common warm-up: a quarter of the series, at least 60 minutes, at most 2 days."""
    return int(min(2 * 1440, max(60, n // 4), max(n - 1, 1)))


def replay(
    demand: np.ndarray,
    policies: Sequence[str] | Iterable[str],
    *,
    capacity: float | None = None,
    startup_delay: int = 2,
    events: Sequence[Event] = (),
    warmup: int | None = None,
    min_replicas: int = 1,
    max_replicas: int = 100_000,
    progress: Callable[[int], None] | None = None,
) -> tuple[Env, int, dict[str, RunResult]]:
    """Replay every named policy over one series; returns (env, warmup, {policy: result})."""
    demand = np.asarray(demand, dtype=np.float64)
    C = float(capacity) if capacity else default_capacity(demand)
    env = Env(C, int(startup_delay), int(min_replicas), int(max_replicas), tuple(events))
    w = default_warmup(len(demand)) if warmup is None else int(warmup)
    results: dict[str, RunResult] = {}
    oracle = simulate_oracle(demand, env, warmup=w)
    for name in policies:
        results[name] = oracle if name == "oracle" else simulate(demand, make_policy(name), env, warmup=w, progress=progress)
    base = oracle.metrics["replica_minutes"]
    for res in results.values():
        res.metrics["oracle_ratio"] = res.metrics["replica_minutes"] / base if base > 0 else float("nan")
    return env, w, results
