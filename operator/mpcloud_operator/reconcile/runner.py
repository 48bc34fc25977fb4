"""The generic reconcile of one custom resource, the same for every kind (level-triggered, idempotent).

    parse → references → apply desired children → delete absent ones → status if changed → Events → metrics

Safe to repeat at any point (after a crash, twice in a row): applies are server-side applies of the full
desired state, deletes tolerate 404, and status is written only when it differs from what is stored. The
result says whether and when to try again; the controller's queue does the waiting.

- Invalid spec (what the CRD schema could not reject): Ready=False/InvalidSpec + a Warning Event, no retry.
- Missing reference: Ready=False/<reason> + a Warning Event, retried with backoff; children untouched.
- A child the API server refuses (400/403/409/422): the other children are still applied, the status names
  the refused one (Degraded=True/ReconcileFailed), retried with backoff.
- Anything else (API down, timeouts): retried with backoff; the error is logged and counted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mpcloud_operator import metrics
from mpcloud_operator.api.conditions import get_condition, set_condition
from mpcloud_operator.kube import tracking
from mpcloud_operator.kube.client import ApiException, error_message
from mpcloud_operator.reconcile import observed, references
from mpcloud_operator.reconcile.kind import Kind, NotObservable, StatusInput
from mpcloud_operator.reconcile.queue import FULL
from mpcloud_operator.runtime import Runtime

log = logging.getLogger("mpcloud.reconcile")
REFUSED = (400, 403, 409, 422)
PRE_APPLY_FAILURES = ("InvalidSpec", "ReferenceNotFound", "RuntimeClassNotFound", "InvalidSource",
                      "BackingServiceUnavailable")  # the API server refused the object itself: retrying as is will not help soon


@dataclass(frozen=True)
class Result:
    outcome: str  # ok | invalid | retry | wait | error | gone
    retry: bool = False
    message: str = ""
    after: float | None = None  # reconcile again after this many seconds (a deadline, or inputs not observable)


WAIT_SECONDS = 1.0


def reconcile(runtime: Runtime, kind: Kind, namespace: str, name: str, need: int = FULL) -> Result:
    """Reconcile one object from the watch cache; metrics for every outcome."""
    started = time.monotonic()
    try:
        result = _reconcile(runtime, kind, namespace, name, need)
    except Exception as exc:  # noqa: BLE001 - one object's failure must never stop the operator
        log.warning("%s %s/%s: reconcile failed: %s", kind.kind, namespace, name, exc)
        metrics.RECONCILE_ERRORS.labels(kind.kind, "exception").inc()
        result = Result("error", retry=True, message=str(exc))
    metrics.RECONCILE_TOTAL.labels(kind.kind, result.outcome).inc()
    metrics.RECONCILE_DURATION.labels(kind.kind).observe(time.monotonic() - started)
    return result


def _reconcile(runtime: Runtime, kind: Kind, namespace: str, name: str, need: int) -> Result:
    body = runtime.primaries.get((kind.kind, namespace, name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Result("gone")  # the garbage collector removes the children
    meta = body["metadata"]
    try:
        obj = kind.model.from_body(body)
    except ValidationError as exc:
        # The CRD schema and CEL rules reject most bad specs at apply time; this catches the rest
        # (e.g. objects stored before a stricter schema). Retrying cannot fix it: report and stop.
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())[:2000]
        write_failure(runtime, kind, body, "InvalidSpec", message)
        metrics.RECONCILE_ERRORS.labels(kind.kind, "InvalidSpec").inc()
        return Result("invalid", message=message)

    if need < FULL:  # only a child's status moved: refresh the status from the watch cache
        write_status(runtime, kind, obj, body, [])
        return Result("ok")

    prepared = None
    refs = kind.references(obj)
    runtime.references.record((kind.kind, namespace, name), namespace, refs)  # a change re-reconciles us
    try:
        references.check(runtime, namespace, refs)
        if kind.prepare is not None:  # kind-specific inputs of desired(): may refuse like a missing reference
            prepared = kind.prepare(runtime, obj)
    except references.ReferenceProblem as problem:
        write_failure(runtime, kind, body, problem.reason, str(problem))
        metrics.RECONCILE_ERRORS.labels(kind.kind, problem.reason).inc()
        return Result("retry", retry=True, message=str(problem))
    except NotObservable as exc:
        return Result("wait", message=str(exc), after=WAIT_SECONDS)

    problems = list(kind.spec_problems(obj))
    created: list[str] = []
    if kind.hooks:
        kind.hooks.before_apply(runtime, obj)
    for desired in (kind.desired(obj) if kind.prepare is None else kind.desired(obj, prepared)):
        d_meta = desired["metadata"]
        existed = runtime.child_exists(desired["kind"], d_meta["namespace"], d_meta["name"])
        try:
            live = runtime.kube.apply(desired)
        except ApiException as exc:
            if exc.status in REFUSED:  # say which object and why; the others are still applied
                problems.append(f"{desired['kind']} {d_meta['name']}: {error_message(exc)}")
                continue
            raise
        remember_child(runtime, kind, live)
        if existed is False or (existed is None and _never_applied(kind, body)):
            created.append(desired["kind"])
        if kind.hooks:
            kind.hooks.after_apply(runtime, obj, live)
    for stub in (kind.absent(obj) if kind.prepare is None else kind.absent(obj, prepared)):
        s_meta = stub["metadata"]
        exists = runtime.child_exists(stub["kind"], s_meta["namespace"], s_meta["name"])
        if exists is False or (exists is None and _never_applied(kind, body)):
            continue  # nothing to delete (known from the watch cache, or the object never had children)
        if runtime.kube.delete(stub["kind"], s_meta["namespace"], s_meta["name"]):
            k = (stub["kind"], s_meta["namespace"], s_meta["name"])
            runtime.tracker.forget(k)
            runtime.child_views.pop(k, None)
    if created:
        runtime.kube.post_event(body, "Created", f"created {', '.join(created)}")
    log.info("%s %s/%s applied (generation %s)", kind.kind, namespace, name, meta.get("generation"))
    write_status(runtime, kind, obj, body, problems, prepared)
    if problems:
        metrics.RECONCILE_ERRORS.labels(kind.kind, "ApplyFailed").inc()
        return Result("retry", retry=True, message="; ".join(problems))
    return Result("ok", after=kind.requeue_after(obj, prepared) if kind.requeue_after else None)


def _never_applied(kind: Kind, body: dict[str, Any]) -> bool:
    """Without a watch cache to ask (before it synced): has this object never had its children applied?
    No status yet, or only a failure from before any apply. A guess: the cache answers when it can."""
    st = body.get("status") or {}
    ready = get_condition(st.get("conditions"), kind.primary_condition) or {}
    return not st.get("observedGeneration") or ready.get("reason") in PRE_APPLY_FAILURES


def remember_child(runtime: Runtime, kind: Kind, live: dict[str, Any]) -> None:
    """Our write's result: not drift when its watch event arrives; its status view for the owner's status."""
    runtime.tracker.record(live)
    child = kind.child(live["kind"])
    if child is not None and child.status_view is not None:
        runtime.child_views[tracking.key(live)] = child.status_view(live)


def _status_children(runtime: Runtime, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
    child = kind.child_name(name)
    return {c.kind: runtime.child_views.get((c.kind, namespace, child)) for c in kind.children
            if c.status_view is not None}


def write_status(runtime: Runtime, kind: Kind, obj: Any, body: dict[str, Any], problems: list[str],
                 prepared: Any = None) -> None:
    """Compute the status (pure, from the watch cache) and server-side apply it only when it changed."""
    meta = body["metadata"]
    old = dict(body.get("status") or {})
    inputs = StatusInput(old=old, children=_status_children(runtime, kind, meta["namespace"], meta["name"]),
                         problems=problems, now=runtime.now(), config=runtime.config, prepared=prepared,
                         observed=observed.views_for(runtime, kind, meta["namespace"], meta["name"]))
    new = kind.status(obj, inputs)
    # Only the condition types this reconciler owns (others, e.g. the scaler's, belong to other writers).
    new["conditions"] = [c for c in new.get("conditions", []) if c["type"] in kind.conditions]
    if kind.hooks:
        kind.hooks.record_metrics(obj, new)
    ready = get_condition(new["conditions"], kind.primary_condition) or {}
    metrics.READY.set_ready(kind.kind, meta["namespace"], meta["name"], ready.get("status", "Unknown"))
    if all(old.get(k) == v for k, v in new.items() if k != "conditions") and \
            all(get_condition(old.get("conditions"), c["type"]) == c for c in new["conditions"]):
        return
    _apply_status(runtime, body, new)
    for reason, message, type_ in [*kind.events(old, new), *transition_events(old, new)]:
        runtime.kube.post_event(body, reason, message, type_)


def _apply_status(runtime: Runtime, body: dict[str, Any], status: dict[str, Any]) -> None:
    live = runtime.kube.apply_status(body, status)
    if live.get("metadata"):  # keep the cache at least as new as our own write
        runtime.primaries.put((body["kind"], body["metadata"]["namespace"], body["metadata"]["name"]), live)


def transition_events(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Warning when Degraded turns True; Normal `Ready` when Ready recovers (a new object's first Ready is
    covered by its Created event)."""
    out = []
    before = (get_condition(old.get("conditions"), "Degraded") or {}).get("status")
    after = get_condition(new.get("conditions"), "Degraded") or {}
    if after.get("status") == "True" and before != "True":
        out.append((after.get("reason", "Degraded"), after.get("message", ""), "Warning"))
    before_ready = get_condition(old.get("conditions"), "Ready") or {}
    ready = get_condition(new.get("conditions"), "Ready") or {}
    if ready.get("status") == "True" and before_ready.get("status") == "False" and \
            before_ready.get("reason") not in ("Creating", "Deploying", None):
        out.append(("Ready", ready.get("message", ""), "Normal"))
    return out


def write_failure(runtime: Runtime, kind: Kind, body: dict[str, Any], reason: str, message: str) -> None:
    """Ready=False (the kind's primary condition: Succeeded for runs) and Degraded=True with `reason`, plus a
    Warning Event when it is news."""
    meta = body["metadata"]
    old = dict(body.get("status") or {})
    now = runtime.now()
    mine = [c for c in old.get("conditions") or [] if c["type"] in kind.conditions]
    conditions = set_condition(mine, kind.primary_condition, "False", reason, message, meta.get("generation"), now)
    if "Degraded" in kind.conditions:
        conditions = set_condition(conditions, "Degraded", "True", reason, message, meta.get("generation"), now)
    metrics.READY.set_ready(kind.kind, meta["namespace"], meta["name"], "False")
    if conditions == mine:
        return
    # Every status field this manager owns goes along (what an apply omits, it removes).
    kept = {k: old[k] for k in kind.owned_status_fields if k in old}
    _apply_status(runtime, body, {**kept, "conditions": conditions, "observedGeneration": meta.get("generation")})
    runtime.kube.post_event(body, reason, message, "Warning")
