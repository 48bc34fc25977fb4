"""Minute-by-minute keep-alive simulator for scale-to-zero functions.

Model (the same for every policy):

* One warm instance per function, concurrency ignored: a minute with any number of invocations is one
  "invoked minute". The trace is the dense per-minute count matrix `counts[function, minute]`.
* At each minute `t` the policy decides, for every function at once, whether the function is *loaded*
  (an instance is warm during minute `t`). The decision for minute `t` may use only the invocations of
  minutes `< t`: the simulator asks `policy.loaded(t)` first and only then shows minute `t` to
  `policy.observe(t, counts[:, t])`. (The `oracle` bound is the one documented exception.)
* An invoked minute while the function is not loaded is a **cold start**; the instance then exists for
  that minute (it serves the invocations), so the minute costs no waste either way. The **first** invoked
  minute of each function is cold under every policy (nothing is known yet); it is reported separately
  (`first_invocations`) and never counted in `cold_starts`.
* A loaded minute without an invocation is **wasted memory**: `memory_mb[function]` MB·minutes (from the
  meta file, `avg_allocated_mb`); without meta every function weighs 1 and the unit is minutes.
* Loading (pre-warming) an instance is free apart from its memory; a pre-warm decided for minute `t` is
  ready at the start of minute `t`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SimResult:
    """Per-function accounting of one policy on one trace."""

    policy: str
    invoked_minutes: np.ndarray  # int, per function
    first_invocations: np.ndarray  # 1 if the function was invoked at all
    cold_starts: np.ndarray  # cold invoked minutes, first invocation excluded
    wasted_minutes: np.ndarray  # loaded minutes without invocation
    memory_mb: np.ndarray
    tick_seconds: list[float] = field(default_factory=list)  # decision + observe time per minute

    @property
    def wasted_mb_minutes(self) -> np.ndarray:
        return self.wasted_minutes * self.memory_mb


def simulate(counts: np.ndarray, policy, memory_mb: np.ndarray | None = None, time_ticks: bool = False) -> SimResult:
    """Run `policy` over `counts` (functions × minutes) and account cold starts and wasted memory."""
    counts = np.asarray(counts, dtype=np.float64)
    n_fn, n_min = counts.shape
    mem = np.ones(n_fn) if memory_mb is None else np.asarray(memory_mb, dtype=np.float64)
    invoked = counts > 0
    policy.reset(n_fn, mem, future=counts if getattr(policy, "needs_future", False) else None)
    seen = np.zeros(n_fn, dtype=bool)
    cold = np.zeros(n_fn, dtype=np.int64)
    waste = np.zeros(n_fn, dtype=np.int64)
    ticks: list[float] = []
    for t in range(n_min):
        t0 = time.perf_counter() if time_ticks else 0.0
        loaded = np.asarray(policy.loaded(t), dtype=bool)
        inv = invoked[:, t]
        cold += inv & ~loaded & seen
        waste += loaded & ~inv
        policy.observe(t, counts[:, t])
        if time_ticks:
            ticks.append(time.perf_counter() - t0)
        seen |= inv
    return SimResult(
        policy=getattr(policy, "name", type(policy).__name__),
        invoked_minutes=invoked.sum(axis=1),
        first_invocations=seen.astype(np.int64),
        cold_starts=cold,
        wasted_minutes=waste,
        memory_mb=mem,
        tick_seconds=ticks,
    )


def summarize(res: SimResult) -> dict:
    """Aggregate figures of one run (see `simulate` for the model)."""
    invoked = res.invoked_minutes
    after_first = invoked - res.first_invocations  # invoked minutes that can be warm
    total_after = int(after_first.sum())
    cold = int(res.cold_starts.sum())
    multi = after_first > 0
    pct = 100.0 * res.cold_starts[multi] / after_first[multi] if multi.any() else np.zeros(0)
    pct_incl = 100.0 * (res.cold_starts + res.first_invocations)[invoked > 0] / invoked[invoked > 0]
    return {
        "policy": res.policy,
        "functions": int(len(invoked)),
        "invoked_minutes": int(invoked.sum()),
        "first_invocations": int(res.first_invocations.sum()),
        "cold_starts": cold,
        "cold_start_rate": cold / total_after if total_after else 0.0,
        "functions_with_cold_start": int((res.cold_starts > 0).sum()),
        "p75_function_cold_pct": float(np.percentile(pct, 75)) if len(pct) else 0.0,
        "p75_function_cold_pct_incl_first": float(np.percentile(pct_incl, 75)) if len(pct_incl) else 0.0,
        "wasted_minutes": int(res.wasted_minutes.sum()),
        "wasted_mb_minutes": float(res.wasted_mb_minutes.sum()),
    }
