"""MiniProgramApp as a registered kind: its children, references, status, Events and the scaler hand-off.

Everything generic (watching, the reconcile sequence, status writes, failure reporting, retries) is in
`mpcloud_operator.reconcile`; this module only says what is particular to apps.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from prometheus_client import Gauge

from mpcloud_operator.miniprogramapp import database, resources
from mpcloud_operator.miniprogramapp.model import KIND, MiniProgramApp
from mpcloud_operator.miniprogramapp.scaler import claim_replicas
from mpcloud_operator.reconcile.references import env_references
from mpcloud_operator.reconcile.kind import ChildKind, Kind, KindHooks, Reference, StatusInput

DESIRED_REPLICAS = Gauge("mpcloud_desired_replicas", "Replicas mpcloud wants for an app.", ["namespace", "name"])
READY_REPLICAS = Gauge("mpcloud_ready_replicas", "Ready replicas of an app's Deployment.", ["namespace", "name"])


def deployment_view(dep: dict[str, Any]) -> dict[str, Any]:
    """The part of a Deployment the app's status is computed from (all the watch cache keeps of it)."""
    st = dep.get("status") or {}
    return {"generation": dep["metadata"].get("generation"), "replicas": (dep.get("spec") or {}).get("replicas"),
            "status": {**{k: st[k] for k in ("observedGeneration", "replicas", "readyReplicas", "availableReplicas",
                                             "updatedReplicas") if k in st},
                       "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                                      for c in st.get("conditions") or []]}}


CHILDREN = (
    ChildKind("ServiceAccount", "v1", "serviceaccounts"),
    ChildKind("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies"),
    ChildKind("Service", "v1", "services"),
    ChildKind("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets"),
    ChildKind("Deployment", "apps/v1", "deployments", status_view=deployment_view),
)


def references(app: MiniProgramApp) -> list[Reference]:
    spec = app.spec
    refs = env_references(spec.env, spec.env_from)
    for binding in (spec.bindings.database, spec.bindings.storage) if spec.bindings else ():
        if binding and binding.secret_ref:  # a managed database's Secret is the operator's own child
            refs.append(Reference("Secret", binding.secret_ref.name, binding.secret_ref.optional))
    if not spec.sandbox.unsandboxed:
        refs.append(Reference("RuntimeClass", spec.sandbox.runtime_class_name))
    return refs


def prepare(runtime: Any, app: MiniProgramApp) -> resources.AppPrepared:
    """The managed database provisioned (may refuse: Ready=False/BackingServiceUnavailable, retried)."""
    if not database.managed(app):
        return resources.NOTHING_PREPARED
    data = database.provision(runtime, app)
    HOOKS.remember(runtime, app)
    return resources.AppPrepared(database=data)


def offline(app: MiniProgramApp) -> resources.AppPrepared:
    return resources.AppPrepared(database=database.placeholders()) if database.managed(app) else resources.NOTHING_PREPARED


def status(app: MiniProgramApp, given: StatusInput) -> dict[str, Any]:
    dep = given.children.get("Deployment")
    new = resources.compute_status(app, dep["status"] if dep else None, given.problems, now=given.now,
                                   deployment_generation=dep["generation"] if dep else None,
                                   deployment_replicas=dep["replicas"] if dep else None)
    old_scale_time = given.old.get("lastScaleTime")
    if given.old.get("desiredReplicas") != new["desiredReplicas"]:
        new["lastScaleTime"] = _format(given.now)
    elif old_scale_time:
        new["lastScaleTime"] = old_scale_time  # shared with the scaler: keep sending it
    return new


def _format(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def events(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    if old.get("desiredReplicas") is not None and old.get("desiredReplicas") != new["desiredReplicas"]:
        return [("Scaled", f"replicas {old['desiredReplicas']} -> {new['desiredReplicas']}", "Normal")]
    return []


class AppHooks(KindHooks):
    def __init__(self) -> None:
        self.runtime: Any = None
        self._managed: set[tuple[str, str]] = set()  # apps with a managed database: their role goes with them
        self._lock = threading.Lock()

    def remember(self, runtime: Any, app: MiniProgramApp) -> None:
        with self._lock:
            self.runtime = runtime
            self._managed.add((app.metadata.namespace or "", app.metadata.name))

    def before_apply(self, runtime: Any, app: MiniProgramApp) -> None:
        if resources.scaler_owned(app):  # hand spec.replicas to the scaler before this apply stops sending it
            claim_replicas(runtime, app)

    def after_apply(self, runtime: Any, app: MiniProgramApp, live: dict[str, Any]) -> None:
        if live["kind"] == "Deployment" and resources.scaler_owned(app):  # a new one starts from the app's count
            claim_replicas(runtime, app, live)

    def record_metrics(self, app: MiniProgramApp, st: dict[str, Any]) -> None:
        DESIRED_REPLICAS.labels(app.metadata.namespace, app.metadata.name).set(st["desiredReplicas"])
        READY_REPLICAS.labels(app.metadata.namespace, app.metadata.name).set(st["readyReplicas"])

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            managed = (namespace, name) in self._managed
            self._managed.discard((namespace, name))
        if managed and self.runtime is not None:
            threading.Thread(target=database.drop, args=(self.runtime, namespace, name), name="mpa-db-drop",
                             daemon=True).start()
        for gauge in (DESIRED_REPLICAS, READY_REPLICAS):
            try:
                gauge.remove(namespace, name)
            except KeyError:
                pass


HOOKS = AppHooks()
OWN_CONDITIONS = ("Ready", "Progressing", "Degraded")
OWNED_STATUS_FIELDS = ("replicas", "readyReplicas", "desiredReplicas", "selector", "url", "lastScaleTime")


def _kind() -> Kind:
    from mpcloud_operator.api.crdgen import Scale, column

    return Kind(
        kind=KIND, plural="miniprogramapps", model=MiniProgramApp, children=CHILDREN,
        desired=resources.desired_objects, absent=resources.absent_objects, references=references,
        spec_problems=resources.spec_problems, prepare=prepare, offline=offline, status=status, events=events,
        hooks=HOOKS,
        conditions=OWN_CONDITIONS, owned_status_fields=OWNED_STATUS_FIELDS, loops=(scaling_loop,),
        short_names=("mpa",),
        printer_columns=(
            column("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"),
            column("Replicas", ".status.readyReplicas", "integer", "Ready replicas"),
            column("Desired", ".status.desiredReplicas", "integer", "Replicas the operator asked for"),
            column("Sandbox", ".spec.sandbox.runtimeClassName", description="RuntimeClass of the pods"),
            column("URL", ".status.url", description="In-cluster URL", priority=1),
            column("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1),
            column("Age", ".metadata.creationTimestamp", "date"),
        ),
        scale=Scale(spec_replicas_path=".spec.replicas.desired"),
    )


def scaling_loop(runtime: Any) -> Any:
    """The predictive/scheduled scaling tick for apps (leader only; off without a Prometheus URL)."""
    if not runtime.config.prometheus_url:
        return None
    from mpcloud_operator.scaling.loop import ScalingLoop

    return ScalingLoop(runtime, runtime.config.prometheus_url, namespaces=runtime.config.namespaces).start()


MINI_PROGRAM_APP = _kind()
