"""Desired state of a CloudFunction as pure functions: function model (+ prepared inputs) -> objects and status.

Per function `<name>` the operator applies, all labelled `mpcloud.io/function: <name>` and owned by it:

- ServiceAccount `cf-<name>` without an API token;
- ConfigMap `cf-<name>-source` holding the code of an inline or configMapRef source as checked (a copy of the
  referenced ConfigMap: an edit that does not pass the check never reaches a pod, not even a restarted one; an
  archive is fetched and verified by an init container);
- Secret `cf-<name>-bindings` with the function's own database role and S3 key (when it has bindings);
- NetworkPolicy: only the gateway (namespace mpcloud-system) reaches the instances;
- headless Service `cf-<name>` (port `http`): the gateway routes to its EndpointSlices, so no ClusterIP;
- Deployment `cf-<name>`: the language runtime image loading the code from /code, Pod Security "restricted",
  the sandbox RuntimeClass unless opted out. Its spec.replicas belongs to the function scaler
  (`mpcloud-scaler`, see `reconcile.replicas`), so scale-to-zero and the gateway's demand never fight an apply.

A code change changes the template's `mpcloud.io/code-hash` annotation: a rolling update (surge first) whose
end is visible in status.servingHash.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mpcloud_operator.api.conditions import set_condition
from mpcloud_operator.api.parts import RunAs, Sandbox
from mpcloud_operator.cloudfunction.model import API_VERSION, KIND, CloudFunction
from mpcloud_operator.reconcile import workload

MANAGER = "mpcloud"
FUNCTION_LABEL = "mpcloud.io/function"
APP_LABEL = "mpcloud.io/app"
CODE_HASH_ANNOTATION = "mpcloud.io/code-hash"
BINDINGS_ANNOTATION = "mpcloud.io/bindings"  # on the Deployment: the services provisioned for this spec
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
CONTAINER = "function"
FETCH_CONTAINER = "fetch-source"
SOURCE_LABEL = "mpcloud.io/source"  # "archive" on pods with the fetch init container (the operator watches those)
BUILD_MESSAGE_MAX = 1024
PORT = 8080
CODE_DIR = "/code"
BINDINGS_DIR = "/var/run/mpcloud/bindings"
GATEWAY_NAMESPACE = "mpcloud-system"
GATEWAY_POD_LABELS = {"app.kubernetes.io/name": "mpcloud-gateway"}
RUN_AS = RunAs()  # the runtime image's non-root user (10001)


@dataclass(frozen=True)
class Prepared:
    """What `handlers.prepare` read or provisioned for one reconcile (desired() stays pure around it)."""

    image: str
    code_hash: str
    files: dict[str, str] = field(default_factory=dict)  # inline or configMapRef source, as checked
    binding_env: dict[str, str] = field(default_factory=dict)  # bindings Secret data (empty: no Secret)
    bound: tuple[str, ...] = ()  # services provisioned for this spec: "database", "storage"
    unsandboxed_node_pool: str | None = None  # "key=value" (operator setting): where unsandboxed pods may run
    image_pull_policy: str = "IfNotPresent"


def children_name(name: str) -> str:
    """Children are `cf-<name>`: a function and an app of the same name can share a namespace."""
    return f"cf-{name}"


def child_name(fn: CloudFunction) -> str:
    return children_name(fn.metadata.name)


def selector_labels(fn: CloudFunction) -> dict[str, str]:
    return {FUNCTION_LABEL: fn.metadata.name}


def labels(fn: CloudFunction) -> dict[str, str]:
    return {**selector_labels(fn), APP_LABEL: fn.spec.app, MANAGED_BY_LABEL: MANAGER}


def pod_labels(fn: CloudFunction) -> dict[str, str]:
    """Pods that fetch an archive are labelled so: the operator watches only those (their init container's
    failure is the function's BuildFailed)."""
    extra = {SOURCE_LABEL: "archive"} if fn.spec.source.archive is not None else {}
    return {**labels(fn), **extra}


def owner_reference(fn: CloudFunction) -> dict[str, Any]:
    if not fn.metadata.uid:
        raise ValueError("the function has no metadata.uid: owner references need the stored object")
    return {"apiVersion": API_VERSION, "kind": KIND, "name": fn.metadata.name, "uid": fn.metadata.uid,
            "controller": True, "blockOwnerDeletion": True}


def _metadata(fn: CloudFunction, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": fn.metadata.namespace, "labels": labels(fn),
            "ownerReferences": [owner_reference(fn)]}


def source_hash(files: dict[str, str]) -> str:
    """SHA-256 over the files in name order (name and content, length-prefixed: no two sources collide)."""
    h = hashlib.sha256()
    for name in sorted(files):
        for part in (name.encode(), files[name].encode()):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


def function_url(fn: CloudFunction, gateway_url: str) -> str:
    return f"{gateway_url.rstrip('/')}/{fn.metadata.namespace}/{fn.metadata.name}"


def bindings_secret_name(fn: CloudFunction) -> str:
    return f"{child_name(fn)}-bindings"


# ------------------------------------------------------------------ objects


def service_account(fn: CloudFunction) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(fn, child_name(fn)),
            "automountServiceAccountToken": False}


def source_config_map(fn: CloudFunction, prepared: Prepared) -> dict[str, Any] | None:
    if fn.spec.source.archive is not None:
        return None
    meta = _metadata(fn, f"{child_name(fn)}-source")
    meta["annotations"] = {CODE_HASH_ANNOTATION: prepared.code_hash}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(prepared.files)}


def bindings_secret(fn: CloudFunction, prepared: Prepared) -> dict[str, Any] | None:
    if not prepared.binding_env:
        return None
    # `data`, not `stringData`: server-side apply removes a key this manager no longer sends (a binding removed)
    # only from fields it owns, and stringData is never stored.
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(fn, bindings_secret_name(fn)),
            "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode() for k, v in prepared.binding_env.items()}}


def network_policy(fn: CloudFunction) -> dict[str, Any]:
    """Instances are reached through the gateway only (functions are not services of the namespace)."""
    gateway = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": GATEWAY_NAMESPACE}},
               "podSelector": {"matchLabels": dict(GATEWAY_POD_LABELS)}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _metadata(fn, child_name(fn)),
            "spec": {"podSelector": {"matchLabels": selector_labels(fn)}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [gateway], "ports": [{"port": PORT, "protocol": "TCP"}]}]}}


def service(fn: CloudFunction) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(fn, child_name(fn)),
            "spec": {"clusterIP": "None", "selector": selector_labels(fn),
                     "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]}}


def host_command(fn: CloudFunction) -> list[str]:
    spec = fn.spec
    return ["python3", "-m", "mpcloud_operator.functions.host", "--runtime", spec.runtime, "--code-dir", CODE_DIR,
            "--handler", spec.handler, "--port", str(PORT), "--timeout", str(spec.timeout_seconds),
            "--concurrency", str(spec.scaling.concurrency)]


def _code_volume(fn: CloudFunction) -> dict[str, Any]:
    if fn.spec.source.archive is None:
        return {"name": "code", "configMap": {"name": f"{child_name(fn)}-source"}}
    return {"name": "code", "emptyDir": {"sizeLimit": "256Mi"}}


def _fetch_container(fn: CloudFunction, prepared: Prepared) -> dict[str, Any]:
    archive = fn.spec.source.archive
    assert archive is not None
    return {
        "name": FETCH_CONTAINER, "image": prepared.image, "imagePullPolicy": prepared.image_pull_policy,
        "command": ["python3", "-m", "mpcloud_operator.functions.fetch", "--url", archive.url,
                    "--sha256", archive.sha256, "--dest", CODE_DIR],
        "resources": workload.container_resources(fn.spec.resources),
        "securityContext": workload.restricted_container_security_context(),
        "volumeMounts": [{"name": "code", "mountPath": CODE_DIR}, workload.tmp_volume_mount()],
        # fetch.py writes one bounded line (a digest mismatch, a 404) to the termination-message file: what
        # status shows as BuildFailed. The log tail is the fallback for a crash that never got to write it.
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _container(fn: CloudFunction, prepared: Prepared) -> dict[str, Any]:
    spec = fn.spec
    env = [{"name": "MPCLOUD_FUNCTION", "value": f"{fn.metadata.namespace}/{fn.metadata.name}"},
           {"name": "MPCLOUD_CODE_HASH", "value": prepared.code_hash}, *workload.env(spec.env)]
    env_from = workload.env_from(spec.env_from)
    mounts = [{"name": "code", "mountPath": CODE_DIR, "readOnly": True}, workload.tmp_volume_mount()]
    if prepared.binding_env:
        # Credentials as files, not env (servicebinding.io's convention): kept out of the process environment,
        # so out of the user's workers, crash dumps and `kubectl describe`.
        env.append({"name": "MPCLOUD_BINDINGS_DIR", "value": BINDINGS_DIR})
        mounts.append({"name": "bindings", "mountPath": BINDINGS_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": CONTAINER, "image": prepared.image, "imagePullPolicy": prepared.image_pull_policy,
        "command": host_command(fn),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "resources": workload.container_resources(spec.resources),
        "securityContext": workload.restricted_container_security_context(),
        "volumeMounts": mounts,
        # Ready as soon as the code is loaded (a 1 s period is what makes 0 -> 1 fast); a source that does
        # not load keeps the instance unready with the interpreter's message, without restarts.
        "readinessProbe": {"httpGet": {"path": "/_/health", "port": "http"}, "periodSeconds": 1,
                           "timeoutSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 10, "periodSeconds": 10},
    }
    if env_from:
        container["envFrom"] = env_from
    return container


def confine(pod: dict[str, Any], sandbox: Sandbox, unsandboxed_node_pool: str | None) -> None:
    """Without the VM boundary, confine the pods to the nodes set aside for that (label + taint)."""
    if sandbox.unsandboxed and unsandboxed_node_pool:
        key, _, value = unsandboxed_node_pool.partition("=")
        pod["nodeSelector"] = {key: value}
        pod["tolerations"] = [{"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}]


def deployment(fn: CloudFunction, prepared: Prepared) -> dict[str, Any]:
    pod = workload.restricted_pod_spec(child_name(fn), [_container(fn, prepared)], fn.spec.sandbox, RUN_AS)
    pod["volumes"].append(_code_volume(fn))
    if prepared.binding_env:
        pod["volumes"].append({"name": "bindings", "secret": {"secretName": bindings_secret_name(fn),
                                                              "defaultMode": 0o440}})  # group = the pod's fsGroup
    if fn.spec.source.archive is not None:
        pod["initContainers"] = [_fetch_container(fn, prepared)]
    confine(pod, fn.spec.sandbox, prepared.unsandboxed_node_pool)
    # Let an invocation in flight finish before the instance stops (scale-in, rollout).
    pod["terminationGracePeriodSeconds"] = max(30, fn.spec.timeout_seconds + 5)
    meta = _metadata(fn, child_name(fn))
    if prepared.bound:  # what status.bindings reports once applied (a later spec without one revokes it)
        meta["annotations"] = {BINDINGS_ANNOTATION: ",".join(sorted(prepared.bound))}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            # no spec.replicas: the function scaler owns it (scale to zero, demand from the gateway)
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(fn)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": pod_labels(fn),
                                      "annotations": {CODE_HASH_ANNOTATION: prepared.code_hash}},
                         "spec": pod},
        },
    }


def desired_objects(fn: CloudFunction, prepared: Prepared) -> list[dict[str, Any]]:
    """In apply order: identity, code and credentials, fencing, then the pods."""
    objs = [service_account(fn), source_config_map(fn, prepared), bindings_secret(fn, prepared), network_policy(fn),
            service(fn), deployment(fn, prepared)]
    return [o for o in objs if o is not None]


def absent_objects(fn: CloudFunction, prepared: Prepared | None = None) -> list[dict[str, Any]]:
    """Children of an earlier spec that this one no longer has (the source became an archive; the last binding
    removed)."""
    out = []
    if fn.spec.source.archive is not None:
        out.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": f"{child_name(fn)}-source", "namespace": fn.metadata.namespace}})
    # The bindings Secret only when the last applied spec had bindings and this one has none (Secrets are not
    # watched: listing it always would cost a DELETE per reconcile of every unbound function).
    b = fn.spec.bindings
    if b.database is None and b.storage is None and fn.status is not None and fn.status.bindings:
        out.append({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": bindings_secret_name(fn), "namespace": fn.metadata.namespace}})
    return out


def spec_problems(fn: CloudFunction) -> list[str]:
    """What the CRD schema cannot check: cron expressions (croniter is the parser the scheduler uses)."""
    from croniter import croniter

    return [f"triggers.schedules[{s.name}].cron {s.cron!r} is not a valid cron expression"
            for s in fn.spec.triggers.schedules if not croniter.is_valid(s.cron)]


# ------------------------------------------------------------------ status


def deployment_view(dep: dict[str, Any]) -> dict[str, Any]:
    """The part of the function's Deployment its status is computed from (all the watch cache keeps)."""
    st = dep.get("status") or {}
    template = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
    bound = (dep["metadata"].get("annotations") or {}).get(BINDINGS_ANNOTATION) or ""
    return {"generation": dep["metadata"].get("generation"), "replicas": (dep.get("spec") or {}).get("replicas"),
            "hash": (template.get("annotations") or {}).get(CODE_HASH_ANNOTATION),
            "bindings": [b for b in bound.split(",") if b],
            "status": {k: st[k] for k in ("observedGeneration", "replicas", "readyReplicas", "availableReplicas",
                                          "updatedReplicas") if k in st}}


def pod_owner(pod: dict[str, Any]) -> str | None:
    """The function a pod belongs to (its label; pods are owned by a ReplicaSet, not the function)."""
    return ((pod.get("metadata") or {}).get("labels") or {}).get(FUNCTION_LABEL)


def pod_build_view(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The fetch init container's failure, for the code hash the pod was made for; None when it did not fail
    (still running for the first time, or succeeded)."""
    meta, st = pod.get("metadata") or {}, pod.get("status") or {}
    fetch = next((c for c in st.get("initContainerStatuses") or [] if c.get("name") == FETCH_CONTAINER), None)
    if fetch is None:
        return None
    state, last = fetch.get("state") or {}, fetch.get("lastState") or {}
    now = state.get("terminated")
    if now is not None and now.get("exitCode") == 0:
        return None  # fetched and verified
    failed = now if now is not None and now.get("exitCode") else last.get("terminated")
    if not failed or not failed.get("exitCode"):
        return None
    message = (failed.get("message") or "").strip() or f"{failed.get('reason') or 'Error'} (exit code {failed['exitCode']})"
    lines = [line for line in message.splitlines() if line.strip()]
    return {"hash": (meta.get("annotations") or {}).get(CODE_HASH_ANNOTATION), "pod": meta.get("name"),
            "message": (lines[-1] if lines else message)[:BUILD_MESSAGE_MAX],
            "restarts": int(fetch.get("restartCount") or 0)}


def build_failure(code_hash: str | None, pods: list[dict[str, Any]] | None) -> str | None:
    """Why the current code cannot start, from the pods made for it (older pods' failures do not count)."""
    failed = [p for p in pods or () if p.get("hash") and p["hash"] == code_hash]
    if not failed:
        return None
    worst = max(failed, key=lambda p: p.get("restarts", 0))
    return f"fetching spec.source.archive failed: {worst['message']}"[:BUILD_MESSAGE_MAX]


def sandbox_text(fn: CloudFunction) -> str:
    sandbox = fn.spec.sandbox
    return "unsandboxed (opt-out)" if sandbox.unsandboxed else sandbox.runtime_class_name


def compute_status(fn: CloudFunction, dep: dict[str, Any] | None, old: dict[str, Any], problems: list[str],
                   now: datetime, gateway_url: str, pods: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The reconciler's part of `.status` (the scaler writes invocations, cold starts and its reason).

    Ready=True while the function can answer: instances serve (Serving), or none run by design and the gateway
    starts one on the next request (ScaledToZero / Activating). The code a rollout replaces keeps serving, so
    servingHash moves to codeHash only when every instance runs the new template. An archive that cannot be
    fetched or verified for the current code (`pods`: views of pod_build_view) is Ready=False/BuildFailed while
    the instances of the previous code keep serving."""
    gen = fn.metadata.generation
    st = (dep or {}).get("status") or {}
    replicas, ready = int(st.get("replicas") or 0), int(st.get("readyReplicas") or 0)
    available, updated = int(st.get("availableReplicas") or 0), int(st.get("updatedReplicas") or 0)
    desired = dep.get("replicas") if dep else None
    code_hash = (dep or {}).get("hash") or old.get("codeHash")
    serving_hash, serving_generation = old.get("servingHash"), old.get("servingGeneration")
    rolled_out = dep is not None and int(st.get("observedGeneration") or 0) >= int(dep.get("generation") or 0) \
        and updated == replicas and available > 0  # an instance loaded this code and passed its health check
    if rolled_out and dep.get("hash"):
        if serving_hash != dep["hash"]:
            serving_generation = gen
        serving_hash = dep["hash"]
    short = (serving_hash or "")[:12]
    build = None if rolled_out and serving_hash == code_hash else build_failure(code_hash, pods)
    if problems:
        ready_c = ("False", "ReconcileFailed", "; ".join(problems))
    elif build:
        ready_c = ("False", "BuildFailed", build + (f"; {available} instance(s) keep serving {short}"
                                                    if available and serving_hash else ""))
    elif dep is None:
        ready_c = ("False", "Deploying", "waiting for the Deployment")
    elif available > 0:
        ready_c = ("True", "Serving", f"{available} instance(s) serving {short}"
                   + ("" if serving_hash == code_hash else f"; rolling out {(code_hash or '')[:12]}"))
    elif serving_hash is None:
        ready_c = ("False", "Deploying", "waiting for the first instance to load the code")
    elif desired == 0:
        ready_c = ("True", "ScaledToZero", "no instances; the gateway starts one on the next request")
    else:
        ready_c = ("True", "Activating", f"starting an instance for {short}")
    degraded = ("True", "ReconcileFailed", "; ".join(problems)) if problems else \
        ("True", "BuildFailed", ready_c[2]) if ready_c[1] == "BuildFailed" else ("False", "AsExpected", "")
    conditions = [c.model_dump(mode="json", by_alias=True, exclude_none=True)
                  for c in (fn.status.conditions if fn.status else [])]
    for type_, (status, reason, message) in (("Ready", ready_c), ("Degraded", degraded)):
        conditions = set_condition(conditions, type_, status, reason, message, gen, now)
    out: dict[str, Any] = {"conditions": conditions, "instances": ready, "url": function_url(fn, gateway_url),
                           "sandbox": sandbox_text(fn)}
    # What the last applied Deployment says was provisioned (before any Deployment: what status said).
    bindings = dep.get("bindings", old.get("bindings")) if dep is not None else old.get("bindings")
    for key, value in (("bindings", bindings or None), ("codeHash", code_hash), ("servingHash", serving_hash),
                       ("servingGeneration", serving_generation), ("desiredInstances", desired),
                       ("observedGeneration", gen)):
        if value is not None:
            out[key] = value
    return out
