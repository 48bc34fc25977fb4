"""The one registry of custom resource kinds. Adding a kind is one folder and one line in KINDS.

Everything generic derives from this list: kopf handler registration (handlers.py), CRD generation
(crdgen.py), API paths (`paths()`), child watches and reconcile (reconcile/), metrics, background loops
(main.py) and the RBAC test that manifests/rbac.yaml covers every kind and child.
"""

from __future__ import annotations

from mpcloud_operator.cloudfunction.handlers import CLOUD_FUNCTION
from mpcloud_operator.kube.client import ResourcePaths
from mpcloud_operator.miniprogramapp.handlers import MINI_PROGRAM_APP
from mpcloud_operator.pipeline.handlers import PIPELINE, PIPELINE_RUN
from mpcloud_operator.reconcile.kind import Kind
from mpcloud_operator.riskpolicy.handlers import RISK_POLICY

KINDS: tuple[Kind, ...] = (
    MINI_PROGRAM_APP,
    CLOUD_FUNCTION,
    PIPELINE, PIPELINE_RUN,
    RISK_POLICY,
)

# Objects kinds point at (reference checks) and that the generic layer reads, beyond kinds and children.
REFERENCED = (("Secret", "v1", "secrets", True), ("ConfigMap", "v1", "configmaps", True),
              ("RuntimeClass", "node.k8s.io/v1", "runtimeclasses", False),
              ("Pod", "v1", "pods", True))  # a finished task's pod: its results and the failing step

# Kinds written that no kind owns as a child: RiskPolicy's PolicyReports (riskpolicy/scan_loop.py).
WRITTEN = (("PolicyReport", "wgpolicyk8s.io/v1alpha2", "policyreports", True),)

# Referenced kinds watched so that a change re-reconciles the objects pointing at them (the operator may not
# list or watch Secrets: those are re-checked with backoff only).
WATCHED_REFERENCES = ("ConfigMap", "RuntimeClass")


def paths(kinds: tuple[Kind, ...] = KINDS) -> ResourcePaths:
    """API paths of every kind, child and referenced kind (no discovery round-trips)."""
    out = ResourcePaths()
    for kind in kinds:
        out.add(kind.kind, kind.api_version, kind.plural)
        for child in (*kind.children, *kind.observed):
            out.add(child.kind, child.api_version, child.plural)
    for name, api_version, plural, namespaced in (*REFERENCED, *WRITTEN):
        out.add(name, api_version, plural, namespaced)
    return out
