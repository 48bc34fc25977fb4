"""manifests/rbac.yaml grants exactly what the registered kinds need (derived from kinds.KINDS).

Every kind: watch it, write its status. Every child kind: watch, create and server-side apply it (and delete
it where a kind removes leftovers). Scale subresources the scaler writes. References: ConfigMaps and
RuntimeClasses readable; Secrets only through the per-namespace opt-in role, never cluster-wide.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mpcloud_operator.kinds import KINDS, REFERENCED, WATCHED_REFERENCES, WRITTEN

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_ROLE, REFERENCES_ROLE = "mpcloud-operator", "mpcloud-operator-references"
BINDINGS_ROLE = "mpcloud-operator-bindings"
TRIGGERS_ROLE = "mpcloud-operator-triggers"
# The one spec write: pipeline triggers create runs, and a Replace schedule cancels its previous run.
TRIGGER_WRITES = {("mpcloud.io", "pipelineruns", "create"), ("mpcloud.io", "pipelineruns", "patch")}
# And the pipeline's deploy/canary tasks: an app's image, a function's source (merge patch).
DEPLOY_WRITES = {("mpcloud.io", "miniprogramapps", "patch"), ("mpcloud.io", "cloudfunctions", "patch")}


def _rules(role: str) -> set[tuple[str, str, str]]:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()) if d]
    (doc,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == role]
    return {(g, r, v) for rule in doc["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def test_operator_role_covers_every_kind_and_child() -> None:
    granted = _rules(OPERATOR_ROLE)
    needed: set[tuple[str, str, str]] = set()
    for kind in KINDS:
        group = _group(kind.api_version)
        needed |= {(group, kind.plural, v) for v in ("get", "list", "watch")}
        needed |= {(group, f"{kind.plural}/status", "patch")}
        for child in kind.children:
            needed |= {(child.group, child.plural, v) for v in ("get", "list", "watch", "create", "patch")}
        for stub_kind in {c.kind for c in kind.children}:
            child = kind.child(stub_kind)
            if stub_kind in ("PodDisruptionBudget", "ConfigMap", "Job") or (kind.kind, stub_kind) == (
                    "PipelineRun", "Deployment"):  # children removed when a spec drops them
                # (a Job: a run cancelled or past its deadline stops its running task attempts; a Deployment:
                # a canary promoted or rolled back)
                needed.add((child.group, child.plural, "delete"))
        for obs in kind.observed:  # read, never written
            needed |= {(_group(obs.api_version), obs.plural, v) for v in ("get", "list", "watch")}
    needed.add(("apps", "deployments/scale", "patch"))  # the scaling loop
    for name, api_version, plural, _ in REFERENCED:
        if name != "Secret":
            needed.add((_group(api_version), plural, "get"))
        if name in WATCHED_REFERENCES:  # a change re-reconciles the objects pointing at it
            needed |= {(_group(api_version), plural, v) for v in ("list", "watch")}
        if name == "Pod":  # a finished task's pod, found by its Job's label
            needed.add((_group(api_version), plural, "list"))
    for _, api_version, plural, _ in WRITTEN:  # PolicyReports: applied, read back, listed and deleted when stale
        needed |= {(_group(api_version), plural, v) for v in ("get", "list", "create", "patch", "delete")}
    missing = needed - granted
    assert not missing, f"manifests/rbac.yaml lacks {sorted(missing)}"


def test_no_cluster_wide_secret_access_and_no_spec_writes() -> None:
    granted = _rules(OPERATOR_ROLE)
    assert not {r for r in granted if r[1] == "secrets"}
    observed = {obs.plural for kind in KINDS for obs in kind.observed}
    assert not {r for r in granted if r[1] in observed and r[2] not in ("get", "list", "watch")}
    for kind in KINDS:
        assert not {r for r in granted if r[1] == kind.plural and r[2] not in ("get", "list", "watch")} \
            - TRIGGER_WRITES - DEPLOY_WRITES
    assert TRIGGER_WRITES | DEPLOY_WRITES <= granted
    assert _rules(REFERENCES_ROLE) == {("", "secrets", "get")}
    assert _rules(TRIGGERS_ROLE) == {("", "secrets", "get")}  # a git trigger's webhook secret, per delivery
    # Functions' bindings Secrets: written (and deleted when the last binding goes) only where a namespace opts
    # in, never read back.
    assert _rules(BINDINGS_ROLE) == {("", "secrets", "create"), ("", "secrets", "patch"), ("", "secrets", "delete")}


def test_no_wildcards() -> None:
    for doc in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()):
        for rule in (doc or {}).get("rules", []):
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]


def test_warm_pool_objects_are_covered():
    """The pool manager applies a ServiceAccount, NetworkPolicy and Deployment per pool (the operator role) and
    the pool's token Secret (only where a namespace opted in with the bindings role, as for bindings)."""
    from mpcloud_operator.api.parts import Sandbox
    from mpcloud_operator.cloudfunction import warmpool

    key = warmpool.PoolKey("ns", "python3.11", "kata")
    objects = [warmpool.service_account(key), warmpool.token_secret(key, "t" * 64), warmpool.network_policy(key),
               warmpool.deployment(key, 1, Sandbox(), "img", "IfNotPresent", None)]
    plural = {"ServiceAccount": "serviceaccounts", "Secret": "secrets", "NetworkPolicy": "networkpolicies",
              "Deployment": "deployments"}
    operator, bindings = _rules(OPERATOR_ROLE), _rules(BINDINGS_ROLE)
    for obj in objects:
        group = _group(obj["apiVersion"])
        role = bindings if obj["kind"] == "Secret" else operator
        assert {(group, plural[obj["kind"]], v) for v in ("create", "patch")} <= role, obj["kind"]
