"""A pipeline's DAG as a laid-out graph, coloured by task state: the description `mpcloud pipeline graph` draws
(and the web console will), from (pipeline spec, run status) — pure, no drawing library.

Layout, as a layered (Sugiyama-style) drawing reduced to what small pipelines need: a task's column is the
length of its longest dependency chain (runAfter and result references, `validate.dependencies`); within a
column, tasks are ordered by the mean row of what they wait for (one barycentre pass: few crossings for
fan-out/fan-in shapes), ties in declaration order. Finally tasks form a group in the column after the DAG, with
no edges: they start when every DAG task is done, whatever its outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mpcloud_operator.pipeline.model import PipelineSpec
from mpcloud_operator.pipeline.validate import dependencies, find_cycle

STATES = ("Succeeded", "Failed", "TimedOut", "Running", "Skipped", "Cancelled", "Pending")
COLOURS = {  # fill, as the usual CI palettes: green done, red failed, blue running, grey skipped, amber cancelled
    "Succeeded": "#4caf50", "Failed": "#e53935", "TimedOut": "#b71c1c", "Running": "#1e88e5",
    "Skipped": "#bdbdbd", "Cancelled": "#fb8c00", "Pending": "#f5f5f5",
}


@dataclass(frozen=True)
class Node:
    name: str
    state: str
    column: int
    row: int
    finally_: bool = False
    detail: str = ""  # reason, attempt: what a tooltip or a second line shows

    @property
    def colour(self) -> str:
        return COLOURS.get(self.state, COLOURS["Pending"])


@dataclass(frozen=True)
class Edge:
    source: str  # the task waited for
    target: str
    kind: str  # runAfter | result (a result or status reference)


@dataclass(frozen=True)
class Graph:
    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    message: str = ""
    columns: int = 0
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def task_states(status: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """name -> (state, detail) from a PipelineRun's status.tasks."""
    out = {}
    for t in (status or {}).get("tasks") or []:
        detail = ", ".join(x for x in (t.get("reason") or "",
                                       f"attempt {t['attempt']}" if (t.get("attempt") or 1) > 1 else "") if x)
        out[t["name"]] = (t.get("status") or "Pending", detail)
    return out


def build(spec: PipelineSpec, status: dict[str, Any] | None = None, title: str = "") -> Graph:
    """The laid-out graph of `spec`, coloured by `status` (a PipelineRun's; None: every task Pending)."""
    deps = {t.name: dependencies(t) & {u.name for u in spec.tasks} for t in spec.tasks}
    if find_cycle(deps):
        raise ValueError(f"the pipeline has a cycle: {' -> '.join(find_cycle(deps) or [])}")
    column: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in column:
            column[name] = 1 + max((depth(d) for d in deps[name]), default=-1)
        return column[name]

    for t in spec.tasks:
        depth(t.name)
    order = {t.name: i for i, t in enumerate(spec.tasks)}
    rows: dict[str, int] = {}
    for c in range(max(column.values(), default=-1) + 1):
        here = [n for n in order if column[n] == c]
        here.sort(key=lambda n: (sum(rows[d] for d in deps[n]) / len(deps[n]) if deps[n] else order[n], order[n]))
        rows.update({n: i for i, n in enumerate(here)})
    states = task_states(status)
    pending = ("Pending", "")
    nodes = [Node(t.name, states.get(t.name, pending)[0], column[t.name], rows[t.name],
                  detail=states.get(t.name, pending)[1]) for t in spec.tasks]
    final_column = max(column.values(), default=-1) + 1
    nodes += [Node(f.name, states.get(f.name, pending)[0], final_column, i, finally_=True,
                   detail=states.get(f.name, pending)[1]) for i, f in enumerate(spec.finally_)]
    edges = [Edge(d, t.name, "runAfter" if d in t.run_after else "result")
             for t in spec.tasks for d in sorted(deps[t.name], key=order.__getitem__)]
    counts = {s: sum(1 for n in nodes if n.state == s) for s in STATES if any(n.state == s for n in nodes)}
    succeeded = next((c for c in (status or {}).get("conditions") or [] if c.get("type") == "Succeeded"), {})
    return Graph(title=title, nodes=tuple(nodes), edges=tuple(edges), message=succeeded.get("message", ""),
                 columns=final_column + (1 if spec.finally_ else 0),
                 rows=max((n.row + 1 for n in nodes), default=0), counts=counts)


def as_text(graph: Graph) -> str:
    """The graph as lines, column by column (what the CLI prints without -o)."""
    lines = [graph.title] if graph.title else []
    for c in range(graph.columns):
        column = sorted((n for n in graph.nodes if n.column == c), key=lambda n: n.row)
        head = "finally" if column and column[0].finally_ else f"stage {c + 1}"
        cells = []
        for n in column:
            waits = [e.source for e in graph.edges if e.target == n.name]
            cells.append(f"{n.name} [{n.state}{': ' + n.detail if n.detail else ''}]"
                         + (f" <- {', '.join(waits)}" if waits else ""))
        lines.append(f"{head}: " + "; ".join(cells))
    if graph.message:
        lines.append(graph.message)
    return "\n".join(lines)
