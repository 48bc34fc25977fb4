"""Desired state of a MiniProgramApp as pure functions: app model -> Kubernetes objects and status.

Every builder returns a plain dict ready for server-side apply with field manager "mpcloud": only
the fields the operator owns (no status, resourceVersion or server-set defaults), labelled and
owned (controller ownerReference) by the app, so garbage collection removes them with it.

Field ownership: in reactive mode mpcloud owns the Deployment's `spec.replicas`. The replica count
flows `kubectl scale` / HPA / KEDA -> MiniProgramApp scale subresource (spec.replicas.desired) ->
clamped to [min, max] here -> Deployment. Nothing else may scale the Deployment directly: the next
apply (force=True) takes the field back. In predictive and scheduled modes the mpcloud scaling loop
owns it instead (field manager `mpcloud-scaler`, through the Deployment's scale subresource): the
Deployment is applied without spec.replicas, exactly as under an HPA, and status.desiredReplicas is
what the scaler last set.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mpcloud_operator.api.conditions import set_condition
from mpcloud_operator.api.parts import Probe
from mpcloud_operator.miniprogramapp import database
from mpcloud_operator.miniprogramapp.model import API_VERSION, KIND, MiniProgramApp
from mpcloud_operator.reconcile import workload

MANAGER = "mpcloud"
CONTAINER = "app"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
DATABASE_CREDENTIALS_ANNOTATION = "mpcloud.io/database-credentials"


# ------------------------------------------------------------------ metadata


def selector_labels(app: MiniProgramApp) -> dict[str, str]:
    """Pod selector of the app (immutable on the Deployment: never change it)."""
    return {NAME_LABEL: app.metadata.name, INSTANCE_LABEL: app.metadata.name}


def labels(app: MiniProgramApp) -> dict[str, str]:
    """Labels on every object the operator creates for the app."""
    return {**selector_labels(app), MANAGED_BY_LABEL: MANAGER}


def selector_string(app: MiniProgramApp) -> str:
    """status.selector: the scale subresource's labelSelectorPath wants a string."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(app).items()))


def owner_reference(app: MiniProgramApp) -> dict[str, Any]:
    if not app.metadata.uid:
        raise ValueError("the app has no metadata.uid: owner references need the stored object")
    return {"apiVersion": API_VERSION, "kind": KIND, "name": app.metadata.name, "uid": app.metadata.uid,
            "controller": True, "blockOwnerDeletion": True}


@dataclass(frozen=True)
class AppPrepared:
    """What `handlers.prepare` provisioned for one reconcile (desired() stays pure around it)."""

    database: dict[str, str] | None = None  # the managed database Secret's data (None: not managed)


NOTHING_PREPARED = AppPrepared()


def _metadata(app: MiniProgramApp, name: str | None = None) -> dict[str, Any]:
    return {"name": name or app.metadata.name, "namespace": app.metadata.namespace, "labels": labels(app),
            "ownerReferences": [owner_reference(app)]}


def service_url(app: MiniProgramApp, cluster_domain: str = "cluster.local") -> str:
    """In-cluster URL of the app's Service (first port)."""
    port = app.spec.ports[0].container_port
    return f"http://{app.metadata.name}.{app.metadata.namespace}.svc.{cluster_domain}:{port}"


# ------------------------------------------------------------------ objects


def service_account(app: MiniProgramApp) -> dict[str, Any]:
    """A ServiceAccount of its own, without an API token: the app has no business with the API."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(app),
            "automountServiceAccountToken": False}


def scaler_owned(app: MiniProgramApp) -> bool:
    """True when the mpcloud scaling loop, not this apply, sets the Deployment's replicas."""
    return app.spec.scaling.mode in ("predictive", "scheduled")


def desired_replicas(app: MiniProgramApp, deployment_replicas: int | None = None) -> int:
    """Replicas the app should run. In predictive/scheduled mode: what the scaler set on the Deployment
    (the truth; a status read earlier may be stale), else its last status.desiredReplicas."""
    if scaler_owned(app):
        if deployment_replicas is not None:
            return deployment_replicas
        if app.status is not None and app.status.desired_replicas is not None:
            return app.spec.replicas.clamp(app.status.desired_replicas)
    return app.spec.replicas.effective


def deployment(app: MiniProgramApp, prepared: AppPrepared = NOTHING_PREPARED) -> dict[str, Any]:
    """The app's Deployment: Pod Security "restricted", sandboxed by the RuntimeClass."""
    spec = app.spec
    pod = workload.restricted_pod_spec(app.metadata.name, [_container(app)], spec.sandbox, spec.run_as)
    template_meta: dict[str, Any] = {"labels": labels(app)}
    if prepared.database:
        # Env from a Secret is read at container start: a changed credential (binding key rotated) rolls the pods.
        digest = hashlib.sha256(json.dumps(prepared.database, sort_keys=True).encode()).hexdigest()[:16]
        template_meta["annotations"] = {DATABASE_CREDENTIALS_ANNOTATION: digest}
    out = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(app),
        "spec": {
            "replicas": spec.replicas.effective,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(app)},
            # Surge first: capacity never drops during a rollout (scale-from-load is the point).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {"metadata": template_meta, "spec": pod},
        },
    }
    if scaler_owned(app):
        del out["spec"]["replicas"]  # owned by the scaling loop (mpcloud-scaler), like under an HPA
    return out


def _container(app: MiniProgramApp) -> dict[str, Any]:
    spec = app.spec
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_policy.pull_policy_for(spec.image),
        "ports": [{"name": p.name, "containerPort": p.container_port, "protocol": p.protocol} for p in spec.ports],
        "resources": workload.container_resources(spec.resources),
        "securityContext": workload.restricted_container_security_context(),
        "volumeMounts": [workload.tmp_volume_mount()],
    }
    env = workload.env(spec.env)
    if env:
        container["env"] = env
    env_from = workload.env_from(spec.env_from, spec.bindings, {"database": database.secret_name(app.metadata.name)})
    if env_from:
        container["envFrom"] = env_from
    if spec.probes.enabled:
        default_port = spec.ports[0].name
        container["readinessProbe"] = workload.probe(spec.probes.readiness or Probe(period_seconds=5), default_port)
        container["livenessProbe"] = workload.probe(spec.probes.liveness or Probe(initial_delay_seconds=10),
                                                    default_port)
    return container


def service(app: MiniProgramApp) -> dict[str, Any]:
    """ClusterIP Service on the app's ports (clusterIP is left to the API server)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(app),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(app),
            "ports": [{"name": p.name, "port": p.container_port, "targetPort": p.name, "protocol": p.protocol}
                      for p in app.spec.ports],
        },
    }


def pod_disruption_budget(app: MiniProgramApp) -> dict[str, Any] | None:
    """maxUnavailable 1 when the app keeps at least 2 replicas; None (no PDB) otherwise, since a PDB
    on a single replica would block node drains forever."""
    if app.spec.replicas.min < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(app),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(app)},
            # Crash-looping pods must not block drains.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def network_policy(app: MiniProgramApp) -> dict[str, Any]:
    """Deny all ingress to the app's pods except its own ports from the allowed namespaces."""
    exposure = app.spec.exposure
    peers: list[dict[str, Any]] = []
    if exposure.allow_same_namespace:
        peers.append({"podSelector": {}})  # every pod of the policy's own namespace
    for ns in exposure.allowed_namespaces:
        peers.append({"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: ns}}})
    if exposure.namespace_selector and exposure.namespace_selector.match_labels:
        peers.append({"namespaceSelector": {"matchLabels": dict(exposure.namespace_selector.match_labels)}})
    ports = [{"port": p.container_port, "protocol": p.protocol} for p in app.spec.ports]
    # A rule without `from` admits everyone: with no peers, emit no rule at all (deny all).
    ingress = [{"from": peers, "ports": ports}] if peers else []
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(app),
        "spec": {"podSelector": {"matchLabels": selector_labels(app)}, "policyTypes": ["Ingress"],
                 "ingress": ingress},
    }


def database_secret(app: MiniProgramApp, prepared: AppPrepared) -> dict[str, Any] | None:
    if not prepared.database:
        return None
    meta = _metadata(app, database.secret_name(app.metadata.name))
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in prepared.database.items()}}


def desired_objects(app: MiniProgramApp, prepared: AppPrepared = NOTHING_PREPARED) -> list[dict[str, Any]]:
    """All objects of the app in apply order: identity, credentials and network fencing before the pods."""
    objs = [service_account(app), database_secret(app, prepared), network_policy(app), service(app),
            pod_disruption_budget(app), deployment(app, prepared)]
    return [o for o in objs if o is not None]


def absent_objects(app: MiniProgramApp, prepared: AppPrepared = NOTHING_PREPARED) -> list[dict[str, Any]]:
    """Objects the app must *not* have now (delete if present), as apiVersion/kind/metadata stubs. (The managed
    database Secret is not listed: Secrets are not watched, so checking would cost a DELETE per reconcile of
    every app; one left by `managed` switched off goes with the app.)"""
    out = []
    if pod_disruption_budget(app) is None:
        out.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": app.metadata.name, "namespace": app.metadata.namespace}})
    return out


def spec_problems(app: MiniProgramApp) -> list[str]:
    """Mistakes the CRD cannot reject but that would break the pods (pass them to compute_status)."""
    problems = []
    names = {p.name for p in app.spec.ports}
    numbers = {p.container_port for p in app.spec.ports}
    for which in ("readiness", "liveness"):
        probe: Probe | None = getattr(app.spec.probes, which)
        action = probe and (probe.http_get or probe.tcp_socket)
        port = action.port if action else None
        if isinstance(port, str) and port not in names:
            problems.append(f"probes.{which} port {port!r} is not a name in spec.ports")
        elif isinstance(port, int) and port not in numbers:
            problems.append(f"probes.{which} port {port} is not a containerPort in spec.ports")
    return problems


# ------------------------------------------------------------------ status


def compute_status(
    app: MiniProgramApp,
    deployment_status: dict[str, Any] | None,
    problems: list[str],
    now: datetime | None = None,
    deployment_generation: int | None = None,
    deployment_replicas: int | None = None,
) -> dict[str, Any]:
    """The operator-owned part of `.status` (camelCase dict, for a status patch/apply).

    deployment_status is the Deployment's `.status` (None when it does not exist yet);
    deployment_generation its `.metadata.generation`, to tell a stale status from a finished
    rollout; deployment_replicas its `.spec.replicas` (used in predictive/scheduled mode). problems are reconcile errors (failed applies, spec_problems). Conditions:
    - Ready: the app serves (at least one available replica, or scaled to zero on purpose) and
      the current spec was applied without problems.
    - Progressing: a rollout or scaling is under way.
    - Degraded: problems, a failed rollout (ProgressDeadlineExceeded) or ReplicaFailure.
    """
    now = now or datetime.now(timezone.utc)
    gen = app.metadata.generation
    desired = desired_replicas(app, deployment_replicas)
    dep = deployment_status or {}
    replicas = int(dep.get("replicas") or 0)
    ready = int(dep.get("readyReplicas") or 0)
    available = int(dep.get("availableReplicas") or 0)
    updated = int(dep.get("updatedReplicas") or 0)
    dep_conditions = {c.get("type"): c for c in dep.get("conditions") or []}
    stale = deployment_generation is not None and int(dep.get("observedGeneration") or 0) < deployment_generation
    deadline = dep_conditions.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded"
    replica_failure = dep_conditions.get("ReplicaFailure", {})
    replica_failed = replica_failure.get("status") == "True"

    # Degraded
    if problems:
        degraded = ("True", "ReconcileFailed", "; ".join(problems))
    elif deadline:
        degraded = ("True", "ProgressDeadlineExceeded", dep_conditions["Progressing"].get("message", ""))
    elif replica_failed:
        degraded = ("True", "ReplicaFailure", replica_failure.get("message", ""))
    else:
        degraded = ("False", "AsExpected", "")

    # Progressing
    if deployment_status is None:
        progressing = ("True", "Creating", "waiting for the Deployment")
    elif deadline:
        progressing = ("False", "ProgressDeadlineExceeded", "the rollout made no progress")
    elif stale or updated < replicas:  # pods of an older template still run
        progressing = ("True", "RollingOut", f"{updated}/{desired} replicas updated")
    elif replicas != desired or available < desired:
        progressing = ("True", "Scaling", f"{available}/{desired} replicas available")
    else:
        progressing = ("False", "RolloutComplete", f"{available}/{desired} replicas available")

    # Ready
    if problems:
        ready_c = ("False", "ReconcileFailed", "; ".join(problems))
    elif deployment_status is None:
        ready_c = ("False", "Creating", "waiting for the Deployment")
    elif desired == 0 and replicas == 0:
        ready_c = ("True", "ScaledToZero", "no replicas requested")
    elif available == 0:
        ready_c = ("False", "NoReplicasAvailable", f"0/{desired} replicas available")
    else:
        ready_c = ("True", "ReplicasAvailable", f"{available}/{desired} replicas available")

    conditions = [c.model_dump(mode="json", by_alias=True, exclude_none=True)
                  for c in (app.status.conditions if app.status else [])]
    for type_, (status, reason, message) in (("Ready", ready_c), ("Progressing", progressing),
                                             ("Degraded", degraded)):
        conditions = set_condition(conditions, type_, status, reason, message, gen, now)
    out: dict[str, Any] = {
        "conditions": conditions,
        "replicas": replicas,
        "readyReplicas": ready,
        "desiredReplicas": desired,
        "selector": selector_string(app),
        "url": service_url(app),
    }
    if gen is not None:
        out["observedGeneration"] = gen
    return out
