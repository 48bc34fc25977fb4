"""A keep-alive policy's learned state as a few compact arrays, and back (so an operator restart keeps history).

`dump(policy)` returns {name: numpy array}; `load(policy, state)` puts it into a policy of the same class
after `policy.reset(n, memory_mb)` with n at least the saved number of functions (rows beyond stay fresh).

What is saved is what the policy *learned*: last invoked minutes, gap histograms (sparse: a function's
histogram has a few non-zero bins), the hybrid policy's windows and out-of-range forecasts, mpcloud's price
(lambda), its budget accounting, population priors and first-gap statistics. What is *derived* is rebuilt
instead of stored: mpcloud's smoothed histogram (a linear function of the histogram: the same decayed sum of
kernel rows) and its per-bin loading ratios. `dump` first rebuilds them in the live policy too
(`normalize`), so the restored policy and the saved one answer `loaded(t)` identically from then on; for the
live policy that is only a refresh the round robin would have made within `prior_every` minutes anyway.

Size: ~10 bytes per non-zero histogram bin; for the Azure trace's functions a few hundred bytes each before
compression. The oracle (it reads the future) has no state to keep.
"""

from __future__ import annotations

import numpy as np

from predictors.keepalive.mpcloud import MpcloudPolicy
from predictors.keepalive.policies import HybridHistogram, NeverUnload, Oracle, Policy, WindowPolicy

FORMAT = 1


def _sparse(prefix: str, a: np.ndarray) -> dict[str, np.ndarray]:
    rows, cols = np.nonzero(a)
    return {f"{prefix}.rows": rows.astype(np.int32), f"{prefix}.cols": cols.astype(np.uint16),
            f"{prefix}.vals": a[rows, cols], f"{prefix}.shape": np.asarray(a.shape, dtype=np.int64)}


def _dense(prefix: str, state: dict[str, np.ndarray], into: np.ndarray) -> None:
    n, c = (int(x) for x in state[f"{prefix}.shape"])
    if c != into.shape[1] or n > into.shape[0]:
        raise ValueError(f"{prefix}: saved shape {(n, c)} does not fit {into.shape}")
    into[:] = 0
    into[state[f"{prefix}.rows"], state[f"{prefix}.cols"].astype(np.int64)] = state[f"{prefix}.vals"]


def _put(name: str, state: dict[str, np.ndarray], into: np.ndarray) -> None:
    saved = np.asarray(state[name])
    if saved.shape[1:] != into.shape[1:] or len(saved) > len(into):
        raise ValueError(f"{name}: saved shape {saved.shape} does not fit {into.shape}")
    into[: len(saved)] = saved


def _smooth(p: MpcloudPolicy) -> np.ndarray:
    """The smoothed histogram from the histogram: each gap's kernel row (a timer's round period: the sharp one)."""
    sharp = p.timer[:, None] & p.round[None, :]
    return (np.where(sharp, 0, p.hist) @ p.kernel + np.where(sharp, p.hist, 0) @ p.sharp).astype(np.float32)


def normalize(p: MpcloudPolicy) -> None:
    """Rebuild the derived arrays from the learned ones (see the module docstring)."""
    p.smooth[:] = _smooth(p)
    p._update(p.rows)


def dump(policy: Policy) -> dict[str, np.ndarray]:
    if isinstance(policy, Oracle):
        raise ValueError("the oracle reads the future: it has no state to save")
    out = {"format": np.asarray(FORMAT), "n": np.asarray(policy.n), "last": policy.last.copy()}
    if isinstance(policy, WindowPolicy):
        out.update(lo=policy.lo.copy(), hi=policy.hi.copy())
    if isinstance(policy, HybridHistogram):
        out.update(_sparse("hist", policy.hist), oob=policy.oob.copy(), oob_pred=policy.oob_pred.copy())
    if isinstance(policy, MpcloudPolicy):
        normalize(policy)
        out.update(_sparse("hist", policy.hist), prev_gap=policy.prev_gap.copy(), run=policy.run.copy(),
                   ninv=policy.ninv.copy(), prior=policy.prior.copy(), first_events=policy.first_events.copy(),
                   first_exposure=policy.first_exposure.copy(), first_ratio=policy.first_ratio.copy(),
                   loaded=policy._loaded.copy(), shadow_loaded=policy._shadow_loaded.copy(),
                   scalars=np.asarray([policy.lam, policy.w_self, policy.w_budget, policy.ticks, policy._cursor],
                                      dtype=np.float64))
        if policy.shadow is not None:
            out.update({f"shadow.{k}": v for k, v in dump(policy.shadow).items()})
    return out


def load(policy: Policy, state: dict[str, np.ndarray]) -> None:
    """Restore `dump`'s arrays into a policy reset to at least as many functions (ValueError if they do not fit)."""
    if int(state["format"]) != FORMAT:
        raise ValueError(f"unknown keep-alive state format {int(state['format'])}")
    if int(state["n"]) > policy.n:
        raise ValueError(f"the saved state has {int(state['n'])} functions, the policy {policy.n}")
    _put("last", state, policy.last)
    if isinstance(policy, WindowPolicy):
        _put("lo", state, policy.lo)
        _put("hi", state, policy.hi)
    if isinstance(policy, HybridHistogram):
        _dense("hist", state, policy.hist)
        _put("oob", state, policy.oob)
        _put("oob_pred", state, policy.oob_pred)
    if isinstance(policy, MpcloudPolicy):
        _dense("hist", state, policy.hist)
        for name in ("prev_gap", "run", "ninv"):
            _put(name, state, getattr(policy, name))
        _put("loaded", state, policy._loaded)
        _put("shadow_loaded", state, policy._shadow_loaded)
        for name in ("prior", "first_events", "first_exposure", "first_ratio"):
            saved = np.asarray(state[name])
            if saved.shape != getattr(policy, name).shape:
                raise ValueError(f"{name}: saved shape {saved.shape} differs from {getattr(policy, name).shape}")
            getattr(policy, name)[:] = saved
        lam, w_self, w_budget, ticks, cursor = (float(x) for x in state["scalars"])
        policy.lam, policy.w_self, policy.w_budget, policy.ticks = lam, w_self, w_budget, int(ticks)
        policy._cursor = int(cursor) if int(cursor) < policy.n else 0
        if policy.shadow is not None:
            load(policy.shadow, {k[len("shadow."):]: v for k, v in state.items() if k.startswith("shadow.")})
        normalize(policy)
    elif not isinstance(policy, (WindowPolicy, NeverUnload)) and type(policy) is not Policy:
        raise ValueError(f"no saved state for {type(policy).__name__}")
