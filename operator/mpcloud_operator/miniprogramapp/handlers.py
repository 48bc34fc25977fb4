"""kopf glue for MiniProgramApp: thin, level-triggered, idempotent.

reconcile(app) = validate → check references → server-side apply the desired children → write status
only if it changed. It runs on create/update/resume of the app and whenever one of its children is
changed or deleted by someone else (children are watched by the `managed-by: mpcloud` label). Children's
status-only changes (a Deployment's pods becoming ready) refresh the app's status without re-applying.

Errors never crash the operator: an invalid spec is reported (condition + Event) and not retried;
a missing Secret/ConfigMap/RuntimeClass is reported and retried with exponential backoff by kopf, while
the previously applied Deployment keeps running untouched.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from mpcloud_operator import metrics
from mpcloud_operator.config import GROUP, VERSION
from mpcloud_operator.kube import apply as kube
from mpcloud_operator.kube.client import api_client
from mpcloud_operator.kube import tracking
from mpcloud_operator.kube.conditions import get_condition, set_condition
from mpcloud_operator.miniprogramapp import resources
from mpcloud_operator.miniprogramapp.model import MiniProgramApp
from mpcloud_operator.scaling.loop import claim_replicas

KIND = "MiniProgramApp"
PLURAL = "miniprogramapps"
MANAGED = {resources.MANAGED_BY_LABEL: resources.MANAGER}
OWN_CONDITIONS = ("Ready", "Progressing", "Degraded")
OWNED_STATUS_FIELDS = ("replicas", "readyReplicas", "desiredReplicas", "selector", "url", "lastScaleTime")
log = logging.getLogger("mpcloud.miniprogramapp")


class ReferenceProblem(Exception):
    """Something the app points at does not exist (yet): report, keep the old Deployment, retry."""

    def __init__(self, reason: str, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.reason, self.problems = reason, problems


# ------------------------------------------------------------------ reference checks


def _exists(kind: str, namespace: str, name: str) -> bool:
    return kube.get(api_client(), kind, namespace, name) is not None


_RUNTIME_CLASS_TTL = 30.0
_runtime_classes: dict[str, float] = {}  # name -> when it was last seen to exist


def _runtime_class_exists(name: str) -> bool:
    # RuntimeClasses are few and change rarely: a positive answer is reused for 30 s (one GET per class,
    # not one per reconcile); a missing class is re-checked every time, so installing it is noticed at once.
    if time.monotonic() - _runtime_classes.get(name, -_RUNTIME_CLASS_TTL) < _RUNTIME_CLASS_TTL:
        return True
    if kube.get_cluster_scoped(api_client(), "/apis/node.k8s.io/v1/runtimeclasses", name) is None:
        return False
    _runtime_classes[name] = time.monotonic()
    return True


def check_references(app: MiniProgramApp) -> None:
    """Raise ReferenceProblem naming every missing, non-optional Secret, ConfigMap or RuntimeClass."""
    ns, spec = app.metadata.namespace, app.spec
    wanted: dict[tuple[str, str], bool] = {}  # (kind, name) -> optional
    for env in spec.env:
        src = env.value_from
        if src and src.secret_key_ref:
            wanted[("Secret", src.secret_key_ref.name)] = src.secret_key_ref.optional
        if src and src.config_map_key_ref:
            wanted[("ConfigMap", src.config_map_key_ref.name)] = src.config_map_key_ref.optional
    for ef in spec.env_from:
        ref, kind = (ef.secret_ref, "Secret") if ef.secret_ref else (ef.config_map_ref, "ConfigMap")
        wanted[(kind, ref.name)] = ref.optional and wanted.get((kind, ref.name), True)
    for binding in (spec.bindings.database, spec.bindings.storage) if spec.bindings else ():
        if binding:
            wanted[("Secret", binding.secret_ref.name)] = binding.secret_ref.optional
    missing = [f"{kind} {name!r} not found in namespace {ns}" for (kind, name), optional in sorted(wanted.items())
               if not optional and not _exists(kind, ns, name)]
    if missing:
        raise ReferenceProblem("ReferenceNotFound", missing)
    if not spec.sandbox.unsandboxed and not _runtime_class_exists(spec.sandbox.runtime_class_name):
        raise ReferenceProblem("RuntimeClassNotFound",
                               [f"RuntimeClass {spec.sandbox.runtime_class_name!r} is not installed on the cluster"])


# ------------------------------------------------------------------ reconcile

def reconcile(body: dict[str, Any], retry: int = 0) -> None:
    """Bring the app's children and status in line with its spec. Safe to repeat at any point."""
    started = time.monotonic()
    result = "ok"
    try:
        _reconcile(body, retry)
    except kopf.TemporaryError:
        result = "retry"
        raise
    except kopf.PermanentError:
        result = "invalid"
        raise
    except Exception:
        result = "error"
        metrics.RECONCILE_ERRORS.labels(KIND, "exception").inc()
        raise
    finally:
        metrics.RECONCILE_TOTAL.labels(KIND, result).inc()
        metrics.RECONCILE_DURATION.labels(KIND).observe(time.monotonic() - started)


def _reconcile(body: dict[str, Any], retry: int) -> None:
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return  # the garbage collector removes the children
    try:
        app = MiniProgramApp.from_body(body)
    except ValidationError as exc:
        # The CRD schema and CEL rules reject most bad specs at apply time; this catches the rest
        # (e.g. objects stored before a stricter schema). Retrying cannot fix it: report and stop.
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())[:2000]
        _write_failure(body, "InvalidSpec", message)
        metrics.RECONCILE_ERRORS.labels(KIND, "InvalidSpec").inc()
        raise kopf.PermanentError(f"invalid spec: {message}") from exc

    api = api_client()
    try:
        check_references(app)
    except ReferenceProblem as problem:
        _write_failure(body, problem.reason, str(problem))
        metrics.RECONCILE_ERRORS.labels(KIND, problem.reason).inc()
        raise kopf.TemporaryError(str(problem), delay=min(300, 5 * 2 ** min(retry, 6))) from problem

    problems = resources.spec_problems(app)
    deployment: dict[str, Any] | None = None
    applied: list[str] = []
    if resources.scaler_owned(app):  # hand spec.replicas to the scaler before this apply stops sending it
        claim_replicas(api, app)
    for obj in resources.desired_objects(app):
        try:
            live = kube.apply(api, obj)
        except ApiException as exc:
            if exc.status in (400, 403, 409, 422):  # the API server refused this object: say which and why
                problems.append(f"{obj['kind']} {obj['metadata']['name']}: {kube.error_message(exc)}")
                continue
            raise
        tracking.record(live)
        applied.append(obj["kind"])
        if obj["kind"] == "Deployment":
            deployment = live
            if resources.scaler_owned(app):  # a new Deployment starts from the app's own count
                claim_replicas(api, app, live)
    new_app = not (body.get("status") or {}).get("observedGeneration")
    # A brand-new app has never had e.g. a PDB: skip the (404) DELETE; later reconciles remove leftovers.
    for stub in () if new_app else resources.absent_objects(app):
        if kube.delete(api, stub["kind"], stub["metadata"]["namespace"], stub["metadata"]["name"]):
            tracking.forget(tracking.key(stub))
    if new_app:
        kube.post_event(api, body, "Created", f"created {', '.join(applied)}")
    log.info("app %s/%s applied (generation %s)", meta["namespace"], meta["name"], meta.get("generation"))
    write_status(app, body, deployment, problems)
    if problems:
        metrics.RECONCILE_ERRORS.labels(KIND, "ApplyFailed").inc()
        raise kopf.TemporaryError("; ".join(problems), delay=min(300, 5 * 2 ** min(retry, 6)))


# Per Deployment, the part of it the app's status was last computed from: watch events that repeat it
# (the echo of our own apply, resyncs) need no GET of the app and no status write.
_status_inputs: dict[tuple[str, str, str], tuple] = {}


def _status_input(deployment: dict[str, Any]) -> tuple:
    st = deployment.get("status") or {}
    conds = tuple(sorted((c.get("type"), c.get("status"), c.get("reason")) for c in st.get("conditions") or []))
    return (deployment["metadata"].get("generation"), deployment.get("spec", {}).get("replicas"),
            st.get("observedGeneration"), st.get("replicas"), st.get("readyReplicas"), st.get("availableReplicas"),
            st.get("updatedReplicas"), conds)


def write_status(app: MiniProgramApp, body: dict[str, Any], deployment: dict[str, Any] | None,
                 problems: list[str]) -> None:
    """Compute the status from the Deployment and patch it only when something changed."""
    if deployment is not None:
        _status_inputs[tracking.key(deployment)] = _status_input(deployment)
    old = dict(body.get("status") or {})
    dep_status = deployment.get("status", {}) if deployment else None
    dep_gen = deployment["metadata"].get("generation") if deployment else None
    dep_replicas = deployment.get("spec", {}).get("replicas") if deployment else None
    new = resources.compute_status(app, dep_status, problems, deployment_generation=dep_gen,
                                   deployment_replicas=dep_replicas)
    if old.get("desiredReplicas") != new["desiredReplicas"]:
        new["lastScaleTime"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif old.get("lastScaleTime"):
        new["lastScaleTime"] = old["lastScaleTime"]  # shared with the scaler: keep sending it
    # Only the condition types this reconciler owns (the scaler owns ScalingDegraded): see apply_status.
    new["conditions"] = [c for c in new["conditions"] if c["type"] in OWN_CONDITIONS]
    _record_metrics(app, new)
    if all(old.get(k) == v for k, v in new.items() if k != "conditions") and \
            all(get_condition(old.get("conditions"), c["type"]) == c for c in new["conditions"]):
        return
    kube.apply_status(api_client(), body, new)
    _post_transition_events(body, old, new)


def _write_failure(body: dict[str, Any], reason: str, message: str) -> None:
    """Ready=False and Degraded=True with `reason`, plus a Warning Event when it is news."""
    meta = body["metadata"]
    old = dict(body.get("status") or {})
    now = datetime.now(timezone.utc)
    mine = [c for c in old.get("conditions") or [] if c["type"] in OWN_CONDITIONS]
    conditions = set_condition(mine, "Ready", "False", reason, message, meta.get("generation"), now)
    conditions = set_condition(conditions, "Degraded", "True", reason, message, meta.get("generation"), now)
    if conditions != mine:
        # Every status field this manager owns goes along (what an apply omits, it removes).
        kept = {k: old[k] for k in OWNED_STATUS_FIELDS if k in old}
        kube.apply_status(api_client(), body, {**kept, "conditions": conditions,
                                               "observedGeneration": meta.get("generation")})
        kube.post_event(api_client(), body, reason, message, "Warning")
    metrics.APP_READY.set_ready(meta["namespace"], meta["name"], "False")


def _post_transition_events(body: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> None:
    api = api_client()
    if old.get("desiredReplicas") is not None and old.get("desiredReplicas") != new["desiredReplicas"]:
        kube.post_event(api, body, "Scaled", f"replicas {old['desiredReplicas']} -> {new['desiredReplicas']}")
    before = (get_condition(old.get("conditions"), "Degraded") or {}).get("status")
    after = get_condition(new["conditions"], "Degraded") or {}
    if after.get("status") == "True" and before != "True":
        kube.post_event(api, body, after.get("reason", "Degraded"), after.get("message", ""), "Warning")
    before = get_condition(old.get("conditions"), "Ready") or {}
    ready = get_condition(new["conditions"], "Ready") or {}
    # A new app's first Ready is covered by its Created event; say Ready when it recovers.
    if ready.get("status") == "True" and before.get("status") == "False" and before.get("reason") != "Creating":
        kube.post_event(api, body, "Ready", ready.get("message", ""))


def _record_metrics(app: MiniProgramApp, status: dict[str, Any]) -> None:
    ns, name = app.metadata.namespace, app.metadata.name
    metrics.DESIRED_REPLICAS.labels(ns, name).set(status["desiredReplicas"])
    metrics.ACTUAL_REPLICAS.labels(ns, name).set(status["readyReplicas"])
    ready = get_condition(status["conditions"], "Ready") or {}
    metrics.APP_READY.set_ready(ns, name, ready.get("status", "Unknown"))


# ------------------------------------------------------------------ kopf registrations


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile_app(body: kopf.Body, retry: int, **_: Any) -> None:
    reconcile(_plain(body), retry)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget_deleted_app(namespace: str, name: str, **_: Any) -> None:
    # optional=True: no finalizer, deletion never waits for the operator; the GC removes the children.
    metrics.forget_app(namespace, name)


def _child_event(type_: str | None, body: kopf.Body) -> None:
    obj = _plain(body)
    owner = next((r for r in obj["metadata"].get("ownerReferences", [])
                  if r.get("kind") == KIND and r.get("controller")), None)
    if owner is None:
        return
    key = tracking.key(obj)
    drifted = tracking.is_drift(type_, obj)
    if type_ == "DELETED":
        _status_inputs.pop(key, None)
    if not drifted and (obj["kind"] != "Deployment" or _status_inputs.get(key) == _status_input(obj)):
        return
    app_body = kube.get(api_client(), KIND, key[1], owner["name"])
    if app_body is None or app_body["metadata"].get("uid") != owner.get("uid"):
        return  # the app is gone: the garbage collector takes the child
    try:
        if drifted:
            log.info("%s %s/%s changed outside mpcloud (%s): re-applying", key[0], key[1], key[2], type_)
            reconcile(app_body)
        else:  # only the Deployment's status moved: refresh the app's status
            write_status(MiniProgramApp.from_body(app_body), app_body, obj, [])
    except (kopf.TemporaryError, kopf.PermanentError, ValidationError) as exc:
        log.warning("app %s/%s: %s", key[1], owner["name"], exc)


def _register_child_watch(group: str, version: str, plural: str) -> None:
    @kopf.on.event(group=group, version=version, plural=plural, labels=MANAGED, id=f"child-{plural}")
    def _on_child(type: str | None, body: kopf.Body, **_: Any) -> None:  # noqa: A002
        _child_event(type, body)


for _group, _version, _plural in (("apps", "v1", "deployments"), ("", "v1", "services"),
                                  ("", "v1", "serviceaccounts"), ("policy", "v1", "poddisruptionbudgets"),
                                  ("networking.k8s.io", "v1", "networkpolicies")):
    _register_child_watch(_group, _version, _plural)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "items"):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
