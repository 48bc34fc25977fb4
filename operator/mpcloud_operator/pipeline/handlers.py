"""Pipeline and PipelineRun as registered kinds: what the generic reconcile needs from them.

A Pipeline has no children: its status says whether it is valid beyond the schema (cycles, references).

A PipelineRun's reconcile is level-triggered and recomputes the run from what exists each time:

    prepare:  resolve the pipeline (once: status.pipelineSpec keeps it), check the run, observe every attempt
              (its Job in the watch cache; the run's status for Jobs that are gone; the pod, once, for results and
              the failing step's message), and ask the pure DAG (`dag.plan`) what to do;
    desired:  the Jobs of the attempts starting now (+ the PVCs of claim-template workspaces);
    absent:   the running Jobs the plan stops (cancellation, deadlines);
    status:   one Succeeded condition, per-task states, results (pure, from the plan);
    requeue:  at the next deadline.

A finished Job wakes its run at once (`status_drives_apply`). Job names are deterministic, so an operator killed
at any point and restarted neither duplicates an attempt nor loses one. A finished run is never touched again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from mpcloud_operator.api.conditions import format_time, get_condition, set_condition
from mpcloud_operator.api.schema import to_json
from mpcloud_operator.pipeline import dag, executor, resources, validate
from mpcloud_operator.pipeline.model import (
    PIPELINE_KIND,
    RUN_KIND,
    Pipeline,
    PipelineRun,
    PipelineSpec,
    seconds,
)
from mpcloud_operator.pipeline.trigger_loop import pipeline_triggers
from mpcloud_operator.reconcile.kind import ChildKind, Kind, NotObservable, Reference, StatusInput

CHILDREN = (
    ChildKind("Job", "batch/v1", "jobs", status_view=resources.job_view, status_drives_apply=True),
    ChildKind("PersistentVolumeClaim", "v1", "persistentvolumeclaims"),
    # A canary task's canary Deployment: its pods becoming ready ends a weight step.
    ChildKind("Deployment", "apps/v1", "deployments", status_view=resources.canary_view, status_drives_apply=True),
)
SUCCEEDED = "Succeeded"
RUN_STATUS_FIELDS = ("startTime", "completionTime", "tasks", "results", "pipelineSpec", "sandbox")


# ------------------------------------------------------------------ Pipeline


def pipeline_status(pl: Pipeline, given: StatusInput) -> dict[str, Any]:
    found = validate.problems(pl.spec)
    old = given.old.get("conditions") or []
    if found:
        cond = ("False", validate.INVALID, "; ".join(found)[:4000])
    else:
        cond = ("True", "Valid", f"{len(pl.spec.tasks)} tasks, {len(pl.spec.finally_)} finally")
    gen = pl.metadata.generation
    return {"conditions": set_condition(old, "Ready", *cond, gen, given.now), "observedGeneration": gen}


def pipeline_events(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    before = get_condition(old.get("conditions"), "Ready") or {}
    after = get_condition(new.get("conditions"), "Ready") or {}
    if after.get("status") == "False" and (before.get("status"), before.get("message")) != ("False", after["message"]):
        return [(after["reason"], after["message"], "Warning")]
    return []


# ------------------------------------------------------------------ PipelineRun: observing


@dataclass
class Prepared:
    """One reconcile's view of a run (desired, absent and status read it; they stay pure)."""

    finished: bool = False  # the run was already done: nothing to do, status as it is
    failure: tuple[str, str] | None = None  # (reason, message): the run cannot start
    spec: PipelineSpec | None = None
    plan: dag.Plan | None = None
    start: datetime | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    stops: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    job_names: dict[str, str] = field(default_factory=dict)  # task -> Job of its latest attempt
    job_created: dict[str, str] = field(default_factory=dict)  # Job -> creationTimestamp
    builtin: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> its deploy/canary status now
    deployments: list[dict[str, Any]] = field(default_factory=list)  # canary Deployments that should run
    canaries_absent: list[dict[str, Any]] = field(default_factory=list)  # this run's canaries that should not
    builtin_wake: float | None = None  # seconds until a built-in task wants another look


def _done(status: dict[str, Any]) -> bool:
    return (get_condition(status.get("conditions"), SUCCEEDED) or {}).get("status") in ("True", "False")


def _resolve(runtime: Any, run: PipelineRun, old: dict[str, Any]) -> PipelineSpec | tuple[str, str]:
    """The spec the run executes: the one it started with, else embedded, else the referenced Pipeline."""
    try:
        if old.get("pipelineSpec"):
            return PipelineSpec.model_validate(old["pipelineSpec"])
        if run.spec.pipeline_spec is not None:
            return run.spec.pipeline_spec
        assert run.spec.pipeline_ref is not None
        ns, name = run.metadata.namespace, run.spec.pipeline_ref.name
        body = runtime.primaries.get((PIPELINE_KIND, ns, name)) or runtime.kube.get(PIPELINE_KIND, ns, name)
        if body is None:
            return "PipelineNotFound", f'Pipeline "{name}" not found in namespace {ns}'
        return PipelineSpec.model_validate(body["spec"])
    except ValidationError as exc:
        return validate.INVALID, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())[:4000]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _pod_outcome(runtime: Any, namespace: str, job: str) -> tuple[dict[str, str], str]:
    pods = runtime.kube.list("Pod", namespace, query=[("labelSelector", f"batch.kubernetes.io/job-name={job}")])
    items = sorted(pods.get("items") or [], key=lambda p: p["metadata"].get("creationTimestamp") or "")
    return resources.pod_outcome(items[-1]) if items else ({}, "")


def _attempt(runtime: Any, run: PipelineRun, view: dict[str, Any], name: str, number: int,
             record: dict[str, Any] | None, now: datetime) -> dag.Attempt:
    """One attempt from its Job's view; the pod is read once, when the Job has finished and status lacks it."""
    start = _time(record.get("startTime")) if record else None
    start = start or _time(view.get("created"))
    finished = view.get("finished")
    if finished is None:
        if view.get("deleting") and record and record.get("status") in (dag.CANCELLED, dag.TIMED_OUT):
            return dag.Attempt(number, record["status"], name, record.get("reason", ""), record.get("message", ""),
                               start, _time(record.get("completionTime")))
        return dag.Attempt(number, dag.RUNNING, name, start=start)
    finish = _time(view.get("completionTime")) or _time(record.get("completionTime") if record else None)
    ok = finished["type"] == "Complete"
    state = dag.SUCCEEDED if ok else dag.TIMED_OUT if finished.get("reason") == "DeadlineExceeded" else dag.FAILED
    if record and record.get("status") == state:  # already read: the status has it
        return dag.Attempt(number, state, name, record.get("reason", ""), record.get("message", ""), start,
                           finish or _time(record.get("completionTime")),
                           {r["name"]: r["value"] for r in record.get("results") or []})
    results, message = _pod_outcome(runtime, run.metadata.namespace or "", name)
    if not ok and not message:
        message = finished.get("message") or finished.get("reason", "")
    reason = "" if ok else ("TaskTimeout" if state == dag.TIMED_OUT else "Failed")
    return dag.Attempt(number, state, name, reason, message[:4000], start, finish or now,
                       results if ok else {})


def _observe(runtime: Any, run: PipelineRun, spec: PipelineSpec, old: dict[str, Any],
             prepared: Prepared) -> dict[str, dag.Observed]:
    ns, uid = run.metadata.namespace, run.metadata.uid
    records = {t["name"]: t for t in old.get("tasks") or []}
    watch = runtime.child_watches.get("Job")
    if watch is not None and watch.has(ns, "") is None:
        raise NotObservable("the Job watch has not synced yet")
    out: dict[str, dag.Observed] = {}
    for task in (*spec.tasks, *spec.finally_):
        record = records.get(task.name)
        if record and record.get("status") == dag.SKIPPED:
            out[task.name] = dag.Observed(skipped=(record.get("reason", ""), record.get("message", "")))
            continue
        if task.builtin is not None:  # run by the operator: its latest attempt is what the status recorded
            out[task.name] = dag.Observed(_builtin_attempt(record))
            continue
        attempts = []
        for number in range(1, task.retries + 2):
            name = resources.job_name(run.metadata.name, task.name, number)
            rec = record if record and record.get("attempt") == number else None
            view = runtime.child_views.get(("Job", ns, name))
            if view is not None and view.get("owner") != uid:
                raise NotObservable(f"Job {name} belongs to an earlier run of the same name (being deleted)")
            if view is not None:
                attempts.append(_attempt(runtime, run, view, name, number, rec, runtime.now()))
                prepared.job_created[name] = view.get("created") or ""
            elif rec and rec.get("status") in (dag.SUCCEEDED, dag.FAILED, dag.TIMED_OUT, dag.CANCELLED):
                attempts.append(dag.Attempt(number, rec["status"], name, rec.get("reason", ""), rec.get("message", ""),
                                            _time(rec.get("startTime")), _time(rec.get("completionTime")),
                                            {r["name"]: r["value"] for r in rec.get("results") or []}))
            elif rec and rec.get("status") == dag.RUNNING:  # it ran, and its Job is gone without finishing
                state = dag.CANCELLED if run.spec.status else dag.FAILED
                attempts.append(dag.Attempt(number, state, name, "JobDeleted",
                                            "the Job was deleted before it finished", _time(rec.get("startTime"))))
        out[task.name] = dag.Observed(tuple(attempts))
    return out


def _builtin_attempt(record: dict[str, Any] | None) -> tuple[dag.Attempt, ...]:
    if not record or not record.get("attempt") or record.get("status") not in (*dag.RAN, dag.RUNNING):
        return ()
    state = record["status"]
    return (dag.Attempt(record["attempt"], state, "", record.get("reason", "") if state != dag.RUNNING else "",
                        record.get("message", "") if state != dag.RUNNING else "", _time(record.get("startTime")),
                        _time(record.get("completionTime")) if state != dag.RUNNING else None),)


def _run_builtins(runtime: Any, run: PipelineRun, spec: PipelineSpec, old: dict[str, Any],
                  observed: dict[str, dag.Observed], plan_of: Any, prepared: Prepared) -> dag.Plan:
    """Advance every running built-in task; one that finishes is planned again at once (what comes after it
    starts in this reconcile). Each built-in runs at most once per attempt per reconcile."""
    records = {t["name"]: t for t in old.get("tasks") or []}
    now = runtime.now()
    done: set[tuple[str, int]] = set()
    canaries: set[str] = {r["canary"]["deployment"] for r in records.values() if (r.get("canary") or {}).get("deployment")}
    desired: dict[str, dict[str, Any]] = {}
    wakes: list[float] = []
    plan = plan_of(observed)
    for _ in range(len(spec.tasks) + len(spec.finally_) + 1):
        finished = False
        starting = {(s.task, s.attempt) for s in plan.start}
        stopping = {s.task for s in plan.stop}
        for st in plan.tasks:
            task = spec.task(st.name)
            if task is None or task.builtin is None or st.attempt is None or (st.name, st.attempt.number) in done:
                continue
            number = st.attempt.number
            rec = records.get(st.name)
            rec = rec if rec and rec.get("attempt") == number and (st.name, number) not in starting else None
            if st.name in stopping:
                progress = executor.stopped(rec)
            elif st.status == dag.RUNNING:
                start = _time((rec or {}).get("startTime")) or now
                values = plan.finally_values if st.is_finally else plan.values
                progress = executor.run(runtime, run, task, values, rec, start, now, seconds(task.timeout))
                attempt = dag.Attempt(number, dag.RUNNING, "", start=start)
                if progress.outcome is not None:
                    state, reason, message = progress.outcome
                    attempt = dag.Attempt(number, state, "", reason, message[:4000], start, now)
                    finished = True
                observed[st.name] = dag.Observed((attempt,))
            else:
                continue
            done.add((st.name, number))
            prepared.builtin[st.name] = progress.status
            if progress.canary:
                canaries.add(progress.canary)
            for d in progress.desired:  # a retry's canary replaces the failed attempt's plan for the same name
                desired[d["metadata"]["name"]] = d
            if not progress.desired and progress.canary:
                desired.pop(progress.canary, None)
            if progress.wake is not None:
                wakes.append(progress.wake)
        if not finished:
            break
        plan = plan_of(observed)
    prepared.deployments = list(desired.values())
    ns = run.metadata.namespace
    prepared.canaries_absent = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns}}
        for name in sorted(canaries - set(desired))
        if (runtime.child_views.get(("Deployment", ns, name)) or {}).get("owner") == run.metadata.uid]
    prepared.builtin_wake = min(wakes) if wakes else None
    return plan


def context(run: PipelineRun) -> dict[str, str]:
    return {"context.pipelineRun.name": run.metadata.name, "context.pipelineRun.namespace": run.metadata.namespace or "",
            "context.pipelineRun.uid": run.metadata.uid or "",
            "context.pipeline.name": run.spec.pipeline_ref.name if run.spec.pipeline_ref else run.metadata.name}


def prepare(runtime: Any, run: PipelineRun) -> Prepared:
    old = to_json(run.status) if run.status else {}
    if _done(old):
        return Prepared(finished=True)
    now = runtime.now()
    start = _time(old.get("startTime")) or now
    resolved = _resolve(runtime, run, old)
    if isinstance(resolved, tuple):
        return Prepared(failure=resolved, start=start)
    spec = resolved
    given = {p.name: p.value for p in run.spec.params}
    found = validate.run_problems(spec, given, run.spec.workspaces)
    if found:
        reason = found[0][0]
        return Prepared(failure=(reason, "; ".join(m for r, m in found if r == reason)[:4000]), spec=spec, start=start)
    prepared = Prepared(spec=spec, start=start)
    observed = _observe(runtime, run, spec, old, prepared)
    timeouts = run.spec.timeouts
    params = validate.param_values(spec, given)
    ctx = context(run)

    def plan_of(obs: dict[str, dag.Observed]) -> dag.Plan:
        return dag.plan(dag.RunInput(
            spec, params, obs, start=start, now=now, cancel=run.spec.status,
            pipeline_timeout=seconds(timeouts.pipeline), tasks_timeout=seconds(timeouts.tasks),
            finally_timeout=seconds(timeouts.finally_), context=ctx))

    has_builtins = any(t.builtin for t in (*spec.tasks, *spec.finally_))
    plan = _run_builtins(runtime, run, spec, old, observed, plan_of, prepared) if has_builtins else plan_of(observed)
    _planned(run, prepared, plan, params, ctx, runtime.config)
    return prepared


def _planned(run: PipelineRun, prepared: Prepared, plan: dag.Plan, params: dict[str, str], ctx: dict[str, str],
             config: Any) -> None:
    """The objects the plan calls for: Jobs to start, Jobs to stop, the workspace claims."""
    prepared.plan = plan
    spec = prepared.spec
    assert spec is not None
    for s in plan.start:
        if spec.task(s.task).builtin is not None:  # type: ignore[union-attr]
            continue  # the operator runs it (_run_builtins), no Job
        inputs = resources.TaskInputs(spec.task(s.task), s.attempt, s.params, params, ctx,  # type: ignore[arg-type]
                                      config.pipeline_helper_image, config.unsandboxed_node_pool)
        prepared.jobs.append(resources.job(run, inputs))
    prepared.stops = [{"apiVersion": "batch/v1", "kind": "Job",
                       "metadata": {"name": s.job_name, "namespace": run.metadata.namespace}}
                      for s in plan.stop if s.job_name]
    if not plan.done:
        prepared.claims = [resources.claim(run, b) for b in run.spec.workspaces if b.volume_claim_template is not None]


def offline(run: PipelineRun) -> Prepared:
    """For `mpcloud render`: what a new run of an embedded spec creates first (a pipelineRef needs the cluster)."""
    from mpcloud_operator.config import OperatorConfig

    spec = run.spec.pipeline_spec
    given = {p.name: p.value for p in run.spec.params}
    if spec is None or validate.run_problems(spec, given, run.spec.workspaces):
        return Prepared(finished=True)
    params, ctx = validate.param_values(spec, given), context(run)
    start = datetime(2026, 1, 1).astimezone()
    prepared = Prepared(spec=spec, start=start)
    plan = dag.plan(dag.RunInput(spec, params, {}, start=start, now=start, context=ctx))
    _planned(run, prepared, plan, params, ctx, OperatorConfig())
    return prepared


def desired(run: PipelineRun, prepared: Prepared) -> list[dict[str, Any]]:
    return [*prepared.claims, *prepared.jobs, *prepared.deployments]


def absent(run: PipelineRun, prepared: Prepared | None = None) -> list[dict[str, Any]]:
    return [*prepared.stops, *prepared.canaries_absent] if prepared is not None else []


def references(run: PipelineRun) -> list[Reference]:
    sandbox = run.spec.sandbox
    return [] if sandbox.unsandboxed else [Reference("RuntimeClass", sandbox.runtime_class_name)]


def requeue_after(run: PipelineRun, prepared: Prepared) -> float | None:
    if prepared.plan is None or prepared.plan.done:
        return None
    wakes = [w for w in (prepared.plan.wake_after, prepared.builtin_wake) if w is not None]
    return min(wakes) if wakes else None


# ------------------------------------------------------------------ PipelineRun: status


def sandbox_text(run: PipelineRun) -> str:
    sandbox = run.spec.sandbox
    return "unsandboxed (opt-out)" if sandbox.unsandboxed else sandbox.runtime_class_name


def _task_status(run: PipelineRun, st: dag.TaskState, old: dict[str, Any], now: datetime,
                 builtin: dict[str, Any] | None = None, is_builtin: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": st.name, "status": st.status}
    if st.is_finally:
        out["finally"] = True
    for key, value in (("reason", st.reason), ("message", st.message[:4000])):
        if value:
            out[key] = value
    a = st.attempt
    if a is not None:
        name = a.job_name or resources.job_name(run.metadata.name, st.name, a.number)
        same = old.get("attempt") == a.number
        start = a.start or (_time(old.get("startTime")) if same else None) or now
        out.update(attempt=a.number, startTime=format_time(start))
        if not is_builtin:
            out["jobName"] = name
        if st.status in dag.FINAL:
            finish = a.finish or (_time(old.get("completionTime")) if same and old.get("status") == st.status
                                  else None) or now
            out["completionTime"] = format_time(finish)
        if a.results and st.status == dag.SUCCEEDED:
            out["results"] = [{"name": k, "value": v} for k, v in sorted(a.results.items())]
        if builtin is None and old.get("attempt") == a.number:  # not looked at this time: as recorded
            builtin = {k: old[k] for k in ("deploy", "canary") if k in old}
        out.update(builtin or {})
    return out


def run_status(run: PipelineRun, given: StatusInput) -> dict[str, Any]:
    old, prepared, now = given.old, given.prepared, given.now
    gen = run.metadata.generation
    if prepared is None or prepared.finished:  # a status-only refresh, or a finished run: as it is
        return {k: v for k, v in old.items() if k in (*RUN_STATUS_FIELDS, "conditions", "observedGeneration")}
    start = prepared.start or now
    out: dict[str, Any] = {"startTime": old.get("startTime") or format_time(start), "sandbox": sandbox_text(run),
                           "observedGeneration": gen}
    if prepared.spec is not None:
        out["pipelineSpec"] = old.get("pipelineSpec") or to_json(prepared.spec)
    if prepared.failure is not None:
        condition = ("False", *prepared.failure)
        out["tasks"] = []
    else:
        plan = prepared.plan
        assert plan is not None
        records = {t["name"]: t for t in old.get("tasks") or []}
        spec = prepared.spec
        out["tasks"] = [_task_status(run, st, records.get(st.name, {}), now, prepared.builtin.get(st.name),
                                     bool(spec and (t := spec.task(st.name)) and t.builtin)) for st in plan.tasks]
        out["results"] = [{"name": k, "value": v} for k, v in sorted(plan.results.items())]
        condition = plan.condition
        if given.problems and not plan.done:
            condition = (condition[0], "CreateRunFailed", "; ".join(given.problems)[:4000])
    if condition[0] != "Unknown":
        out["completionTime"] = old.get("completionTime") or format_time(now)
    out["conditions"] = set_condition(old.get("conditions"), SUCCEEDED, *condition, gen, now)
    return out


def run_events(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    before = get_condition(old.get("conditions"), SUCCEEDED) or {}
    after = get_condition(new.get("conditions"), SUCCEEDED) or {}
    if before.get("status") == after.get("status") or not after:
        return []
    if after["status"] == "Unknown":
        return [("Started", "the run started", "Normal")]
    return [(after["reason"], after["message"], "Normal" if after["status"] == "True" else "Warning")]


def _kinds() -> tuple[Kind, Kind]:
    from mpcloud_operator.api.crdgen import column

    pipeline = Kind(
        kind=PIPELINE_KIND, plural="pipelines", model=Pipeline, desired=lambda obj: [], status=pipeline_status,
        events=pipeline_events, conditions=("Ready",), owned_status_fields=(), short_names=("pl",),
        loops=(pipeline_triggers,),  # cron schedules and the Git webhook endpoint (pipeline/trigger_loop.py)
        printer_columns=(
            column("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Valid"),
            column("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1),
            column("Age", ".metadata.creationTimestamp", "date"),
        ),
    )
    run = Kind(
        kind=RUN_KIND, plural="pipelineruns", model=PipelineRun, children=CHILDREN, desired=desired, absent=absent,
        references=references, prepare=prepare, offline=offline, status=run_status, events=run_events, requeue_after=requeue_after,
        conditions=(SUCCEEDED,), owned_status_fields=RUN_STATUS_FIELDS, short_names=("pr",),
        printer_columns=(
            column("Succeeded", '.status.conditions[?(@.type=="Succeeded")].status', description="Succeeded condition"),
            column("Reason", '.status.conditions[?(@.type=="Succeeded")].reason', description="Why"),
            column("StartTime", ".status.startTime", "date", "When the run started"),
            column("CompletionTime", ".status.completionTime", "date", "When it finished"),
            column("Message", '.status.conditions[?(@.type=="Succeeded")].message', priority=1),
        ),
    )
    return pipeline, run


PIPELINE, PIPELINE_RUN = _kinds()
