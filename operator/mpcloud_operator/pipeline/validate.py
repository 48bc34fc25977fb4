"""What the CRD schema cannot check about a pipeline, as pure functions: references inside strings, cycles, params.

`$(...)` references (Tekton's syntax) are substituted in two places:

- pipeline level — a pipeline task's param values and `when` inputs/values: `$(params.p)` (the run's params),
  `$(tasks.t.results.r)` (an edge of the DAG), in finally also `$(tasks.t.status)` and `$(tasks.status)`, and
  `$(context.pipelineRun.name|namespace|uid)`, `$(context.pipeline.name)`;
- task level — a step's script, command, args, env values and workingDir: `$(params.p)` (the task's params,
  else the pipeline's: propagated as Tekton does for embedded specs), `$(results.r.path)`,
  `$(workspaces.w.path)`, `$(context.task.name)`, `$(context.task.retry-count)` and the pipelineRun context.

`problems(spec)` lists everything wrong with a pipeline; `run_problems(spec, params, bindings)` adds what is
wrong with a run of it. Each problem is (reason, message); the run fails with the first reason before any task
starts (PipelineValidationFailed, ParameterMissing, InvalidWorkspaceBindings).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from mpcloud_operator.api.schema import to_json
from mpcloud_operator.pipeline import condition
from mpcloud_operator.pipeline.model import PipelineSpec, PipelineTask, WorkspaceBinding

REFERENCE = re.compile(r"\$\(([^()]*)\)")
INVALID = "PipelineValidationFailed"
PARAMETER_MISSING = "ParameterMissing"
WORKSPACES = "InvalidWorkspaceBindings"
RESULTS_DIR = "/mpcloud/results"
RUN_CONTEXT = ("context.pipelineRun.name", "context.pipelineRun.namespace", "context.pipelineRun.uid",
               "context.pipeline.name")
TASK_CONTEXT = ("context.task.name", "context.task.retry-count")


def references(text: str) -> list[str]:
    """The expressions of every $(...) in `text`."""
    return REFERENCE.findall(text)


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace each $(expr) whose expr is in `values`; others stay as written (validation rejects them first)."""
    return REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def result_reference(expr: str) -> tuple[str, str] | None:
    """(task, result) of `tasks.<task>.results.<result>`."""
    parts = expr.split(".")
    if len(parts) == 4 and parts[0] == "tasks" and parts[2] == "results":
        return parts[1], parts[3]
    return None


def pipeline_strings(task: PipelineTask) -> Iterator[tuple[str, str]]:
    """(where, text) of every string of a pipeline task substituted at pipeline level."""
    for p in task.params:
        yield f"params[{p.name}]", p.value
    for i, w in enumerate(task.when):
        yield f"when[{i}].input", w.input
        for v in w.values:
            yield f"when[{i}].values", v
    builtin = task.deploy or task.canary
    if builtin is not None:
        yield from _strings(to_json(builtin), task.builtin or "")


def _strings(value: object, where: str) -> Iterator[tuple[str, str]]:
    """Every string of a built-in task's spec, but inline file contents (code, not substituted)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if not (k == "files" and where.endswith(".inline")):
                yield from _strings(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def step_strings(task: PipelineTask) -> Iterator[tuple[str, str]]:
    """(where, text) of every string of a task's steps substituted at task level."""
    for step in task.task_spec.steps if task.task_spec is not None else ():
        where = f"steps[{step.name}]"
        if step.script is not None:
            yield f"{where}.script", step.script
        for s in (*(step.command or ()), *step.args):
            yield f"{where}.command/args", s
        if step.working_dir:
            yield f"{where}.workingDir", step.working_dir
        for e in step.env:
            if e.value:
                yield f"{where}.env[{e.name}]", e.value


def dependencies(task: PipelineTask) -> set[str]:
    """Tasks this one waits for: runAfter, and every task whose results (or status) it references."""
    out = set(task.run_after)
    for _, text in pipeline_strings(task):
        for expr in references(text):
            parts = expr.split(".")
            if len(parts) >= 3 and parts[0] == "tasks":
                out.add(parts[1])
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` (node -> the nodes it waits for) as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep in graph and state.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def _pipeline_level(spec: PipelineSpec, task: PipelineTask, in_finally: bool) -> Iterable[str]:
    declared = {p.name for p in spec.params}
    dag = {t.name: t for t in spec.tasks}
    for where, text in pipeline_strings(task):
        for expr in references(text):
            at = f"task {task.name} {where}: $({expr})"
            parts = expr.split(".")
            if parts[0] == "params" and len(parts) == 2:
                if parts[1] not in declared:
                    yield f"{at} names a param the pipeline does not declare"
            elif expr in RUN_CONTEXT:
                continue
            elif expr == "tasks.status" or (len(parts) == 3 and parts[0] == "tasks" and parts[2] == "status"):
                if not in_finally:
                    yield f"{at}: task status is only known to finally tasks"
                elif len(parts) == 3 and parts[1] not in dag:
                    yield f"{at} names no task of tasks[]"
            elif (ref := result_reference(expr)) is not None:
                producer = dag.get(ref[0])
                if producer is None:
                    yield f"{at} names no task of tasks[]" + (" (finally results cannot be referenced)"
                                                             if spec.task(ref[0]) else "")
                elif ref[1] not in _results(producer):
                    yield f"{at}: task {ref[0]} declares no result {ref[1]}"
            else:
                yield f"{at} is not a reference this field can use"


def _results(task: PipelineTask) -> set[str]:
    """Results a task declares (built-ins declare none)."""
    return {r.name for r in task.task_spec.results} if task.task_spec is not None else set()


def _builtin(task: PipelineTask) -> Iterable[str]:
    """What the schema cannot check of a built-in: its analysis conditions parse, metric names are unique."""
    if task.canary is None:
        return
    names: set[str] = set()
    for i, step in enumerate(task.canary.steps):
        a = step.analysis
        if a is None:
            continue
        if a.name in names:
            yield f"task {task.name} canary.steps[{i}].analysis: name {a.name} is used by an earlier analysis"
        names.add(a.name)
        for which, text in (("successCondition", a.success_condition), ("failureCondition", a.failure_condition)):
            why = condition.problem(text) if text is not None else None
            if why:
                yield f"task {task.name} canary.steps[{i}].analysis.{which} {text!r}: {why}"


def _task_level(spec: PipelineSpec, task: PipelineTask) -> Iterable[str]:
    ts = task.task_spec
    if ts is None:
        yield from _builtin(task)
        return
    params = {p.name for p in ts.params} | {p.name for p in spec.params}
    results = {r.name for r in ts.results}
    workspaces = {w.name for w in ts.workspaces}
    for where, text in step_strings(task):
        for expr in references(text):
            parts = expr.split(".")
            ok = ((parts[0] == "params" and len(parts) == 2 and parts[1] in params)
                  or (len(parts) == 3 and parts[0] == "results" and parts[2] == "path" and parts[1] in results)
                  or (len(parts) == 3 and parts[0] == "workspaces" and parts[2] == "path" and parts[1] in workspaces)
                  or expr in RUN_CONTEXT or expr in TASK_CONTEXT)
            if not ok:
                yield f"task {task.name} {where}: $({expr}) names no param, result or workspace of the task"
    given = {p.name for p in task.params}
    for p in ts.params:
        if p.default is None and p.name not in given and p.name not in {q.name for q in spec.params}:
            yield f"task {task.name}: param {p.name} has no value and no default"
    for name in given - {p.name for p in ts.params}:
        yield f"task {task.name}: param {name} is not declared by its taskSpec"
    uses = {u.name: u.workspace for u in task.workspaces}
    pipeline_ws = {w.name for w in spec.workspaces}
    for w in ts.workspaces:
        target = uses.get(w.name, w.name)
        if target not in pipeline_ws:
            yield f"task {task.name}: workspace {w.name} is bound to {target}, which the pipeline does not declare"
    for name in set(uses) - workspaces:
        yield f"task {task.name}: workspaces[{name}] is not a workspace of its taskSpec"


def problems(spec: PipelineSpec) -> list[str]:
    """Everything wrong with the pipeline itself, most telling first (a cycle before the rest)."""
    out: list[str] = []
    graph = {t.name: dependencies(t) for t in spec.tasks}
    cycle = find_cycle({n: {d for d in deps if d in graph} for n, deps in graph.items()})
    if cycle:
        out.append("the tasks form a cycle: " + " -> ".join(cycle))
    for task in spec.tasks:
        out += _pipeline_level(spec, task, in_finally=False)
        out += _task_level(spec, task)
    for task in spec.finally_:
        out += _pipeline_level(spec, task, in_finally=True)
        out += _task_level(spec, task)
    for result in spec.results:
        refs = [result_reference(e) for e in references(result.value)]
        if not refs or not all(r is not None and (t := spec.task(r[0])) is not None
                               and r[1] in _results(t) for r in refs):
            out.append(f"results[{result.name}]: {result.value!r} must reference declared results as $(tasks.<task>.results.<name>)")
    return out


def run_problems(spec: PipelineSpec, params: dict[str, str],
                 bindings: list[WorkspaceBinding]) -> list[tuple[str, str]]:
    """(reason, message) of everything that keeps this run from starting."""
    out = [(INVALID, p) for p in problems(spec)]
    declared = {p.name: p for p in spec.params}
    for name, p in declared.items():
        if p.default is None and name not in params:
            out.append((PARAMETER_MISSING, f"param {name} has no value and no default"))
    for name in sorted(set(params) - set(declared)):
        out.append((INVALID, f"param {name} is not declared by the pipeline"))
    bound = {b.name for b in bindings}
    for w in spec.workspaces:
        if not w.optional and w.name not in bound:
            out.append((WORKSPACES, f"workspace {w.name} is not bound by the run"))
    for name in sorted(bound - {w.name for w in spec.workspaces}):
        out.append((WORKSPACES, f"workspaces[{name}] is not a workspace of the pipeline"))
    return out


def param_values(spec: PipelineSpec, given: dict[str, str]) -> dict[str, str]:
    """The run's params with the pipeline's defaults filled in."""
    out = {p.name: p.default for p in spec.params if p.default is not None}
    out.update(given)
    return out
