"""Runs the built-in deploy and canary tasks of a PipelineRun inside its reconcile (thin: the logic is
pipeline/deploy.py's; this reads the watch caches, writes through the API server, asks Prometheus).

- targets are read from the watch cache of their kind (a GET when not there), in the run's namespace only;
- the change is a JSON merge patch as field manager `mpcloud-pipeline` — the API server's admission (a
  RiskPolicy freeze window) may refuse it, and its message becomes the task's failure message;
- the canary Deployment is a child of the run (desired while the task wants replicas, absent otherwise);
- a measurement is one instant query against the analysis' Prometheus (or MPCLOUD_PROMETHEUS_URL).

Security: a run can change the apps and functions of its own namespace only, so whoever may create PipelineRuns
in a namespace may deploy there — grant it like a deploy right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mpcloud_operator.api.schema import to_json
from mpcloud_operator.api.types import DNS_SUBDOMAIN
from mpcloud_operator.config import DEPLOY_FIELD_MANAGER
from mpcloud_operator.kube.client import ApiException, error_message
from mpcloud_operator.pipeline import deploy, resources
from mpcloud_operator.pipeline.deploy_model import Analysis, CanaryTask, DeployTask
from mpcloud_operator.pipeline.model import PipelineRun, PipelineTask
from mpcloud_operator.pipeline.validate import substitute
from mpcloud_operator.reconcile.kind import NotObservable

REFUSED = (400, 403, 404, 409, 422)
APP, FUNCTION = "MiniProgramApp", "CloudFunction"
QUERY_TIMEOUT = 10.0


@dataclass
class Progress:
    """One built-in task after one look."""

    status: dict[str, Any]  # {"deploy": {...}} or {"canary": {...}} for the task's record
    outcome: tuple[str, str, str] | None = None  # (state, reason, message) once finished
    wake: float | None = None
    desired: list[dict[str, Any]] = field(default_factory=list)  # the canary Deployment, while it should run
    canary: str | None = None  # the canary Deployment's name (absent unless desired)


def substituted(task: PipelineTask, values: dict[str, str]) -> DeployTask | CanaryTask:
    """The task's built-in with pipeline-level references replaced (inline file contents are left as written)."""
    model = task.deploy or task.canary
    assert model is not None

    def walk(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, str):
            return substitute(value, values)
        if isinstance(value, dict):
            return {k: v if path[-1:] == ("inline",) and k == "files" else walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path) for v in value]
        return value

    return type(model).model_validate(walk(to_json(model), ()))


class ClusterEffects:
    """deploy.Effects on the API server and Prometheus."""

    def __init__(self, runtime: Any, namespace: str) -> None:
        self.runtime, self.namespace = runtime, namespace

    def set_target(self, target: deploy.Target, change: Any) -> tuple[int | None, str]:
        if target.kind == APP:
            body: dict[str, Any] = {"spec": {"image": change}}
        else:
            source = to_json(change)
            body = {"spec": {"source": {"inline": source.get("inline"), "configMapRef": source.get("configMapRef"),
                                        "archive": None}}}
        try:
            live = self.runtime.kube.patch(target.kind, self.namespace, target.name, body, DEPLOY_FIELD_MANAGER)
        except ApiException as exc:
            if exc.status in REFUSED:
                return None, error_message(exc)
            raise  # the API unreachable: the reconcile is retried, nothing was recorded
        self.runtime.primaries.put((target.kind, self.namespace, target.name), live)
        return live["metadata"].get("generation"), ""

    def measure(self, analysis: Analysis) -> tuple[float | None, str]:
        from mpcloud_operator.scaling.promapi import PromClient, PromError

        url = analysis.address or self.runtime.config.prometheus_url
        if not url:
            return None, "no Prometheus: set the analysis' address, or MPCLOUD_PROMETHEUS_URL on the operator"
        if not re.match(r"^https?://[^\s]+$", url):
            return None, f"address {url[:100]!r} is not an http(s) URL"
        try:
            return PromClient(url, timeout=QUERY_TIMEOUT).instant(analysis.query), ""
        except PromError as exc:
            return None, str(exc)[:400]


def _target(runtime: Any, kind: str, namespace: str, name: str) -> tuple[deploy.Target, dict[str, Any] | None]:
    if not re.fullmatch(DNS_SUBDOMAIN, name) or len(name) > 253:
        return deploy.Target(kind, name, exists=False), None
    body = runtime.primaries.get((kind, namespace, name))
    if body is None:  # not in the watch cache (e.g. a namespace the operator does not watch): ask once
        body = runtime.kube.get(kind, namespace, name)
    replicas = 1
    if body is not None and kind == APP:
        from mpcloud_operator.miniprogramapp import resources as app_resources
        from mpcloud_operator.miniprogramapp.model import MiniProgramApp

        view = runtime.child_views.get(("Deployment", namespace, name)) or {}
        try:
            replicas = app_resources.desired_replicas(MiniProgramApp.from_body(body), view.get("replicas"))
        except ValueError:
            replicas = 1
    return deploy.Target.of(kind, name, body, replicas), body


def run(runtime: Any, pr: PipelineRun, task: PipelineTask, values: dict[str, str], record: dict[str, Any] | None,
        started: datetime, now: datetime, timeout: float | None) -> Progress:
    """Advance one running built-in task; `record` is its status of this attempt (None when it starts now)."""
    ns = pr.metadata.namespace or ""
    spec = substituted(task, values)
    effects = ClusterEffects(runtime, ns)
    if isinstance(spec, DeployTask):
        kind, name = (APP, spec.app) if spec.app is not None else (FUNCTION, spec.function or "")
        target, _ = _target(runtime, kind, ns, name)
        change = spec.image if kind == APP else spec.source
        step = deploy.advance_deploy((record or {}).get("deploy"), target, change, started, now, timeout, effects)
        return Progress({"deploy": step.status}, step.outcome, step.wake)
    return _canary(runtime, pr, task, spec, record, started, now, timeout, effects)


def _canary(runtime: Any, pr: PipelineRun, task: PipelineTask, spec: CanaryTask, record: dict[str, Any] | None,
            started: datetime, now: datetime, timeout: float | None, effects: ClusterEffects) -> Progress:
    from mpcloud_operator.miniprogramapp.model import MiniProgramApp

    ns = pr.metadata.namespace or ""
    app, body = _target(runtime, APP, ns, spec.app)
    name = resources.canary_name(spec.app)
    view = runtime.child_views.get(("Deployment", ns, name))
    exists = runtime.child_exists("Deployment", ns, name)
    if exists is None:
        raise NotObservable("the Deployment watch has not synced yet")
    if exists and (view is None or view.get("owner") != pr.metadata.uid):
        return Progress({"canary": (record or {}).get("canary") or {}}, (
            deploy.FAILED, "CanaryConflict",
            f"Deployment {name} exists and is not this run's canary (another run's canary of {spec.app}?)"))

    def ready(n: int) -> bool:
        return bool(view and view.get("owner") == pr.metadata.uid and view.get("replicas") == n
                    and (view.get("observedGeneration") or 0) >= (view.get("generation") or 0)
                    and view.get("readyReplicas", 0) >= n and view.get("updatedReplicas", 0) >= n)

    step = deploy.advance_canary((record or {}).get("canary"), spec, app, ready, started, now, timeout, effects)
    progress = Progress({"canary": {**step.status, "deployment": name}}, step.outcome, step.wake, canary=name)
    if step.canary_replicas > 0 and body is not None:
        try:
            canary_app = MiniProgramApp.model_validate({**body, "spec": {**body["spec"], "image": spec.image},
                                                        "status": None})
        except ValueError as exc:
            progress.status["canary"].update(phase="RolledBack", replicas=0)
            progress.outcome = (deploy.FAILED, "InvalidImage", f"image {spec.image!r} for {app.ref}: {exc}"[:1000])
            return progress
        progress.desired = [resources.canary_deployment(pr, task.name, canary_app, step.canary_replicas)]
    return progress


def stopped(record: dict[str, Any] | None) -> Progress:
    """A built-in task the run stops (cancelled, past a deadline): a canary is removed, its stable kept."""
    canary = dict((record or {}).get("canary") or {})
    if canary:
        canary.update(phase="RolledBack", replicas=0)
        return Progress({"canary": canary}, canary=canary.get("deployment"))
    return Progress({k: v for k, v in (record or {}).items() if k == "deploy"})
