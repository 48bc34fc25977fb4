"""Ops-risk guardrails where the change happens in the operator itself: the scaler's scale-in during events.

Pure: (the app, the scaler's decision, the policies, now) -> the replicas allowed and the findings. The scaling
loop calls `limit_scale_in` on each decision before it writes (scaling/loop.py); admission-time ops-risk rules
(freezes, rollouts) are in rules.py.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from mpcloud_operator.riskpolicy.findings import Finding
from mpcloud_operator.riskpolicy.model import RiskPolicy
from mpcloud_operator.riskpolicy.rules import active_events, applicable, exemption

RULE = "opsRisk.scaleIn"


def limit_scale_in(app: dict[str, Any], previous: int, replicas: int, policies: list[RiskPolicy],
                   operator_namespace: str, now: datetime) -> tuple[int, list[Finding]]:
    """The replicas the policies allow instead of `replicas` (a scale-in from `previous`), and the findings."""
    if replicas >= previous:
        return replicas, []
    events = active_events(app, now)
    if not events:
        return replicas, []
    meta = app.get("metadata") or {}
    allowed, findings = replicas, []
    for p in applicable(policies, meta.get("namespace", ""), operator_namespace):
        ops = p.spec.ops_risk
        rule = ops.scale_in
        if not (p.spec.enabled and ops.enabled and rule.enabled) or exemption(p, RULE, app):
            continue
        floor = rule.min_replicas or 0
        if rule.max_step_percent is not None:
            floor = max(floor, previous - max(1, math.floor(previous * rule.max_step_percent / 100)))
        floor = min(floor, previous)
        if floor <= replicas:
            continue
        mode = rule.mode or ops.mode
        limits = ", ".join(filter(None, (f"minReplicas {rule.min_replicas}" if rule.min_replicas else "",
                                         f"maxStepPercent {rule.max_step_percent}"
                                         if rule.max_step_percent is not None else "")))
        verb = f"held at {floor}" if mode == "Enforce" else "allowed (Audit)"
        findings.append(Finding(
            rule=RULE, result="fail" if mode == "Enforce" else "warn",
            message=(f"scale-in {previous} -> {replicas} during promotion event {events[0].get('name')} "
                     f"exceeds {limits}: {verb}"),
            policy=f"{p.metadata.namespace}/{p.metadata.name}", kind=app.get("kind", "MiniProgramApp"),
            api_version=app.get("apiVersion", ""), namespace=meta.get("namespace", ""), name=meta.get("name", "")))
        if mode == "Enforce":
            allowed = max(allowed, floor)
    return allowed, findings
