"""RiskPolicy as a registered kind: no children; its status says whether the policy is in force.

Admission is served by `riskpolicy.admission` (every replica, not only the leader); the scaler reads the policies
through `riskpolicy.policies`; scans and PolicyReports (`riskpolicy.scan_loop`) and abnormal-traffic detection
(`riskpolicy.traffic_loop`) are leader loops registered here.
"""

from __future__ import annotations

from typing import Any

from mpcloud_operator.api.conditions import get_condition, set_condition
from mpcloud_operator.reconcile.kind import Kind, StatusInput
from mpcloud_operator.riskpolicy.model import GROUPS, KIND, PLURAL, RiskPolicy


def summary(policy: RiskPolicy) -> str:
    """One line: which groups are on and in which mode."""
    spec = policy.spec
    if not spec.enabled:
        return "disabled (spec.enabled is false)"
    parts = []
    for group in GROUPS:
        rules = getattr(spec, {"opsRisk": "ops_risk"}.get(group, group))
        parts.append(f"{group} {rules.mode}" if rules.enabled else f"{group} off")
    scope = "every namespace (cluster default)" if spec.cluster_default else "this namespace"
    return f"in force for {scope}: " + ", ".join(parts)


def status(policy: RiskPolicy, given: StatusInput) -> dict[str, Any]:
    gen = policy.metadata.generation
    ready = ("True", "InForce") if policy.spec.enabled else ("False", "Disabled")
    return {"conditions": set_condition(given.old.get("conditions"), "Ready", *ready, summary(policy), gen, given.now),
            "observedGeneration": gen}


def events(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    before = get_condition(old.get("conditions"), "Ready") or {}
    after = get_condition(new.get("conditions"), "Ready") or {}
    if (before.get("status"), before.get("message")) != (after.get("status"), after.get("message")):
        return [(after.get("reason", "InForce"), after.get("message", ""), "Normal")]
    return []


def scan_loop(runtime: Any) -> Any:
    from mpcloud_operator.riskpolicy.scan_loop import scan_loop as start

    return start(runtime)


def traffic_loop(runtime: Any) -> Any:
    from mpcloud_operator.riskpolicy.traffic_loop import traffic_loop as start

    return start(runtime)


def _kind() -> Kind:
    from mpcloud_operator.api.crdgen import column

    return Kind(
        kind=KIND, plural=PLURAL, model=RiskPolicy, desired=lambda obj: [], status=status, events=events,
        conditions=("Ready",), owned_status_fields=(), short_names=("rp", "risk"),
        loops=(scan_loop, traffic_loop),  # background scans, PolicyReports, abnormal traffic (leader only)
        printer_columns=(
            column("Ready", '.status.conditions[?(@.type=="Ready")].status', description="In force"),
            column("Admission", ".spec.admission.mode", description="Admission mode"),
            column("OpsRisk", ".spec.opsRisk.mode", description="Ops-risk mode"),
            column("Findings", ".status.findings.admission", "integer", "Admission findings", priority=1),
            column("LastScan", ".status.lastScanTime", "date", priority=1),
            column("Age", ".metadata.creationTimestamp", "date"),
        ),
    )


RISK_POLICY = _kind()
