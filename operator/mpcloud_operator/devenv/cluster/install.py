"""Install mpcloud (CRDs, namespace, RBAC, RuntimeClasses) on a cluster and mint the operator's credentials.

The operator Deployment in manifests/ needs a container image; locally the operator runs as a process
instead, authenticated with a token of its own ServiceAccount so it has exactly the ClusterRole of
manifests/rbac.yaml (never cluster-admin).
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import yaml
from kubernetes import client, config

from mpcloud_operator.devenv.cluster import binaries

REPO_ROOT = Path(__file__).resolve().parents[4]
SA_NAMESPACE, SA_NAME = "mpcloud-system", "mpcloud-operator"


def kubectl(kubeconfig: Path, *args: str, input: str | None = None, check: bool = True) -> str:
    res = subprocess.run([str(binaries.binary_path("kubectl")), "--kubeconfig", str(kubeconfig), *args],
                         capture_output=True, text=True, input=input, timeout=120)
    if check and res.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout if res.returncode == 0 else res.stdout + res.stderr


def install(kubeconfig: Path) -> None:
    """Apply crds/ (a kustomization), the namespace, RBAC and RuntimeClasses, and wait for the CRDs."""
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "--field-manager", "mpcloud-install",
            "-k", str(REPO_ROOT / "crds"))
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "--field-manager", "mpcloud-install",
            *(arg for name in ("namespace.yaml", "rbac.yaml", "gateway-rbac.yaml", "runtimeclasses.yaml")
              for arg in ("-f", str(REPO_ROOT / "manifests" / name))))
    names = [f"crd/{yaml.safe_load(p.read_text())['metadata']['name']}"
             for p in sorted((REPO_ROOT / "crds").glob("*.yaml")) if p.name != "kustomization.yaml"]
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", *names)


def service_account_kubeconfig(admin_kubeconfig: Path, out: Path, hours: int = 24, name: str = SA_NAME) -> Path:
    """Write a kubeconfig that authenticates as ServiceAccount `name` of mpcloud-system (default: the
    operator's; the gateway has its own) through the TokenRequest API."""
    api = config.new_client_from_config(config_file=str(admin_kubeconfig))
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        name, SA_NAMESPACE, {"spec": {"expirationSeconds": hours * 3600}}).status.token
    cfg = api.configuration
    ca = base64.b64encode(Path(cfg.ssl_ca_cert).read_bytes()).decode()
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "local", "cluster": {"server": cfg.host, "certificate-authority-data": ca}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": name}}],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(doc))
    out.chmod(0o600)
    return out


def operator_deployment(image: str, toleration: dict, node_selector: dict) -> list[dict]:
    """manifests/operator.yaml with what a kustomize overlay for the local cluster would change: the locally
    built image (digest-tagged, never pulled) and placement on a real node; everything else as shipped."""
    docs = [d for d in yaml.safe_load_all((REPO_ROOT / "manifests" / "operator.yaml").read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            pod["nodeSelector"] = {**pod.get("nodeSelector", {}), **node_selector}
            pod["tolerations"] = [*pod.get("tolerations", []), toleration]
            for c in pod["containers"]:
                c["image"], c["imagePullPolicy"] = image, "Never"
    return docs
