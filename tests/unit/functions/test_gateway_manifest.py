"""manifests/gateway.yaml and gateway-rbac.yaml: installed by the kustomization, read-only RBAC, Pod Security
"restricted"."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def _docs() -> dict[str, dict]:
    return {d["kind"]: d for name in ("gateway.yaml", "gateway-rbac.yaml")
            for d in yaml.safe_load_all((ROOT / "manifests" / name).read_text()) if d}


def test_installed_with_the_rest():
    resources = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())["resources"]
    assert {"gateway.yaml", "gateway-rbac.yaml"} <= set(resources)
    assert {d["metadata"].get("namespace") for k, d in _docs().items() if k not in ("ClusterRole", "ClusterRoleBinding")} \
        == {"mpcloud-system"}


def test_rbac_reads_functions_and_endpointslices_and_claims_pool_pods_only():
    docs = _docs()
    granted = {(g, r, v) for rule in docs["ClusterRole"]["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    reads = {(g, r, v) for g, r in (("mpcloud.io", "cloudfunctions"), ("discovery.k8s.io", "endpointslices"))
             for v in ("get", "list", "watch")}
    # poolclaim: watch the pools' pods, claim one (patch), retire it (delete); never Secrets (tokens are derived).
    claims = {("", "pods", v) for v in ("get", "list", "watch", "patch", "delete")}
    assert granted == reads | claims
    subject = docs["ClusterRoleBinding"]["subjects"][0]
    assert (subject["name"], subject["namespace"]) == ("mpcloud-gateway", "mpcloud-system")
    assert docs["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "mpcloud-gateway"


def test_pod_meets_restricted_and_runs_the_gateway():
    pod = _docs()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"] and sc["readOnlyRootFilesystem"]
    assert container["command"][-1] == "mpcloud_operator.functions.gateway"
    assert "limits" in container["resources"] and container["readinessProbe"]["httpGet"]["path"] == "/_/health"
    from mpcloud_operator.functions.gateway import parse_args

    args = parse_args(container["args"])  # the manifest's flags are the program's flags
    assert args.port == container["ports"][0]["containerPort"]
