"""The ValidatingWebhookConfiguration the operator keeps (pure builders; admission.py applies them).

One configuration, `mpcloud-risk`, three webhooks; failurePolicy per rule mode (Kyverno's convention):

| webhook                      | objects                         | rules evaluated | failurePolicy | namespaces                        |
|------------------------------|---------------------------------|-----------------|---------------|-----------------------------------|
| enforce.risk.mpcloud.io      | MiniProgramApp, CloudFunction,  | Enforce mode    | Fail (closed) | labelled risk.mpcloud.io/enforce  |
|                              | Pipeline, PipelineRun           |                 |               | (all but kube-system when a       |
|                              |                                 |                 |               | cluster default enforces)         |
| audit.risk.mpcloud.io        | the same                        | Audit mode      | Ignore (open) | all but kube-system               |
| workloads.risk.mpcloud.io    | Pods, Deployments               | both            | Ignore (open) | labelled risk.mpcloud.io/workloads|

The operator owns the configuration (server-side apply, field manager mpcloud-risk): its caBundle follows the
certificate Secret and its enforce selector follows the policies, so nothing in manifests/ can drift from them.
"""

from __future__ import annotations

from typing import Any

from mpcloud_operator.config import GROUP, VERSION
from mpcloud_operator.riskpolicy.model import RiskPolicy
from mpcloud_operator.riskpolicy.rules import enforces

CONFIGURATION = "mpcloud-risk"
TLS_SECRET = "mpcloud-webhook-tls"
SERVICE = "mpcloud-webhook"
ENFORCE_LABEL = "risk.mpcloud.io/enforce"
WORKLOADS_LABEL = "risk.mpcloud.io/workloads"
MPCLOUD_RESOURCES = ["miniprogramapps", "cloudfunctions", "pipelines", "pipelineruns"]
NAMESPACE_NAME = "kubernetes.io/metadata.name"


def hostnames(config: Any) -> list[str]:
    ns = config.lease_namespace
    return ["127.0.0.1", "localhost", f"{SERVICE}.{ns}.svc", f"{SERVICE}.{ns}.svc.cluster.local"]


def client_config(config: Any) -> dict[str, Any]:
    """How the API server reaches the webhooks: a URL (a local control plane: https://127.0.0.1:<port>) or the
    Service in front of the operator's pods (in a cluster)."""
    if config.admission_url:
        return {"url": config.admission_url.rstrip("/")}
    return {"service": {"name": SERVICE, "namespace": config.lease_namespace, "port": 443}}


def _except(*namespaces: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": NAMESPACE_NAME, "operator": "NotIn", "values": sorted(set(namespaces))}]}


def selectors(policies: list[RiskPolicy], operator_namespace: str) -> dict[str, dict[str, Any]]:
    """namespaceSelector of each webhook, from the policies in force."""
    defaults = [p for p in policies if p.spec.cluster_default and p.metadata.namespace == operator_namespace]
    enforce_all = any(enforces(p) for p in defaults)
    workloads_all = any(p.spec.enabled and p.spec.admission.enabled and p.spec.admission.workloads for p in defaults)
    return {
        "enforce": _except("kube-system") if enforce_all else {"matchLabels": {ENFORCE_LABEL: "true"}},
        "audit": _except("kube-system"),
        "workloads": (_except("kube-system", operator_namespace) if workloads_all
                      else {"matchLabels": {WORKLOADS_LABEL: "true"}}),
    }


def labelled_namespaces(policies: list[RiskPolicy], operator_namespace: str) -> dict[str, set[str]]:
    """label -> namespaces that must carry it (the enforce and workloads selectors' opt-in)."""
    enforce = {p.metadata.namespace for p in policies if enforces(p) and not p.spec.cluster_default}
    workloads = {p.metadata.namespace for p in policies
                 if p.spec.enabled and p.spec.admission.enabled and p.spec.admission.workloads
                 and p.metadata.namespace != operator_namespace}
    return {ENFORCE_LABEL: enforce, WORKLOADS_LABEL: workloads}


def _client(base: dict[str, Any], path: str, ca_bundle: bytes) -> dict[str, Any]:
    import base64

    out: dict[str, Any] = {"caBundle": base64.b64encode(ca_bundle).decode()}
    if "url" in base:
        out["url"] = base["url"] + path
    else:
        out["service"] = {**base["service"], "path": path}
    return out


def _webhook(name: str, path: str, rules: list[dict[str, Any]], failure: str, selector: dict[str, Any],
             base: dict[str, Any], ca_bundle: bytes, timeout: int) -> dict[str, Any]:
    return {"name": f"{name}.risk.mpcloud.io", "clientConfig": _client(base, path, ca_bundle), "rules": rules,
            "failurePolicy": failure, "matchPolicy": "Equivalent", "namespaceSelector": selector,
            "sideEffects": "NoneOnDryRun", "timeoutSeconds": timeout, "admissionReviewVersions": ["v1"]}


def configuration(base: dict[str, Any], ca_bundle: bytes, selectors: dict[str, dict[str, Any]],
                  operator_namespace: str, timeout: int = 5) -> dict[str, Any]:
    ops = ["CREATE", "UPDATE"]
    mpcloud = [{"apiGroups": [GROUP], "apiVersions": [VERSION], "resources": MPCLOUD_RESOURCES, "operations": ops,
                "scope": "Namespaced"}]
    workloads = [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ops,
                  "scope": "Namespaced"},
                 {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"], "operations": ops,
                  "scope": "Namespaced"}]
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION, "labels": {"app.kubernetes.io/managed-by": "mpcloud"}},
        "webhooks": [
            _webhook("enforce", "/enforce", mpcloud, "Fail", selectors["enforce"], base, ca_bundle, timeout),
            _webhook("audit", "/audit", mpcloud, "Ignore", selectors["audit"], base, ca_bundle, timeout),
            _webhook("workloads", "/workloads", workloads, "Ignore", selectors["workloads"], base, ca_bundle, timeout),
        ],
    }
