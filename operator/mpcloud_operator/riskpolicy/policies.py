"""The RiskPolicies as the leader's watch cache holds them (for loops that run in the leader, e.g. the scaler)."""

from __future__ import annotations

import logging
from typing import Any

from mpcloud_operator.riskpolicy.model import KIND, RiskPolicy

log = logging.getLogger("mpcloud.risk")


def cached_policies(runtime: Any) -> list[RiskPolicy]:
    """Every valid RiskPolicy in the runtime's primary store (invalid ones are skipped: their status says why)."""
    store = runtime.primaries
    out = []
    for key in store.keys(KIND):
        body = store.get(key)
        if body is None:
            continue
        try:
            out.append(RiskPolicy.model_validate(body))
        except ValueError:
            continue
    return out
