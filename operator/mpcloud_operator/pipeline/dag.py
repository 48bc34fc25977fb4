"""The state of a PipelineRun as a pure function: what runs now, what is skipped, what is done (Tekton's
pipelinerunstate.go, with its semantics).

    plan(RunInput(spec, params, observed attempts, start, now, cancel, timeouts)) -> Plan

`observed` is what exists: per task the attempts seen (from the Jobs, and from the run's status for Jobs that are
gone), plus a skip already recorded. Nothing here reads the cluster or the clock, so a restarted operator that
observes the same Jobs computes the same plan, and the same attempt is never started twice.

Rules (as Tekton's):
- a DAG task starts when every task it depends on (runAfter, result references) is done, and its `when`
  expressions hold; false `when` skips only that task (tasks that merely runAfter it still run; tasks that need
  its results are skipped too);
- a failed attempt is retried while `retries` allow; a task that failed for good, a cancellation or the tasks'
  deadline stops the DAG: no new task starts, those not started are skipped (PipelineRunStopping);
- finally tasks start once every DAG task is done, whatever its outcome; they may read `$(tasks.t.status)`;
- `spec.status`: Cancelled stops everything; CancelledRunFinally stops the DAG, then finally runs;
  StoppedRunFinally lets running tasks finish, starts nothing new, then finally runs;
- timeouts: `tasks` (from the run's start) stops the DAG and starts finally; `finally` bounds finally from its
  start; `pipeline` stops everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from graphlib import TopologicalSorter

from mpcloud_operator.pipeline.model import PipelineSpec, PipelineTask
from mpcloud_operator.pipeline.validate import dependencies, pipeline_strings, references, result_reference, substitute

RUNNING, SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, SKIPPED, PENDING = (
    "Running", "Succeeded", "Failed", "TimedOut", "Cancelled", "Skipped", "Pending")
FINAL = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, SKIPPED)
RAN = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)


@dataclass(frozen=True)
class Attempt:
    """One attempt of a task as observed: its Job's state (Running until the Job finished)."""

    number: int  # 1 = the first
    state: str  # Running | Succeeded | Failed | TimedOut | Cancelled
    job_name: str = ""
    reason: str = ""
    message: str = ""
    start: datetime | None = None
    finish: datetime | None = None
    results: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """What is known of one task: its attempts (any order), or a skip the run already recorded."""

    attempts: tuple[Attempt, ...] = ()
    skipped: tuple[str, str] | None = None  # (reason, message), sticky

    @property
    def last(self) -> Attempt | None:
        return max(self.attempts, key=lambda a: a.number) if self.attempts else None


@dataclass(frozen=True)
class RunInput:
    spec: PipelineSpec
    params: dict[str, str]  # with defaults filled in
    observed: dict[str, Observed]
    start: datetime
    now: datetime
    cancel: str | None = None  # spec.status
    pipeline_timeout: float | None = 3600.0  # seconds; None = no limit
    tasks_timeout: float | None = None
    finally_timeout: float | None = None
    context: dict[str, str] = field(default_factory=dict)  # context.pipelineRun.name, ...


@dataclass(frozen=True)
class TaskState:
    """One task's state in the plan (what the run's status shows)."""

    name: str
    is_finally: bool
    status: str  # Pending | Running | Succeeded | Failed | TimedOut | Cancelled | Skipped
    reason: str = ""
    message: str = ""
    attempt: Attempt | None = None  # the latest attempt (observed, or the one starting now)
    params: dict[str, str] = field(default_factory=dict)  # resolved values, for an attempt starting now


@dataclass(frozen=True)
class Start:
    task: str
    attempt: int
    params: dict[str, str]  # the task's params, resolved (pipeline-level references substituted)


@dataclass(frozen=True)
class Stop:
    task: str
    job_name: str
    state: str  # Cancelled | TimedOut


@dataclass
class Plan:
    tasks: list[TaskState]
    start: list[Start]
    stop: list[Stop]
    done: bool
    condition: tuple[str, str, str]  # (status, reason, message) of Succeeded
    results: dict[str, str]
    wake_after: float | None  # seconds until the next deadline (None: no deadline pending)
    # pipeline-level substitutions as of this plan (for the built-in tasks the operator runs itself)
    values: dict[str, str] = field(default_factory=dict)
    finally_values: dict[str, str] = field(default_factory=dict)

    def state(self, name: str) -> TaskState:
        return next(t for t in self.tasks if t.name == name)


def _deadline(start: datetime | None, seconds: float | None) -> datetime | None:
    return start + timedelta(seconds=seconds) if start is not None and seconds else None


def _earliest(*times: datetime | None) -> datetime | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def summary(states: list[TaskState], running: bool) -> str:
    """Tekton's message: "Tasks Completed: N (Failed: F, Cancelled C), Skipped: S[, Incomplete: I]"."""
    count = {s: sum(1 for t in states if t.status == s) for s in (*FINAL, RUNNING, PENDING)}
    completed = sum(count[s] for s in RAN)
    text = (f"Tasks Completed: {completed} (Failed: {count[FAILED] + count[TIMED_OUT]}, "
            f"Cancelled {count[CANCELLED]}), Skipped: {count[SKIPPED]}")
    if running:
        text += f", Incomplete: {count[RUNNING] + count[PENDING]}"
    return text


class _Planner:
    def __init__(self, given: RunInput) -> None:
        self.g = given
        self.states: dict[str, TaskState] = {}
        self.start: list[Start] = []
        self.stop: list[Stop] = []
        self.retries: list[tuple[PipelineTask, bool, int]] = []
        now = given.now
        self.pipeline_deadline = _deadline(given.start, given.pipeline_timeout)
        self.tasks_deadline = _earliest(_deadline(given.start, given.tasks_timeout), self.pipeline_deadline)
        self.pipeline_timed_out = self.pipeline_deadline is not None and now >= self.pipeline_deadline
        self.tasks_timed_out = self.tasks_deadline is not None and now >= self.tasks_deadline
        self.cancelled = given.cancel in ("Cancelled", "CancelledRunFinally")
        self.stopped = given.cancel is not None

    # ------------------------------------------------------------ substitution
    def values(self, in_finally: bool) -> dict[str, str]:
        out = {f"params.{k}": v for k, v in self.g.params.items()}
        out.update(self.g.context)
        for name, st in self.states.items():
            if st.is_finally:
                continue
            if st.status == SUCCEEDED and st.attempt is not None:
                out.update({f"tasks.{name}.results.{r}": v for r, v in st.attempt.results.items()})
            if in_finally:
                out[f"tasks.{name}.status"] = {SUCCEEDED: "Succeeded", SKIPPED: "None"}.get(st.status, "Failed")
        if in_finally:
            dag = [self.states[t.name].status for t in self.g.spec.tasks]
            out["tasks.status"] = ("Failed" if any(s in (FAILED, TIMED_OUT, CANCELLED) for s in dag)
                                   else "Completed" if SKIPPED in dag else "Succeeded")
        return out

    def missing_results(self, task: PipelineTask, values: dict[str, str]) -> list[str]:
        return sorted({e for _, text in pipeline_strings(task) for e in references(text)
                       if result_reference(e) is not None and e not in values})

    # ------------------------------------------------------------ one task
    def observed_state(self, task: PipelineTask, is_finally: bool, stop_running: str | None) -> TaskState | None:
        """The state of a task that ran (or was skipped); None if it has not started. Decides retries and stops."""
        obs = self.g.observed.get(task.name, Observed())
        if obs.skipped is not None:
            return TaskState(task.name, is_finally, SKIPPED, *obs.skipped)
        last = obs.last
        if last is None:
            return None
        if last.state == RUNNING:
            if stop_running is not None:
                state = TIMED_OUT if stop_running == "PipelineRunTimeout" else CANCELLED
                self.stop.append(Stop(task.name, last.job_name, state))
                return TaskState(task.name, is_finally, state, stop_running, _stop_message(stop_running), last)
            return TaskState(task.name, is_finally, RUNNING, "", "", last)
        may_retry = stop_running is None and (is_finally or not self.stopped)
        if last.state in (FAILED, TIMED_OUT) and last.number <= task.retries and may_retry:
            self.retries.append((task, is_finally, last.number + 1))  # params once every state is known
            return TaskState(task.name, is_finally, RUNNING, "Retrying",
                             f"attempt {last.number} {last.state.lower()}: {last.message}"[:1024],
                             Attempt(last.number + 1, RUNNING))
        return TaskState(task.name, is_finally, last.state, last.reason, last.message, last)

    def start_retries(self) -> None:
        for task, is_finally, number in self.retries:
            params = self.task_params(task, self.values(is_finally))
            self.start.append(Start(task.name, number, params))
            self.states[task.name] = replace(self.states[task.name], params=params)
        self.retries = []

    def task_params(self, task: PipelineTask, values: dict[str, str]) -> dict[str, str]:
        declared = task.task_spec.params if task.task_spec is not None else []  # built-ins take no params
        out = {p.name: p.default for p in declared if p.default is not None}
        out.update({p.name: substitute(p.value, values) for p in task.params})
        return out

    def try_start(self, task: PipelineTask, is_finally: bool) -> TaskState:
        values = self.values(is_finally)
        missing = self.missing_results(task, values)
        if missing:
            producers = sorted({result_reference(m)[0] for m in missing})  # type: ignore[index]
            if is_finally or any(self.states[p].status != SUCCEEDED for p in producers):
                return TaskState(task.name, is_finally, SKIPPED, "ResultsMissing",
                                 f"results of {', '.join(producers)} are not available: {', '.join(missing)}")
            return TaskState(task.name, is_finally, FAILED, "InvalidTaskResultReference",
                             f"{', '.join(missing)}: the task succeeded without writing that result")
        for w in task.when:
            got = substitute(w.input, values)
            wanted = [substitute(v, values) for v in w.values]
            if (got in wanted) != (w.operator == "in"):
                return TaskState(task.name, is_finally, SKIPPED, "WhenExpressionsFalse",
                                 f"when {w.input!r} ({got!r}) {w.operator} {wanted}: false")
        params = self.task_params(task, values)
        self.start.append(Start(task.name, 1, params))
        return TaskState(task.name, is_finally, RUNNING, "Started", "", Attempt(1, RUNNING), params)

    # ------------------------------------------------------------ the run
    def plan(self) -> Plan:
        g, spec = self.g, self.g.spec
        dag_stop = ("PipelineRunTimeout" if self.tasks_timed_out
                    else "PipelineRunCancelled" if self.cancelled else None)
        for task in spec.tasks:
            st = self.observed_state(task, False, dag_stop)
            if st is not None:
                self.states[task.name] = st
        graph = {t.name: {d for d in dependencies(t) if spec.task(d) is not None} for t in spec.tasks}
        by_name = {t.name: t for t in spec.tasks}
        for name in TopologicalSorter(graph).static_order():
            if name in self.states:
                continue
            task = by_name[name]
            failing = any(s.status in (FAILED, TIMED_OUT, CANCELLED) for s in self.states.values())
            if dag_stop or self.stopped or failing:
                reason = dag_stop or ("PipelineRunStopping" if failing else "PipelineRunCancelled")
                self.states[name] = TaskState(name, False, SKIPPED, reason, _stop_message(reason))
            elif all(self.states.get(d) is not None and self.states[d].status in FINAL for d in graph[name]):
                self.states[name] = self.try_start(task, False)
            else:
                self.states[name] = TaskState(name, False, PENDING, "", "waiting for " + ", ".join(
                    sorted(d for d in graph[name] if self.states.get(d) is None or self.states[d].status not in FINAL)))
        self.start_retries()
        dag_done = all(self.states[t.name].status in FINAL for t in spec.tasks)
        # finally: from its first start, bounded by its own timeout and the pipeline's deadline
        finally_start = _earliest(*(a.start for t in spec.finally_
                                    for a in g.observed.get(t.name, Observed()).attempts))
        finally_deadline = _earliest(_deadline(finally_start or g.now, g.finally_timeout), self.pipeline_deadline)
        finally_timed_out = finally_deadline is not None and g.now >= finally_deadline and dag_done
        fin_stop = ("PipelineRunTimeout" if self.pipeline_timed_out or finally_timed_out
                    else "PipelineRunCancelled" if g.cancel == "Cancelled" else None)
        for task in spec.finally_:
            st = self.observed_state(task, True, fin_stop)
            if st is None:
                if fin_stop:
                    st = TaskState(task.name, True, SKIPPED, fin_stop, _stop_message(fin_stop))
                elif dag_done:
                    st = self.try_start(task, True)
                else:
                    st = TaskState(task.name, True, PENDING, "", "waiting for the tasks to finish")
            self.states[task.name] = st
        self.start_retries()
        states = [self.states[t.name] for t in (*spec.tasks, *spec.finally_)]
        done = all(s.status in FINAL for s in states)
        results = self.results()
        wake = None
        if not done:
            pending = [d for d in (self.pipeline_deadline, None if dag_done else self.tasks_deadline,
                                   finally_deadline if dag_done and spec.finally_ else None) if d is not None]
            wake = max(0.0, min((d - g.now).total_seconds() for d in pending)) if pending else None
        return Plan(states, self.start, self.stop, done, self.condition(states, done), results, wake,
                    self.values(False), self.values(True))

    def results(self) -> dict[str, str]:
        values = self.values(False)
        out = {}
        for r in self.g.spec.results:
            if all(e in values for e in references(r.value)):
                out[r.name] = substitute(r.value, values)
        return out

    def condition(self, states: list[TaskState], done: bool) -> tuple[str, str, str]:
        g = self.g
        text = summary(states, running=not done)
        if not done:
            return "Unknown", "Running", text
        name = g.context.get("context.pipelineRun.name", "")
        if g.cancel is not None and any(s.reason in ("PipelineRunCancelled",) for s in states):
            verb = "stopped" if g.cancel == "StoppedRunFinally" else "cancelled"
            return "False", "Cancelled", f'PipelineRun "{name}" was {verb}. {text}'
        if any(s.reason == "PipelineRunTimeout" for s in states):
            return "False", "PipelineRunTimeout", f'PipelineRun "{name}" did not finish in time. {text}'
        if any(s.status in (FAILED, TIMED_OUT, CANCELLED) for s in states):
            return "False", "Failed", text
        if any(s.status == SKIPPED for s in states):
            return "True", "Completed", text
        return "True", "Succeeded", text


def _stop_message(reason: str) -> str:
    return {"PipelineRunTimeout": "the run's deadline passed", "PipelineRunCancelled": "the run was cancelled",
            "PipelineRunStopping": "a task failed: no new task starts"}.get(reason, reason)


def plan(given: RunInput) -> Plan:
    """What to do now and the run's state, from the spec and what was observed (pure)."""
    return _Planner(given).plan()
