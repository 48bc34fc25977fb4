"""The local control plane is real: scheduling, kwok pod lifecycle, RuntimeClass admission, GC, RBAC."""

from __future__ import annotations


import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

KATA_LABEL = "katacontainers.io/kata-runtime"


def _pod(name: str, runtime_class: str | None = None) -> dict:
    spec = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": _pod("x")["spec"]}}}


def test_nodes_kata_and_plain(api_client):
    nodes = client.CoreV1Api(api_client).list_node().items
    kata = [n for n in nodes if n.metadata.labels.get(KATA_LABEL) == "true"]
    plain = [n for n in nodes if KATA_LABEL not in n.metadata.labels]
    assert len(kata) >= 2 and len(plain) >= 1
    for n in nodes:
        assert {c.type: c.status for c in n.status.conditions}.get("Ready") == "True"
        assert n.status.allocatable["pods"] == "110"


def test_deployment_pods_run_on_kwok_nodes(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, _deployment("web", 3))
    # Deployment -> ReplicaSet -> Pods is the controller-manager; placement is the scheduler; Running is kwok.
    wait_until(lambda: (apps.read_namespaced_deployment("web", namespace).status.ready_replicas or 0) == 3,
               what="3 ready replicas")
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert {p.status.phase for p in pods} == {"Running"}
    assert all(p.spec.node_name for p in pods)
    rs = apps.list_namespaced_replica_set(namespace).items
    assert len(rs) == 1 and rs[0].metadata.owner_references[0].kind == "Deployment"

    # Deletion completes (kwok acknowledges termination, the GC removes the ReplicaSet and pods).
    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Foreground")
    wait_until(lambda: not core.list_namespaced_pod(namespace, label_selector="app=web").items,
               what="pods deleted")


def test_runtime_class_overhead_and_placement(api_client, namespace):
    core = client.CoreV1Api(api_client)
    node_api = client.NodeV1Api(api_client)
    rc = node_api.read_runtime_class("kata-qemu")
    core.create_namespaced_pod(namespace, _pod("sandboxed", "kata-qemu"))
    pod = core.read_namespaced_pod("sandboxed", namespace)
    # The RuntimeClass admission plugin copied the overhead and merged the nodeSelector.
    assert pod.spec.overhead == rc.overhead.pod_fixed
    assert pod.spec.node_selector == {KATA_LABEL: "true"}
    pod = wait_until(lambda: (p := core.read_namespaced_pod("sandboxed", namespace)).status.phase == "Running" and p,
                     what="sandboxed pod Running")
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels.get(KATA_LABEL) == "true"

    # A plain pod may land anywhere; a pod naming a missing RuntimeClass is rejected at admission.
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, _pod("bogus", "kata-does-not-exist"))
    assert err.value.status in (400, 403)
    assert "kata-does-not-exist" in err.value.body


def test_runtime_class_pods_never_land_on_plain_nodes(api_client, namespace):
    core = client.CoreV1Api(api_client)
    for i in range(6):
        core.create_namespaced_pod(namespace, _pod(f"p{i}", "kata-fc"))
    wait_until(lambda: all(p.spec.node_name for p in core.list_namespaced_pod(namespace).items), what="all scheduled")
    kata_nodes = {n.metadata.name for n in core.list_node(label_selector=f"{KATA_LABEL}=true").items}
    assert {p.spec.node_name for p in core.list_namespaced_pod(namespace).items} <= kata_nodes


def test_owner_reference_garbage_collection(api_client, namespace):
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "child", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}})
    core.delete_namespaced_config_map("owner", namespace)

    def child_gone():
        try:
            core.read_namespaced_config_map("child", namespace)
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_until(child_gone, timeout=60, what="the garbage collector to delete the child")


def test_pdb_status_computed(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    policy = client.PolicyV1Api(api_client)
    apps.create_namespaced_deployment(namespace, _deployment("pdb", 2))
    policy.create_namespaced_pod_disruption_budget(namespace, {
        "metadata": {"name": "pdb"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "pdb"}}}})
    st = wait_until(lambda: (s := policy.read_namespaced_pod_disruption_budget("pdb", namespace).status)
                    and s.current_healthy == 2 and s, what="PDB status from the disruption controller")
    assert st.disruptions_allowed == 1 and st.expected_pods == 2


def test_rbac_denies_unprivileged_service_account(api_client, namespace, kubeconfig):
    from kubernetes import config

    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    user = f"system:serviceaccount:{namespace}:nobody"
    # Impersonation: the admin kubeconfig acts as the ServiceAccount, whose requests RBAC then authorizes.
    imp = config.new_client_from_config(config_file=str(kubeconfig))
    imp.set_default_header("Impersonate-User", user)
    imp.set_default_header("Impersonate-Group", "system:serviceaccounts")
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(imp).list_namespaced_secret(namespace)
    assert err.value.status == 403
    review = client.AuthorizationV1Api(api_client).create_subject_access_review({
        "spec": {"user": user, "resourceAttributes": {"namespace": namespace, "verb": "list", "resource": "secrets"}}})
    assert review.status.allowed is False
