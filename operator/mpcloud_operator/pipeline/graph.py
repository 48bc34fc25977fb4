"""A pipeline's DAG as an SVG picture, coloured by task state: pure, no graphviz (none on this host).

Layout (Sugiyama's first steps, enough for CI pipelines of a few dozen tasks): a task's column is the length of
the longest dependency path to it; within a column tasks are ordered by the mean row of what they depend on
(one barycentre pass, ties by name); finally tasks form a last column behind a dashed line. Edges are the DAG's
edges (runAfter and result references), drawn as curves from the right of a task to the left of its dependant.

    svg = render(spec, states={"build": "Succeeded", ...}, title="shop-ci-x7k2p")
"""

from __future__ import annotations

from html import escape

from mpcloud_operator.pipeline.model import PipelineSpec
from mpcloud_operator.pipeline.validate import dependencies

COLOURS = {  # fill, stroke
    "Succeeded": ("#d4f4dd", "#1e8e3e"), "Failed": ("#fde2e1", "#d93025"), "TimedOut": ("#fde2e1", "#d93025"),
    "Cancelled": ("#f1e4f9", "#8e24aa"), "Running": ("#e1ecfd", "#1a73e8"), "Skipped": ("#f1f3f4", "#9aa0a6"),
    "Pending": ("#ffffff", "#5f6368"),
}
BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 150, 44, 60, 24, 20


def layers(spec: PipelineSpec) -> list[list[str]]:
    """Columns of DAG task names (callers validated there is no cycle), each ordered for few crossings."""
    deps = {t.name: {d for d in dependencies(t) if d in {u.name for u in spec.tasks}} for t in spec.tasks}
    column: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in column:
            column[name] = 1 + max((depth(d) for d in deps[name]), default=-1)
        return column[name]

    for t in spec.tasks:
        depth(t.name)
    cols: list[list[str]] = [[] for _ in range(max(column.values(), default=-1) + 1)]
    for t in spec.tasks:
        cols[column[t.name]].append(t.name)
    rows: dict[str, float] = {}
    for i, col in enumerate(cols):
        if i:
            col.sort(key=lambda n: (sum(rows[d] for d in deps[n]) / len(deps[n]) if deps[n] else 0.0, n))
        rows.update({n: float(r) for r, n in enumerate(col)})
    return cols


def render(spec: PipelineSpec, states: dict[str, str] | None = None, title: str = "") -> str:
    """The SVG document."""
    states = states or {}
    cols = layers(spec)
    finally_col = [t.name for t in spec.finally_]
    all_cols = cols + ([finally_col] if finally_col else [])
    height_rows = max((len(c) for c in all_cols), default=1)
    top = MARGIN + (24 if title else 0)
    width = MARGIN * 2 + len(all_cols) * BOX_W + (len(all_cols) - 1) * GAP_X
    height = top + MARGIN + height_rows * BOX_H + (height_rows - 1) * GAP_Y
    pos: dict[str, tuple[float, float]] = {}
    for i, col in enumerate(all_cols):
        x = MARGIN + i * (BOX_W + GAP_X)
        offset = (height_rows - len(col)) * (BOX_H + GAP_Y) / 2
        for r, name in enumerate(col):
            pos[name] = (x, top + offset + r * (BOX_H + GAP_Y))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    if title:
        out.append(f'<text x="{MARGIN}" y="{MARGIN + 6}" font-size="15" font-weight="bold">{escape(title)}</text>')
    for t in spec.tasks:
        x2, y2 = pos[t.name]
        for d in sorted(dependencies(t)):
            if d not in pos or d in finally_col:
                continue
            x1, y1 = pos[d]
            a, b = (x1 + BOX_W, y1 + BOX_H / 2), (x2, y2 + BOX_H / 2)
            mid = (a[0] + b[0]) / 2
            out.append(f'<path d="M{a[0]:.0f},{a[1]:.0f} C{mid:.0f},{a[1]:.0f} {mid:.0f},{b[1]:.0f} '
                       f'{b[0] - 6:.0f},{b[1]:.0f}" fill="none" stroke="#5f6368" stroke-width="1.5"/>')
            out.append(f'<path d="M{b[0] - 6:.0f},{b[1] - 4:.0f} L{b[0]:.0f},{b[1]:.0f} L{b[0] - 6:.0f},'
                       f'{b[1] + 4:.0f} Z" fill="#5f6368"/>')
    if finally_col:
        fx = MARGIN + len(cols) * (BOX_W + GAP_X) - GAP_X / 2
        out.append(f'<line x1="{fx:.0f}" y1="{top - 8}" x2="{fx:.0f}" y2="{height - MARGIN / 2:.0f}" '
                   'stroke="#9aa0a6" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{fx + 6:.0f}" y="{top - 10 + 10}" fill="#5f6368" font-size="11">finally</text>')
    for name, (x, y) in pos.items():
        state = states.get(name, "")
        fill, stroke = COLOURS.get(state, COLOURS["Pending"])
        out.append(f'<g><title>{escape(name)}{": " + escape(state) if state else ""}</title>'
                   f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" '
                   f'stroke="{stroke}" stroke-width="2"/>'
                   f'<text x="{x + BOX_W / 2:.0f}" y="{y + (19 if state else 27):.0f}" text-anchor="middle">'
                   f'{escape(name[:20])}</text>')
        if state:
            out.append(f'<text x="{x + BOX_W / 2:.0f}" y="{y + 35:.0f}" text-anchor="middle" font-size="11" '
                       f'fill="{stroke}">{escape(state)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
