"""Pipeline and PipelineRun spec and status as pydantic models: the single source of truth for both CRDs.

Tekton's conventions, adapted: a Pipeline is a DAG of tasks (`runAfter` and result references
`$(tasks.X.results.Y)` are its edges), each task a list of steps (image + script, or command/args) run in order
in one sandboxed pod; params with defaults, small results, workspaces shared between tasks, `when`
guards, `finally` tasks, per-task retries and timeouts. Tasks are embedded (`taskSpec`): there is no separate
Task kind. A PipelineRun runs a Pipeline (`pipelineRef`) or an embedded `pipelineSpec` with params and
workspace bindings, timeouts {pipeline, tasks, finally}, and can be cancelled (`spec.status`).

What CEL can check is declared once as a `Rule` and mirrored by a validator with the same message (unique
names, runAfter names that exist, script xor command, size limits); what it cannot (cycles, references inside
strings, missing params) is `pipeline.validate`'s job: `Succeeded=False` with a reason before any task runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, model_validator

from mpcloud_operator.api.conditions import Condition
from mpcloud_operator.api.parts import EnvVar, Resources, Sandbox
from mpcloud_operator.api.schema import APIModel, CustomResource, Rule, cel, list_map, nested
from mpcloud_operator.api.types import ImageRef, Label, Name
from mpcloud_operator.pipeline.deploy_model import CanaryStatus, CanaryTask, DeployStatus, DeployTask
from mpcloud_operator.pipeline.triggers import PipelineTriggers

API_VERSION = "mpcloud.io/v1alpha1"
PIPELINE_KIND = "Pipeline"
RUN_KIND = "PipelineRun"
MAX_TASKS = 32
MAX_FINALLY = 16
MAX_STEPS = 8
MAX_RUN_AFTER = 10  # bounds (tasks x runAfter x tasks) keep the CEL rules within the API server's cost budget
MAX_SCRIPT = 16384  # per step; a task's scripts travel as pod annotations (256 KiB in all)
MAX_RESULT_BYTES = 4096  # all results of one task, as the kubelet's termination message (Tekton's limit)
DEFAULT_PIPELINE_TIMEOUT = "1h"

# A Go duration ("1h30m", "90s", "0s" = no timeout), as Tekton's timeouts and CEL's duration() read them.
DURATION = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"
Duration = Annotated[str, StringConstraints(min_length=2, max_length=32, pattern=DURATION)]
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def seconds(duration: str | None) -> float | None:
    """A Go duration in seconds; None for unset or "0s" (no timeout)."""
    if not duration:
        return None
    total = sum(float(n) * _UNIT[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(h|ms|m|s)", duration))
    return total or None


ParamValue = Annotated[str, StringConstraints(max_length=4096)]


# ---------------------------------------------------------------- params, results, workspaces

class ParamSpec(APIModel):
    """A parameter a pipeline (or a task) declares; referenced as $(params.<name>)."""

    name: Label
    """Parameter name."""
    description: str | None = Field(default=None, max_length=1024)
    """What it is for."""
    default: ParamValue | None = None
    """Value when the run (or the pipeline task) gives none; without one the param is required."""


class Param(APIModel):
    """A value for a declared parameter. Values may reference $(params.x), $(tasks.t.results.r) and
    $(context.pipelineRun.name)."""

    name: Label
    """Parameter name."""
    value: ParamValue
    """Value (a string)."""


class TaskResult(APIModel):
    """A small string a task produces: its steps write it to $(results.<name>.path)."""

    name: Label
    """Result name; downstream tasks read it as $(tasks.<task>.results.<name>)."""
    description: str | None = Field(default=None, max_length=1024)
    """What it holds. All results of a task together are at most 4096 bytes."""


class PipelineResult(APIModel):
    """A result of the whole run, taken from a task's result."""

    name: Label
    """Result name."""
    value: str = Field(max_length=256)
    """A reference such as $(tasks.build.results.digest)."""
    description: str | None = Field(default=None, max_length=1024)
    """What it holds."""


class WorkspaceDeclaration(APIModel):
    """A volume the pipeline's tasks share; the run binds it (a PVC, a claim template, or an emptyDir)."""

    name: Label
    """Workspace name."""
    description: str | None = Field(default=None, max_length=1024)
    """What it holds."""
    optional: bool = False
    """A run may leave it unbound."""


class TaskWorkspace(APIModel):
    """A volume a task mounts; its steps find it at $(workspaces.<name>.path)."""

    name: Label
    """Workspace name within the task."""
    mount_path: str | None = Field(default=None, max_length=512, pattern=r"^/")
    """Where the steps see it (default /workspace/<name>)."""
    read_only: bool = False
    """Mount read-only."""


class WorkspaceUse(APIModel):
    """Which pipeline workspace a task's workspace is."""

    name: Label
    """The task's workspace."""
    workspace: Label
    """The pipeline's workspace (default: the same name)."""


# ---------------------------------------------------------------- steps and tasks

STEP_SCRIPT_OR_COMMAND = Rule("has(self.script) != has(self.command)", "a step sets exactly one of script and command")


class Step(APIModel):
    """One container run to completion; the steps of a task run in order in one pod, sharing its workspaces and
    /tmp. A failing step fails the task attempt; the later steps do not run."""

    model_config = cel(STEP_SCRIPT_OR_COMMAND)

    name: Annotated[str, StringConstraints(min_length=1, max_length=58, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    """Step name (the container is step-<name>)."""
    image: ImageRef
    """Container image."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image."""
    script: str | None = Field(default=None, max_length=MAX_SCRIPT)
    """A script run as an executable file: a first line `#!/path/to/interpreter` picks the interpreter
    (e.g. #!/usr/bin/python3), otherwise it runs under /bin/sh -e. $(...) references are substituted."""
    command: list[Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None, min_length=1, max_length=32)
    """Entrypoint (instead of a script)."""
    args: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(default_factory=list, max_length=64)
    """Arguments to the command or script."""
    working_dir: str | None = Field(default=None, max_length=512, pattern=r"^/")
    """Working directory."""
    env: list[EnvVar] = Field(default_factory=list, max_length=32, json_schema_extra=list_map("name"))
    """Environment variables (values may use $(...) references)."""
    resources: Resources = nested(Resources)
    """CPU and memory of the step's container."""

    @model_validator(mode="after")
    def _script_or_command(self) -> Step:
        STEP_SCRIPT_OR_COMMAND.check((self.script is None) != (self.command is None))
        return self


class TaskSpec(APIModel):
    """What a task runs: steps in order in one pod, with its own params, results and workspaces."""

    params: list[ParamSpec] = Field(default_factory=list, max_length=32, json_schema_extra=list_map("name"))
    """Parameters of the task (the pipeline task gives their values). A step's $(params.x) that the task
    does not declare reads the pipeline's param x (propagated, as Tekton does for embedded specs)."""
    results: list[TaskResult] = Field(default_factory=list, max_length=16, json_schema_extra=list_map("name"))
    """Results the steps write."""
    workspaces: list[TaskWorkspace] = Field(default_factory=list, max_length=8, json_schema_extra=list_map("name"))
    """Volumes the task mounts."""
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS, json_schema_extra=list_map("name"))
    """Steps, run in order."""


WHEN_OPERATOR = ("in", "notin")


class WhenExpression(APIModel):
    """Run the task only if `input` is (operator in) or is not (notin) one of `values`."""

    input: str = Field(max_length=1024)
    """Usually a reference: $(params.x), $(tasks.t.results.r), or in finally $(tasks.t.status)."""
    operator: Literal["in", "notin"]
    """in or notin."""
    values: list[Annotated[str, StringConstraints(max_length=1024)]] = Field(min_length=1, max_length=16)
    """Values to compare with."""


TASK_KIND_ONE_OF = Rule("[has(self.taskSpec), has(self.deploy), has(self.canary)].filter(x, x).size() == 1",
                        "a pipeline task sets exactly one of taskSpec, deploy and canary")
BUILTIN_NO_PARAMS = Rule("has(self.taskSpec) || !has(self.params) || size(self.params) == 0",
                         "deploy and canary tasks take no params: write references into their fields")


class PipelineTask(APIModel):
    """A node of the DAG: a task spec (or a built-in deploy/canary task), the params it gets, what it runs after,
    when it runs, and its retries."""

    model_config = cel(TASK_KIND_ONE_OF, BUILTIN_NO_PARAMS)

    name: Label
    """Task name, unique in the pipeline (tasks and finally)."""
    task_spec: TaskSpec | None = None
    """The task (embedded): steps run in a Job."""
    deploy: DeployTask | None = None
    """Built-in: update a MiniProgramApp's image or a CloudFunction's source, wait for Ready (run by the operator)."""
    canary: CanaryTask | None = None
    """Built-in: canary release of a MiniProgramApp with analysis, promotion and rollback (run by the operator)."""
    params: list[Param] = Field(default_factory=list, max_length=32, json_schema_extra=list_map("name"))
    """Values of the task's params."""
    run_after: list[Label] = Field(default_factory=list, max_length=MAX_RUN_AFTER,
                                   json_schema_extra={"x-kubernetes-list-type": "set"})
    """Tasks that must finish first (besides those whose results this task references)."""
    when: list[WhenExpression] = Field(default_factory=list, max_length=8)
    """All must hold, or the task is skipped (tasks that only runAfter it still run)."""
    retries: int = Field(default=0, ge=0, le=10)
    """Further attempts after a failed (or timed-out) one."""
    timeout: Duration | None = None
    """Longest one attempt may run (the Job's activeDeadlineSeconds); unset or 0s: only the run's timeouts."""
    workspaces: list[WorkspaceUse] = Field(default_factory=list, max_length=8, json_schema_extra=list_map("name"))
    """The pipeline workspaces the task's workspaces are."""

    @model_validator(mode="after")
    def _one_kind(self) -> PipelineTask:
        TASK_KIND_ONE_OF.check(sum(x is not None for x in (self.task_spec, self.deploy, self.canary)) == 1)
        BUILTIN_NO_PARAMS.check(self.task_spec is not None or not self.params)
        return self

    @property
    def builtin(self) -> str | None:
        """"deploy" or "canary" for a task the operator runs itself; None for a Job of steps."""
        return "deploy" if self.deploy is not None else "canary" if self.canary is not None else None


TASK_NAMES_UNIQUE = Rule("!has(self.finally) || self.finally.all(f, !self.tasks.exists(t, t.name == f.name))",
                         "a finally task may not have the name of a task")
RUN_AFTER_EXISTS = Rule(
    "self.tasks.all(t, !has(t.runAfter) || t.runAfter.all(r, r != t.name && self.tasks.exists(u, u.name == r)))",
                        "tasks[].runAfter must name other tasks of tasks[] (finally tasks cannot be waited for)")
FINALLY_NO_RUN_AFTER = Rule("!has(self.finally) || self.finally.all(f, !has(f.runAfter) || size(f.runAfter) == 0)",
                            "finally tasks cannot have runAfter: they all start once the tasks are done")


class PipelineSpec(APIModel):
    """A DAG of tasks, then the finally tasks."""

    model_config = cel(TASK_NAMES_UNIQUE, RUN_AFTER_EXISTS, FINALLY_NO_RUN_AFTER)

    description: str | None = Field(default=None, max_length=4096)
    """What the pipeline does."""
    params: list[ParamSpec] = Field(default_factory=list, max_length=32, json_schema_extra=list_map("name"))
    """Parameters a run gives."""
    workspaces: list[WorkspaceDeclaration] = Field(default_factory=list, max_length=8,
                                                   json_schema_extra=list_map("name"))
    """Volumes shared between tasks."""
    tasks: list[PipelineTask] = Field(min_length=1, max_length=MAX_TASKS, json_schema_extra=list_map("name"))
    """The DAG's tasks."""
    finally_: list[PipelineTask] = Field(default_factory=list, max_length=MAX_FINALLY, alias="finally",
                                         json_schema_extra={**list_map("name"), "default": []})
    """Tasks run after all tasks finished, whether they succeeded, failed or were skipped."""
    results: list[PipelineResult] = Field(default_factory=list, max_length=16, json_schema_extra=list_map("name"))
    """Results of the run, from task results."""
    triggers: PipelineTriggers | None = None
    """Git push webhooks and cron schedules that start runs (pipeline/triggers.py); ignored when embedded in a
    PipelineRun."""

    @model_validator(mode="after")
    def _rules(self) -> PipelineSpec:
        names = {t.name for t in self.tasks}
        TASK_NAMES_UNIQUE.check(not any(f.name in names for f in self.finally_))
        RUN_AFTER_EXISTS.check(all(r != t.name and r in names for t in self.tasks for r in t.run_after))
        FINALLY_NO_RUN_AFTER.check(all(not f.run_after for f in self.finally_))
        for group in (self.tasks, self.finally_, self.params, self.workspaces, self.results):
            if len({x.name for x in group}) != len(group):
                raise ValueError(f"duplicate name in {[x.name for x in group]}")
        return self

    def task(self, name: str) -> PipelineTask | None:
        return next((t for t in (*self.tasks, *self.finally_) if t.name == name), None)


class PipelineStatus(APIModel):
    """Whether the pipeline is valid beyond what the schema checks (cycles, references inside strings)."""

    model_config = ConfigDict(extra="ignore")

    conditions: list[Condition] = Field(default_factory=list, max_length=4, json_schema_extra=list_map("type"))
    """Ready: True (Valid) or False (PipelineValidationFailed, with what is wrong)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation last checked."""


class Pipeline(CustomResource):
    """A CI/CD pipeline: a DAG of tasks whose steps run in sandboxed pods. Run it with a PipelineRun."""

    api_version: Literal["mpcloud.io/v1alpha1"] = API_VERSION
    kind: Literal["Pipeline"] = PIPELINE_KIND
    spec: PipelineSpec
    status: PipelineStatus | None = None


# ---------------------------------------------------------------- PipelineRun

class PipelineRef(APIModel):
    """A Pipeline in the run's namespace."""

    name: Name
    """Pipeline name."""


class ClaimSpec(APIModel):
    """The PersistentVolumeClaim a run creates for a workspace (deleted with the run)."""

    access_modes: list[Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]] = Field(
        default_factory=lambda: ["ReadWriteOnce"], max_length=3)
    """Access modes."""
    storage: Annotated[str, StringConstraints(max_length=64)] = "1Gi"
    """Requested size."""
    storage_class_name: str | None = Field(default=None, max_length=253)
    """StorageClass (default: the cluster's default)."""


class ClaimRef(APIModel):
    """An existing PersistentVolumeClaim."""

    claim_name: Name
    """Claim name."""
    read_only: bool = False
    """Mount read-only."""


class EmptyDir(APIModel):
    """A scratch volume of one task's pod: it is NOT shared between tasks (each task is its own pod)."""

    size_limit: Annotated[str, StringConstraints(max_length=64)] = "1Gi"
    """Most it may hold."""


WORKSPACE_ONE_OF = Rule(
    "[has(self.persistentVolumeClaim), has(self.volumeClaimTemplate), has(self.emptyDir)].filter(x, x).size() == 1",
    "workspaces[] sets exactly one of persistentVolumeClaim, volumeClaimTemplate or emptyDir")


class WorkspaceBinding(APIModel):
    """The volume behind one of the pipeline's workspaces for this run."""

    model_config = cel(WORKSPACE_ONE_OF)

    name: Label
    """The pipeline's workspace."""
    persistent_volume_claim: ClaimRef | None = None
    """An existing claim (the tasks share it)."""
    volume_claim_template: ClaimSpec | None = None
    """A claim created for this run, owned by it (the tasks share it)."""
    empty_dir: EmptyDir | None = None
    """Per task pod only (not shared): for tasks that just need scratch space."""

    @model_validator(mode="after")
    def _one_of(self) -> WorkspaceBinding:
        WORKSPACE_ONE_OF.check(sum(x is not None for x in (
            self.persistent_volume_claim, self.volume_claim_template, self.empty_dir)) == 1)
        return self


TIMEOUTS_FIT = Rule(
    "!has(self.pipeline) || duration(self.pipeline) == duration('0s') || "
    "(has(self.tasks) ? duration(self.tasks) : duration('0s')) + "
    "(has(self.finally) ? duration(self.finally) : duration('0s')) <= duration(self.pipeline)",
    "timeouts.tasks + timeouts.finally must not exceed timeouts.pipeline")


class Timeouts(APIModel):
    """Go durations; 0s means no limit. The tasks' deadline passing stops them and starts finally; the pipeline's
    deadline passing stops everything."""

    model_config = cel(TIMEOUTS_FIT)

    pipeline: Duration | None = DEFAULT_PIPELINE_TIMEOUT
    """The whole run (default 1h)."""
    tasks: Duration | None = None
    """The tasks (not finally), from the run's start."""
    finally_: Duration | None = Field(default=None, alias="finally")
    """The finally tasks, from their start."""

    @model_validator(mode="after")
    def _fit(self) -> Timeouts:
        total = seconds(self.pipeline)
        TIMEOUTS_FIT.check(total is None or (seconds(self.tasks) or 0) + (seconds(self.finally_) or 0) <= total)
        return self


REF_OR_SPEC = Rule("has(self.pipelineRef) != has(self.pipelineSpec)",
                   "a PipelineRun sets exactly one of pipelineRef and pipelineSpec")
IMMUTABLE = Rule("self == oldSelf", "is immutable once the run is created (only spec.status may change)")
CANCEL_STATES = ("Cancelled", "CancelledRunFinally", "StoppedRunFinally")


class PipelineRunSpec(APIModel):
    """One execution of a pipeline."""

    model_config = cel(REF_OR_SPEC)

    pipeline_ref: Annotated[PipelineRef | None, Field(json_schema_extra={
        "x-kubernetes-validations": [IMMUTABLE.as_schema()]})] = None
    """The Pipeline to run (read once, when the run starts: later edits of it do not affect this run)."""
    pipeline_spec: PipelineSpec | None = None
    """Or the pipeline itself, embedded."""
    params: list[Param] = Field(default_factory=list, max_length=32, json_schema_extra={
        **list_map("name"), "x-kubernetes-validations": [IMMUTABLE.as_schema()]})
    """Values of the pipeline's params."""
    workspaces: list[WorkspaceBinding] = Field(default_factory=list, max_length=8, json_schema_extra=list_map("name"))
    """Volumes for the pipeline's workspaces."""
    timeouts: Timeouts = nested(Timeouts)
    """Deadlines."""
    status: Literal["Cancelled", "CancelledRunFinally", "StoppedRunFinally"] | None = None
    """Cancelled: stop the running tasks, run nothing more. CancelledRunFinally: stop them, then run finally.
    StoppedRunFinally: start no new task, let running ones finish, then run finally."""
    sandbox: Sandbox = nested(Sandbox)
    """Sandbox of the task pods (Kata Containers by default)."""

    @model_validator(mode="after")
    def _ref_or_spec(self) -> PipelineRunSpec:
        REF_OR_SPEC.check((self.pipeline_ref is None) != (self.pipeline_spec is None))
        return self


TaskState = Literal["Pending", "Running", "Succeeded", "Failed", "TimedOut", "Cancelled", "Skipped"]


class ResultValue(APIModel):
    """A result's value."""

    name: Label
    """Result name."""
    value: str = Field(max_length=MAX_RESULT_BYTES)
    """Value."""


class TaskRunStatus(APIModel):
    """The state of one pipeline task in this run (its latest attempt)."""

    model_config = ConfigDict(extra="ignore")

    name: Label
    """Pipeline task name."""
    finally_: bool = Field(default=False, alias="finally")
    """A finally task."""
    status: TaskState
    """Pending, Running, Succeeded, Failed, TimedOut, Cancelled or Skipped."""
    reason: str | None = Field(default=None, max_length=256)
    """Why (e.g. WhenExpressionsFalse, PipelineRunStopping, DeadlineExceeded)."""
    message: str | None = Field(default=None, max_length=4096)
    """Details (a failed step's exit code and the end of its log)."""
    job_name: str | None = Field(default=None, max_length=63)
    """The Job of the latest attempt."""
    attempt: int | None = Field(default=None, ge=1)
    """Latest attempt (1 = the first; retries add one each)."""
    start_time: AwareDatetime | None = None
    """When the latest attempt's Job was created."""
    completion_time: AwareDatetime | None = None
    """When it finished."""
    results: list[ResultValue] = Field(default_factory=list, max_length=16)
    """Results it produced."""
    deploy: DeployStatus | None = None
    """A deploy task's progress."""
    canary: CanaryStatus | None = None
    """A canary task's progress (step, share, measurements): what a restarted operator goes on from."""


class PipelineRunStatus(APIModel):
    """Observed state of a PipelineRun, written by the operator only."""

    model_config = ConfigDict(extra="ignore")

    conditions: list[Condition] = Field(default_factory=list, max_length=4, json_schema_extra=list_map("type"))
    """Succeeded: Unknown (Running) while it runs; True (Succeeded, Completed: some skipped); False (Failed,
    PipelineRunTimeout, Cancelled, PipelineNotFound, PipelineValidationFailed, ParameterMissing, ...)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation last acted on."""
    start_time: AwareDatetime | None = None
    """When the run started."""
    completion_time: AwareDatetime | None = None
    """When it finished."""
    tasks: list[TaskRunStatus] = Field(default_factory=list, max_length=MAX_TASKS + MAX_FINALLY)
    """Per task: state, Job, attempt, times, results."""
    results: list[ResultValue] = Field(default_factory=list, max_length=16)
    """The pipeline's results."""
    pipeline_spec: Any = Field(default=None, json_schema_extra={
        "type": "object", "x-kubernetes-preserve-unknown-fields": True})
    """The pipeline as resolved when the run started (what it runs, whatever later happens to the Pipeline)."""
    sandbox: str | None = Field(default=None, max_length=300)
    """The RuntimeClass task pods run in, or "unsandboxed (opt-out)"."""


class PipelineRun(CustomResource):
    """One execution of a Pipeline: each task attempt is a Job whose pod runs the steps in order (sandbox
    RuntimeClass, Pod Security "restricted"); results pass between tasks; status has one Succeeded condition."""

    api_version: Literal["mpcloud.io/v1alpha1"] = API_VERSION
    kind: Literal["PipelineRun"] = RUN_KIND
    spec: PipelineRunSpec
    status: PipelineRunStatus | None = None
