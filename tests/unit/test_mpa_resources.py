"""Unit tests for the MiniProgramApp desired-state builders and compute_status."""

from datetime import datetime, timedelta, timezone

import pytest
from kubernetes.client import ApiClient

from mpcloud_operator.miniprogramapp import resources as r
from mpcloud_operator.miniprogramapp.model import MiniProgramApp

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def make_app(generation=1, status=None, **spec):
    body = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp",
            "metadata": {"name": "shop", "namespace": "team-a", "uid": "uid-1", "generation": generation},
            "spec": {"image": "nginxinc/nginx-unprivileged:1.27",
                     "ports": [{"name": "http", "containerPort": 8080}], **spec}}
    if status is not None:
        body["status"] = status
    return MiniProgramApp.model_validate(body)


def by_kind(app):
    return {o["kind"]: o for o in r.desired_objects(app)}


def pod_spec(app):
    return r.deployment(app)["spec"]["template"]["spec"]


# ------------------------------------------------------------------ common metadata


def test_apply_order_and_kinds():
    assert [o["kind"] for o in r.desired_objects(make_app())] == [
        "ServiceAccount", "NetworkPolicy", "Service", "Deployment"]
    assert [o["kind"] for o in r.desired_objects(make_app(replicas={"min": 2}))] == [
        "ServiceAccount", "NetworkPolicy", "Service", "PodDisruptionBudget", "Deployment"]


@pytest.mark.parametrize("kind", ["ServiceAccount", "NetworkPolicy", "Service", "PodDisruptionBudget", "Deployment"])
def test_labels_owner_and_no_server_fields(kind):
    obj = by_kind(make_app(replicas={"min": 2}))[kind]
    meta = obj["metadata"]
    assert (meta["name"], meta["namespace"]) == ("shop", "team-a")
    assert meta["labels"] == {"app.kubernetes.io/name": "shop", "app.kubernetes.io/instance": "shop",
                              "app.kubernetes.io/managed-by": "mpcloud"}
    assert meta["ownerReferences"] == [{"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp",
                                        "name": "shop", "uid": "uid-1", "controller": True,
                                        "blockOwnerDeletion": True}]
    assert "status" not in obj and not {"resourceVersion", "uid", "creationTimestamp"} & set(meta)


@pytest.mark.parametrize("kind", ["ServiceAccount", "NetworkPolicy", "Service", "PodDisruptionBudget", "Deployment"])
def test_objects_use_only_real_api_fields(kind):
    # Round trip through the kubernetes client's typed models: a misspelt field would be dropped.
    obj = by_kind(make_app(replicas={"min": 2}, env=[{"name": "A", "value": "1"}],
                           bindings={"database": {"secretRef": {"name": "db"}}}))[kind]
    client = ApiClient()
    model = "V1" + kind
    typed = client._ApiClient__deserialize(obj, model)  # noqa: SLF001 - the public API needs a response object
    assert client.sanitize_for_serialization(typed) == obj


def test_owner_reference_needs_a_uid():
    app = make_app()
    app.metadata.uid = None
    with pytest.raises(ValueError, match="uid"):
        r.desired_objects(app)


# ------------------------------------------------------------------ Deployment


def test_pod_security_restricted():
    pod = pod_spec(make_app())
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "shop"
    [c] = pod["containers"]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"}}
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    assert not any(k in pod for k in ("hostNetwork", "hostPID", "hostIPC"))


def test_run_as_is_overridable():
    pod = pod_spec(make_app(runAs={"user": 101, "group": 102}))
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (101, 102)
    assert pod["securityContext"]["fsGroup"] == 102 and pod["securityContext"]["runAsNonRoot"] is True


def test_runtime_class_from_sandbox():
    assert pod_spec(make_app())["runtimeClassName"] == "kata"
    assert pod_spec(make_app(sandbox={"runtimeClassName": "kata-fc"}))["runtimeClassName"] == "kata-fc"
    for name in ("", "none"):
        pod = pod_spec(make_app(sandbox={"runtimeClassName": name, "allowUnsandboxed": True}))
        assert "runtimeClassName" not in pod


@pytest.mark.parametrize(("replicas", "expected"), [
    ({}, 1), ({"min": 3, "max": 5}, 3), ({"min": 2, "max": 5, "desired": 4}, 4),
    ({"min": 2, "max": 5, "desired": 40}, 5), ({"min": 2, "max": 5, "desired": 0}, 2),
    ({"min": 0, "max": 5, "desired": 0}, 0), ({"min": 0, "max": 5}, 1),
])
def test_deployment_replicas_clamped(replicas, expected):
    assert r.deployment(make_app(replicas=replicas))["spec"]["replicas"] == expected


def test_container_ports_resources_and_selector():
    app = make_app(ports=[{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 5353,
                                                                   "protocol": "UDP"}],
                   resources={"requests": {"cpu": 1, "memory": "256Mi"}})
    dep = r.deployment(app)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["ports"][1] == {"name": "dns", "containerPort": 5353, "protocol": "UDP"}
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
    assert dep["spec"]["selector"]["matchLabels"] == r.selector_labels(app)
    assert r.selector_labels(app).items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_default_probes_check_the_first_port():
    c = pod_spec(make_app())["containers"][0]
    assert c["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert c["livenessProbe"]["tcpSocket"] == {"port": "http"} and c["livenessProbe"]["initialDelaySeconds"] == 10


def test_custom_and_disabled_probes():
    c = pod_spec(make_app(probes={"readiness": {"httpGet": {"path": "/healthz"}, "periodSeconds": 3},
                                  "liveness": {"tcpSocket": {"port": 8080}}}))["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    assert c["readinessProbe"]["periodSeconds"] == 3
    assert c["livenessProbe"]["tcpSocket"] == {"port": 8080}
    c = pod_spec(make_app(probes={"enabled": False}))["containers"][0]
    assert "readinessProbe" not in c and "livenessProbe" not in c


def test_env_env_from_and_bindings():
    c = pod_spec(make_app(
        env=[{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        envFrom=[{"configMapRef": {"name": "cfg", "optional": True}}],
        bindings={"database": {"secretRef": {"name": "db"}}, "storage": {"secretRef": {"name": "oss"}}},
    ))["containers"][0]
    assert c["env"] == [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    assert c["envFrom"] == [{"configMapRef": {"name": "cfg", "optional": True}},
                            {"secretRef": {"name": "db"}, "prefix": "DATABASE_"},
                            {"secretRef": {"name": "oss"}, "prefix": "STORAGE_"}]
    c = pod_spec(make_app())["containers"][0]
    assert "env" not in c and "envFrom" not in c


# ------------------------------------------------------------------ Service, PDB, NetworkPolicy, ServiceAccount


def test_service():
    svc = r.service(make_app())
    assert svc["spec"] == {"type": "ClusterIP", "selector": r.selector_labels(make_app()),
                           "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]}
    assert "clusterIP" not in svc["spec"]


def test_service_account_has_no_token():
    assert r.service_account(make_app())["automountServiceAccountToken"] is False


def test_pdb_only_with_two_or_more_replicas():
    assert r.pod_disruption_budget(make_app()) is None
    assert r.pod_disruption_budget(make_app(replicas={"min": 0})) is None
    pdb = r.pod_disruption_budget(make_app(replicas={"min": 2}))
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert [o["kind"] for o in r.absent_objects(make_app())] == ["PodDisruptionBudget"]
    assert r.absent_objects(make_app(replicas={"min": 2})) == []


def test_network_policy_default_is_own_namespace_only():
    spec = r.network_policy(make_app())["spec"]
    assert spec["podSelector"] == {"matchLabels": r.selector_labels(make_app())}
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [{"from": [{"podSelector": {}}], "ports": [{"port": 8080, "protocol": "TCP"}]}]


def test_network_policy_other_namespaces():
    spec = r.network_policy(make_app(exposure={"allowedNamespaces": ["ingress-nginx"],
                                               "namespaceSelector": {"matchLabels": {"team": "a"}}}))["spec"]
    assert spec["ingress"][0]["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {"namespaceSelector": {"matchLabels": {"team": "a"}}},
    ]


def test_network_policy_with_no_peers_denies_everything():
    # An ingress rule without `from` would admit every source: there must be no rule at all.
    spec = r.network_policy(make_app(exposure={"allowSameNamespace": False}))["spec"]
    assert spec["ingress"] == [] and spec["policyTypes"] == ["Ingress"]


def test_url_and_selector_string():
    app = make_app()
    assert r.service_url(app) == "http://shop.team-a.svc.cluster.local:8080"
    assert r.selector_string(app) == "app.kubernetes.io/instance=shop,app.kubernetes.io/name=shop"


def test_spec_problems():
    assert r.spec_problems(make_app()) == []
    problems = r.spec_problems(make_app(probes={"readiness": {"httpGet": {"port": "metrics"}},
                                                "liveness": {"tcpSocket": {"port": 9090}}}))
    assert len(problems) == 2 and "metrics" in problems[0] and "9090" in problems[1]


# ------------------------------------------------------------------ compute_status


def conds(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def dep_status(replicas, ready=None, available=None, updated=None, observed=1, conditions=()):
    ready = replicas if ready is None else ready
    return {"observedGeneration": observed, "replicas": replicas, "readyReplicas": ready,
            "availableReplicas": ready if available is None else available,
            "updatedReplicas": replicas if updated is None else updated, "conditions": list(conditions)}


CASES = [
    ("creating", {}, None, [], {"Ready": ("False", "Creating"), "Progressing": ("True", "Creating"),
                                "Degraded": ("False", "AsExpected")}),
    ("available", {}, dep_status(1), [], {"Ready": ("True", "ReplicasAvailable"),
                                          "Progressing": ("False", "RolloutComplete"),
                                          "Degraded": ("False", "AsExpected")}),
    ("no pods ready", {}, dep_status(1, ready=0), [], {"Ready": ("False", "NoReplicasAvailable"),
                                                       "Progressing": ("True", "Scaling")}),
    ("rolling out", {"replicas": {"min": 3}}, dep_status(4, ready=3, updated=1), [],
     {"Ready": ("True", "ReplicasAvailable"), "Progressing": ("True", "RollingOut")}),
    ("scaling up", {"replicas": {"min": 1, "desired": 5}}, dep_status(2), [],
     {"Ready": ("True", "ReplicasAvailable"), "Progressing": ("True", "Scaling")}),
    ("scaling down", {"replicas": {"min": 1}}, dep_status(3), [],
     {"Ready": ("True", "ReplicasAvailable"), "Progressing": ("True", "Scaling")}),
    ("new template, no new pods yet", {}, dep_status(1, updated=0), [],
     {"Ready": ("True", "ReplicasAvailable"), "Progressing": ("True", "RollingOut")}),
    ("scaled to zero", {"replicas": {"min": 0, "desired": 0}}, dep_status(0), [],
     {"Ready": ("True", "ScaledToZero"), "Progressing": ("False", "RolloutComplete")}),
    ("problems", {}, dep_status(1), ["apply Service: forbidden"],
     {"Ready": ("False", "ReconcileFailed"), "Degraded": ("True", "ReconcileFailed")}),
    ("deadline", {}, dep_status(1, ready=0, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]), [],
     {"Ready": ("False", "NoReplicasAvailable"), "Progressing": ("False", "ProgressDeadlineExceeded"),
      "Degraded": ("True", "ProgressDeadlineExceeded")}),
    ("replica failure", {}, dep_status(0, conditions=[
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota"}]), [],
     {"Degraded": ("True", "ReplicaFailure")}),
]


@pytest.mark.parametrize(("spec", "dep", "problems", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compute_status_conditions(spec, dep, problems, expected):
    status = r.compute_status(make_app(generation=7, **spec), dep, problems, now=NOW)
    got = conds(status)
    for type_, value in expected.items():
        assert got[type_] == value, type_
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Progressing", "Degraded"]
    assert all(c["observedGeneration"] == 7 for c in status["conditions"])
    assert status["observedGeneration"] == 7


def test_compute_status_fields():
    status = r.compute_status(make_app(replicas={"min": 2, "max": 4, "desired": 3}), dep_status(3, ready=2), [],
                              now=NOW)
    assert (status["replicas"], status["readyReplicas"], status["desiredReplicas"]) == (3, 2, 3)
    assert status["selector"] == r.selector_string(make_app())
    assert status["url"].startswith("http://shop.team-a.svc")
    # the result is a valid status for the model (and hence the CRD)
    assert make_app(status=status).status.desired_replicas == 3


def test_stale_deployment_status_counts_as_rolling_out():
    status = r.compute_status(make_app(), dep_status(1, observed=1), [], now=NOW, deployment_generation=2)
    assert conds(status)["Progressing"] == ("True", "RollingOut")


def test_transition_time_kept_across_reconciles():
    first = r.compute_status(make_app(), dep_status(1), [], now=NOW)
    later = NOW + timedelta(minutes=10)
    second = r.compute_status(make_app(generation=2, status=first), dep_status(1), [], now=later)
    assert [c["lastTransitionTime"] for c in second["conditions"]] == ["2025-03-01T08:00:00Z"] * 3
    third = r.compute_status(make_app(generation=2, status=second), dep_status(1, ready=0), [], now=later)
    ready = next(c for c in third["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2025-03-01T08:10:00Z" and ready["status"] == "False"


# ------------------------------------------------------------------ managed database


def test_managed_database_secret_env_and_credentials_annotation():
    import base64

    app = make_app(bindings={"database": {"managed": True}})
    prepared = r.AppPrepared(database={"DSN": "postgresql://u:p@db:5432/d", "USER": "u"})
    objs = {o["kind"]: o for o in r.desired_objects(app, prepared)}
    secret = objs["Secret"]
    assert secret["metadata"]["name"] == "shop-mpcloud-database"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert base64.b64decode(secret["data"]["DSN"]).decode() == "postgresql://u:p@db:5432/d"
    dep = objs["Deployment"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "shop-mpcloud-database"}, "prefix": "DATABASE_"} in container["envFrom"]
    annotation = dep["spec"]["template"]["metadata"]["annotations"][r.DATABASE_CREDENTIALS_ANNOTATION]
    rotated = r.deployment(app, r.AppPrepared(database={"DSN": "postgresql://u:q@db:5432/d", "USER": "u"}))
    assert rotated["spec"]["template"]["metadata"]["annotations"][r.DATABASE_CREDENTIALS_ANNOTATION] != annotation
    assert "Secret" not in {o["kind"] for o in r.desired_objects(make_app())}


def test_managed_database_has_no_secret_reference_and_renders_offline():
    from mpcloud_operator.miniprogramapp import handlers

    app = make_app(bindings={"database": {"managed": True}})
    assert all(ref.kind != "Secret" for ref in handlers.references(app))
    assert set(handlers.offline(app).database) == {"DSN", "HOST", "PORT", "DATABASE", "USER", "PASSWORD", "SCHEMA"}
    assert handlers.offline(make_app()).database is None
