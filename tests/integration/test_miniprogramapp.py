"""MiniProgramApp end to end on the real control plane, with the operator running under its own RBAC."""

from __future__ import annotations

import signal
import time

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from mpcloud_operator.api.parts import IMAGE_DIGEST_REQUIRED
from mpcloud_operator.api.types import VALID_IMAGE
from tests.integration.conftest import ROOT, kubectl, wait_until
from tests.integration.custom_resources import CustomResources

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "mpcloud.io", "v1alpha1", "miniprogramapps"
KATA_LABEL = "katacontainers.io/kata-runtime"
CHILD_KINDS = ("deployments", "services", "serviceaccounts", "networkpolicies", "poddisruptionbudgets")


def example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def app_body(name: str, **spec) -> dict:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MiniProgramApp", "metadata": {"name": name},
            "spec": {"image": "nginxinc/nginx-unprivileged:1.27", "ports": [{"name": "http", "containerPort": 8080}]}}
    body["spec"].update(spec)
    return body


class Apps(CustomResources):
    kind, plural = "MiniProgramApp", PLURAL

    def __init__(self, api_client, namespace: str) -> None:
        super().__init__(api_client, namespace)
        self.policy = client.PolicyV1Api(api_client)
        self.net = client.NetworkingV1Api(api_client)

    def wait_ready(self, name: str, timeout: float = 60) -> dict:
        return self.wait_condition(name, "Ready", status="True", timeout=timeout)

    def child_versions(self, name: str) -> dict[str, str]:
        """resourceVersion and uid of every child, keyed by kind."""
        out = {}
        for kind, read in (("Deployment", self.apps.read_namespaced_deployment),
                           ("Service", self.core.read_namespaced_service),
                           ("ServiceAccount", self.core.read_namespaced_service_account),
                           ("NetworkPolicy", self.net.read_namespaced_network_policy)):
            obj = read(name, self.ns)
            out[kind] = (obj.metadata.uid, obj.metadata.resource_version)
        return out


@pytest.fixture
def apps(api_client, namespace, operator) -> Apps:
    # Pod Security "restricted" enforced by the API server itself: a non-compliant pod would be refused.
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    return Apps(api_client, namespace)


def test_create_ready_with_pods_on_kata_nodes_only(apps):
    apps.create(example("app-simple.yaml"))
    app = apps.wait_ready("hello")
    st = app["status"]
    assert st["replicas"] == st["readyReplicas"] == st["desiredReplicas"] == 1
    assert st["url"] == f"http://hello.{apps.ns}.svc.cluster.local:8080"
    assert st["selector"] == "app.kubernetes.io/instance=hello,app.kubernetes.io/name=hello"
    assert {c["type"] for c in st["conditions"]} >= {"Ready", "Progressing", "Degraded"}

    pods = apps.core.list_namespaced_pod(apps.ns, label_selector="app.kubernetes.io/instance=hello").items
    assert pods and all(p.status.phase == "Running" for p in pods)
    kata_nodes = {n.metadata.name for n in apps.core.list_node(label_selector=f"{KATA_LABEL}=true").items}
    for pod in pods:
        assert pod.spec.runtime_class_name == "kata"
        assert pod.spec.node_name in kata_nodes
        assert pod.spec.overhead  # RuntimeClass admission added the sandbox overhead
        assert pod.spec.automount_service_account_token is False
        pod_sc = pod.spec.security_context
        assert (pod_sc.run_as_user, pod_sc.run_as_group, pod_sc.fs_group) == (10001, 10001, 10001)
        assert pod_sc.run_as_non_root is True
        sc = pod.spec.containers[0].security_context
        assert sc.read_only_root_filesystem and sc.allow_privilege_escalation is False
        assert sc.capabilities.drop == ["ALL"]

    dep = apps.apps.read_namespaced_deployment("hello", apps.ns)
    owner = dep.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("MiniProgramApp", "hello", True)
    managers = {m.manager for m in dep.metadata.managed_fields if m.operation == "Apply"}
    assert managers == {"mpcloud"}
    assert "Created" in {e.reason for e in apps.events("hello")}


def test_image_update_rolls_out(apps):
    apps.create(app_body("web", replicas={"min": 2, "max": 4}))
    apps.wait_ready("web")
    seen = set()
    w = watch.Watch()
    apps.patch("web", {"spec": {"image": "nginxinc/nginx-unprivileged:1.28"}})
    for ev in w.stream(apps.custom.list_namespaced_custom_object, GROUP, VERSION, apps.ns, PLURAL,
                       field_selector="metadata.name=web", timeout_seconds=60):
        obj = ev["object"]
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        prog = conds.get("Progressing", {})
        seen.add((prog.get("status"), prog.get("reason")))
        ready = conds.get("Ready", {})
        if (ready.get("status") == "True" and ready.get("observedGeneration") == obj["metadata"]["generation"]
                and prog.get("reason") == "RolloutComplete"):
            w.stop()
    assert ("True", "RollingOut") in seen, seen
    pods = apps.core.list_namespaced_pod(apps.ns, label_selector="app.kubernetes.io/instance=web").items
    running = [p for p in pods if p.metadata.deletion_timestamp is None]
    assert {p.spec.containers[0].image for p in running} == {"nginxinc/nginx-unprivileged:1.28"}


def test_kubectl_scale_through_scale_subresource(apps, kubeconfig):
    apps.create(app_body("scaled", replicas={"min": 1, "max": 5}))
    apps.wait_ready("scaled")
    kubectl(kubeconfig, "scale", "-n", apps.ns, "mpa/scaled", "--replicas=3")
    wait_until(lambda: apps.apps.read_namespaced_deployment("scaled", apps.ns).status.ready_replicas == 3,
               what="3 ready replicas")
    wait_until(lambda: (apps.get("scaled").get("status") or {}).get("replicas") == 3, what="status.replicas 3")
    scale = apps.custom.get_namespaced_custom_object_scale(GROUP, VERSION, apps.ns, PLURAL, "scaled")
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "app.kubernetes.io/instance=scaled,app.kubernetes.io/name=scaled"
    assert any(e.reason == "Scaled" for e in apps.events("scaled"))
    # Beyond max: the operator clamps to replicas.max.
    kubectl(kubeconfig, "scale", "-n", apps.ns, "mpa/scaled", "--replicas=50")
    wait_until(lambda: apps.apps.read_namespaced_deployment("scaled", apps.ns).spec.replicas == 5, what="clamped")


def test_drift_is_restored(apps):
    apps.create(app_body("drift"))
    apps.wait_ready("drift")
    # Someone edits the Deployment by hand (another field manager): image and replicas.
    apps.apps.patch_namespaced_deployment("drift", apps.ns, {"spec": {"replicas": 4, "template": {"spec": {
        "containers": [{"name": "app", "image": "evil:latest"}]}}}})
    wait_until(lambda: (d := apps.apps.read_namespaced_deployment("drift", apps.ns)).spec.replicas == 1
               and d.spec.template.spec.containers[0].image == "nginxinc/nginx-unprivileged:1.27", what="restored")
    svc = apps.core.read_namespaced_service("drift", apps.ns)
    apps.core.patch_namespaced_service("drift", apps.ns, {"spec": {"ports": [
        {"name": "http", "port": 8080, "targetPort": 9999}]}})
    wait_until(lambda: apps.core.read_namespaced_service("drift", apps.ns).spec.ports[0].target_port in ("http", 8080),
               what="service restored")
    assert apps.core.read_namespaced_service("drift", apps.ns).metadata.uid == svc.metadata.uid


def test_deleted_child_is_recreated(apps):
    apps.create(app_body("phoenix"))
    apps.wait_ready("phoenix")
    before = apps.child_versions("phoenix")
    apps.core.delete_namespaced_service("phoenix", apps.ns)
    apps.net.delete_namespaced_network_policy("phoenix", apps.ns)
    apps.apps.delete_namespaced_deployment("phoenix", apps.ns)

    def recreated():
        try:
            after = apps.child_versions("phoenix")
        except ApiException:
            return False
        return all(after[k][0] != before[k][0] for k in ("Service", "NetworkPolicy", "Deployment")) and after
    wait_until(recreated, what="children recreated")
    apps.wait_ready("phoenix")


def test_no_writes_on_noop_resync(apps, running_operator, operator_factory):
    apps.create(app_body("steady", replicas={"min": 2, "max": 3}))
    apps.wait_ready("steady")
    time.sleep(2)  # let status-driven events settle
    before = apps.child_versions("steady")
    pdb_rv = apps.policy.read_namespaced_pod_disruption_budget("steady", apps.ns).metadata.resource_version
    app_rv = apps.get("steady")["metadata"]["resourceVersion"]
    # A metadata-only change is no new generation: nothing to reconcile.
    apps.patch("steady", {"metadata": {"labels": {"touched": "yes"}}})
    app_rv = apps.get("steady")["metadata"]["resourceVersion"]
    # A restart re-applies every app once (a full resync) — and must change nothing.
    assert running_operator["op"].stop(signal.SIGTERM) == 0
    replacement = operator_factory("resync").start()
    running_operator["op"] = replacement
    replacement.wait_ready(timeout=60)
    wait_until(lambda: f"MiniProgramApp {apps.ns}/steady applied" in replacement.log(), what="resync of steady")
    time.sleep(1)
    assert apps.child_versions("steady") == before
    assert apps.policy.read_namespaced_pod_disruption_budget("steady", apps.ns).metadata.resource_version == pdb_rv
    assert apps.get("steady")["metadata"]["resourceVersion"] == app_rv  # no status write either


def test_schema_and_cel_reject_bad_specs_at_apply(apps, kubeconfig):
    with pytest.raises(ApiException) as err:
        apps.create(app_body("neg", replicas={"min": -1, "max": 2}))
    assert err.value.status == 422 and "spec.replicas.min" in err.value.body
    with pytest.raises(RuntimeError) as err2:
        kubectl(kubeconfig, "apply", "-n", apps.ns, "-f", str(ROOT / "examples" / "app-invalid.yaml"))
    assert "replicas.min must be less than or equal to replicas.max" in str(err2.value)
    with pytest.raises(ApiException) as err3:
        apps.create(app_body("ev", scaling={"mode": "scheduled", "capacityPerReplica": 100, "events": [
            {"name": "promo", "start": "2026-12-12T20:00:00Z", "end": "2026-12-12T19:00:00Z",
             "expectedMultiplier": 30}]}))
    assert "end must be after start" in err3.value.body


def allow_secret_checks(apps) -> None:
    """The tenant namespace's opt-in (manifests/rbac.yaml): the operator may check its Secrets exist."""
    client.RbacAuthorizationV1Api(apps.core.api_client).create_namespaced_role_binding(apps.ns, {
        "metadata": {"name": "mpcloud-operator-references"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "mpcloud-operator-references"},
        "subjects": [{"kind": "ServiceAccount", "name": "mpcloud-operator", "namespace": "mpcloud-system"}]})


@pytest.mark.parametrize("image", ["nginx:", "UPPER/case", "a b", "foo@sha256:xyz"])
def test_malformed_image_is_rejected_at_apply(mpcloud_installed, namespace, kubeconfig, tmp_path, image):
    # The CRD alone rejects it (no operator needed): a server-side dry run leaves nothing behind.
    manifest = tmp_path / "app.yaml"
    manifest.write_text(yaml.safe_dump(app_body("bad-image", image=image)))
    with pytest.raises(RuntimeError) as err:
        kubectl(kubeconfig, "apply", "--dry-run=server", "-n", namespace, "-f", str(manifest))
    assert "spec.image" in str(err.value) and VALID_IMAGE.message in str(err.value)


def test_api_server_agrees_with_the_model_on_image_references(mpcloud_installed, api_client, namespace):
    # The rule runs in Go's RE2 on the server and in Python's re in the model: the same table must split the same.
    from tests.unit.test_api_types import INVALID, VALID

    custom = client.CustomObjectsApi(api_client)
    verdicts = {}
    for ref in VALID + INVALID:
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, app_body("img", image=ref),
                                                   dry_run="All")
            verdicts[ref] = True
        except ApiException as err:
            assert err.status == 422, err.body
            verdicts[ref] = False
    assert [r for r in VALID if not verdicts[r]] == [] and [r for r in INVALID if verdicts[r]] == []


def test_require_digest_is_enforced_at_apply(mpcloud_installed, namespace, kubeconfig, tmp_path):
    manifest = tmp_path / "app.yaml"
    manifest.write_text(yaml.safe_dump(app_body("pinned", imagePolicy={"requireDigest": True})))
    with pytest.raises(RuntimeError) as err:
        kubectl(kubeconfig, "apply", "--dry-run=server", "-n", namespace, "-f", str(manifest))
    assert "spec.image" in str(err.value) and IMAGE_DIGEST_REQUIRED.message in str(err.value)
    manifest.write_text(yaml.safe_dump(app_body("pinned", imagePolicy={"requireDigest": True},
                                                image="nginxinc/nginx-unprivileged:1.27@sha256:" + "a" * 64)))
    assert "created (server dry run)" in kubectl(kubeconfig, "apply", "--dry-run=server", "-n", namespace, "-f",
                                                 str(manifest))


def test_missing_secret_reports_and_recovers_without_touching_others(apps):
    allow_secret_checks(apps)
    apps.create(app_body("good"))
    apps.create(app_body("needs-secret", envFrom=[{"secretRef": {"name": "db-credentials"}}]))
    apps.wait_ready("good")
    cond = wait_until(lambda: (c := apps.condition("needs-secret", "Ready")).get("reason") == "ReferenceNotFound"
                      and c, what="ReferenceNotFound")
    assert cond["status"] == "False" and "db-credentials" in cond["message"]
    assert any(e.reason == "ReferenceNotFound" and e.type == "Warning" for e in apps.events("needs-secret"))
    with pytest.raises(ApiException):  # nothing rolled out while the reference is missing
        apps.apps.read_namespaced_deployment("needs-secret", apps.ns)
    assert apps.condition("good", "Ready")["status"] == "True"
    apps.core.create_namespaced_secret(apps.ns, {"metadata": {"name": "db-credentials"},
                                                 "stringData": {"DATABASE_URL": "postgres://db"}})
    apps.wait_ready("needs-secret", timeout=90)  # retried with backoff, no restart needed


def test_without_the_opt_in_secrets_are_not_read(apps):
    # No RoleBinding in this namespace: the operator cannot read Secrets, so it does not block on one; the
    # Deployment is applied and a missing Secret shows where the workload reports it (pods not starting).
    apps.create(app_body("unchecked", envFrom=[{"secretRef": {"name": "not-there"}}]))
    wait_until(lambda: apps.apps.list_namespaced_deployment(apps.ns, field_selector="metadata.name=unchecked").items,
               what="Deployment applied")
    assert apps.condition("unchecked", "Ready").get("reason") != "ReferenceNotFound"


def test_missing_runtime_class_is_reported(apps):
    with pytest.raises(ApiException):  # sanity: the class really is absent
        client.NodeV1Api(apps.core.api_client).read_runtime_class("kata-nonexistent")
    apps.create(app_body("nosandbox", sandbox={"runtimeClassName": "kata-nonexistent"}))
    cond = wait_until(lambda: (c := apps.condition("nosandbox", "Ready")).get("reason") == "RuntimeClassNotFound"
                      and c, what="RuntimeClassNotFound")
    assert cond["status"] == "False"


def test_deleting_the_app_lets_the_garbage_collector_remove_children(apps):
    apps.create(app_body("gone", replicas={"min": 2, "max": 2}))
    apps.wait_ready("gone")
    apps.custom.delete_namespaced_custom_object(GROUP, VERSION, apps.ns, PLURAL, "gone")
    wait_until(lambda: not apps.apps.list_namespaced_deployment(apps.ns).items
               and not apps.core.list_namespaced_service(apps.ns).items
               and not apps.policy.list_namespaced_pod_disruption_budget(apps.ns).items, what="children collected")


def test_metrics_exposed(apps, operator):
    apps.create(app_body("measured"))
    apps.wait_ready("measured")
    text = operator.metrics()
    for needle in ('mpcloud_reconcile_total{kind="MiniProgramApp",result="ok"}',
                   "mpcloud_reconcile_duration_seconds_bucket", 'mpcloud_objects{kind="MiniProgramApp",ready="True"}',
                   f'mpcloud_desired_replicas{{name="measured",namespace="{apps.ns}"}} 1.0',
                   f'mpcloud_ready_replicas{{name="measured",namespace="{apps.ns}"}} 1.0'):
        assert needle in text


def test_operator_role_is_least_privilege(api_client, mpcloud_installed):
    user = "system:serviceaccount:mpcloud-system:mpcloud-operator"
    authz = client.AuthorizationV1Api(api_client)

    def can(verb, resource, group="", subresource=""):
        return authz.create_subject_access_review({"spec": {"user": user, "resourceAttributes": {
            "verb": verb, "resource": resource, "group": group, "subresource": subresource,
            "namespace": "default"}}}).status.allowed

    assert can("patch", "deployments", "apps") and can("patch", "miniprogramapps", "mpcloud.io", "status")
    assert not can("get", "secrets") and not can("list", "secrets")
    # Pipeline deploy and canary tasks (README, "Deploy and canary tasks"): they set an app's image and delete the
    # canary Deployment a run created; both are writes a PipelineRun's author asks for, in the run's namespace.
    assert can("patch", "miniprogramapps", "mpcloud.io") and can("delete", "deployments", "apps")
    assert not can("update", "miniprogramapps", "mpcloud.io") and not can("delete", "miniprogramapps", "mpcloud.io")
    assert not can("create", "pods") and not can("create", "clusterroles", "rbac.authorization.k8s.io")
    role = yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text())
    for doc in role:
        for rule in doc.get("rules", []):
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]


def test_killed_mid_reconcile_converges_without_duplicates(apps, running_operator, operator_factory):
    names = [f"burst-{i}" for i in range(15)]
    for n in names:
        apps.create(app_body(n))
    time.sleep(0.7)
    running_operator["op"].stop(signal.SIGKILL)  # no cleanup, no lease release
    replacement = operator_factory("after-kill").start()
    running_operator["op"] = replacement
    replacement.wait_ready(timeout=60)  # waits for the dead holder's lease to expire
    for n in names:
        apps.wait_ready(n, timeout=90)
    for kind in CHILD_KINDS[:4]:
        items = getattr({"deployments": apps.apps, "services": apps.core, "serviceaccounts": apps.core,
                         "networkpolicies": apps.net}[kind],
                        {"deployments": "list_namespaced_deployment", "services": "list_namespaced_service",
                         "serviceaccounts": "list_namespaced_service_account",
                         "networkpolicies": "list_namespaced_network_policy"}[kind])(
            apps.ns, label_selector="app.kubernetes.io/managed-by=mpcloud").items
        assert sorted(i.metadata.name for i in items) == sorted(names), kind
    rs = apps.apps.list_namespaced_replica_set(apps.ns).items
    assert len(rs) == len(names)  # one ReplicaSet per app: no spurious template changes across the restart


def test_sigterm_at_any_moment_of_start_up_exits_cleanly_and_frees_the_lease(running_operator, operator_factory,
                                                                             api_client):
    # A SIGTERM right after /readyz turned 200 used to land before kopf's own handler was installed: the
    # process died by the signal (exit -15) with the Lease held, and the next operator waited for it to expire.
    coord = client.CoordinationV1Api(api_client)
    waiting = operator_factory("early-standby").start()
    wait_until(lambda: "waiting for lease" in waiting.log(), 30, what="the standby waiting for the Lease")
    assert waiting.stop(signal.SIGTERM) == 0, waiting.log()[-3000:]  # a standby stops cleanly too
    assert running_operator["op"].stop(signal.SIGTERM) == 0
    try:
        for i in range(3):
            op = operator_factory(f"early-stop-{i}").start().wait_ready(timeout=60)
            code = op.stop(signal.SIGTERM)
            assert code == 0, f"exit {code} on a SIGTERM right after ready:\n{op.log()[-3000:]}"
            assert not coord.read_namespaced_lease("mpcloud-operator", "mpcloud-system").spec.holder_identity
    finally:
        running_operator["op"] = operator_factory("after-early-stops").start().wait_ready(timeout=60)


def test_lease_allows_a_single_active_operator(apps, running_operator, operator_factory, api_client):
    first = running_operator["op"]
    standby = operator_factory("standby").start()
    time.sleep(4)
    assert standby.probe("/healthz") == 200 and standby.probe("/readyz") == 503
    lease = client.CoordinationV1Api(api_client).read_namespaced_lease("mpcloud-operator", "mpcloud-system")
    holder = lease.spec.holder_identity
    # The standby does not act: an app created now is reconciled by the leader only.
    apps.create(app_body("solo"))
    apps.wait_ready("solo")
    assert "solo" not in standby.log()
    code = first.stop(signal.SIGTERM)
    assert code == 0, f"operator exited {code} on SIGTERM:\n{first.log()[-4000:]}"  # clean stop releases the lease
    standby.wait_ready(timeout=30)
    running_operator["op"] = standby
    lease = client.CoordinationV1Api(api_client).read_namespaced_lease("mpcloud-operator", "mpcloud-system")
    assert lease.spec.holder_identity != holder and lease.spec.lease_transitions >= 1
    apps.create(app_body("after-failover"))
    apps.wait_ready("after-failover")
