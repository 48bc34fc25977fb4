"""Keep-alive policies by their CLI name (the one module that knows every policy, so `policies` -- the
baselines -- and `mpcloud` -- which builds on them -- do not import each other in a cycle)."""

from __future__ import annotations

from predictors.keepalive.mpcloud import MpcloudPolicy
from predictors.keepalive.policies import FixedKeepAlive, HybridHistogram, NeverUnload, Oracle, Policy


def make_policy(name: str) -> Policy:
    """Policy from its CLI name: fixed-N, hybrid, hybrid-short, never-unload, oracle, mpcloud[-lN]."""
    if name.startswith("fixed-"):
        return FixedKeepAlive(int(name.split("-", 1)[1]))
    if name == "hybrid":
        return HybridHistogram()
    if name == "hybrid-short":
        return HybridHistogram(name="hybrid-short", fallback_minutes=10)
    if name == "never-unload":
        return NeverUnload()
    if name == "oracle":
        return Oracle()
    if name == "mpcloud":
        return MpcloudPolicy()
    if name.startswith("mpcloud-l"):
        return MpcloudPolicy(cold_cost_minutes=float(name[len("mpcloud-l"):]), name=name)
    raise ValueError(f"unknown policy {name!r}")
