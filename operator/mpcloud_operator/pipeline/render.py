"""Draw a `graph.Graph` to PNG or SVG with matplotlib (the thin layer over the pure layout; no graphviz needed).

Boxes in the graph's columns and rows, filled by task state; solid arrows for runAfter, dashed for result
references; the finally tasks in a dashed group box after the DAG; a legend of the states present and the run's
message as the caption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from mpcloud_operator.pipeline.graph import COLOURS, Graph

BOX_W, BOX_H, GAP_X, GAP_Y = 2.2, 0.8, 1.2, 0.5


def _centre(column: int, row: int) -> tuple[float, float]:
    return column * (BOX_W + GAP_X) + BOX_W / 2, -row * (BOX_H + GAP_Y) - BOX_H / 2


def render(graph: Graph, path: str | Path | BinaryIO, dpi: int = 150, fmt: str | None = None) -> Any:
    """Write the drawing to `path` (format from its suffix) or to a binary stream (`fmt`); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    if isinstance(path, str):
        path = Path(path)
    fmt = fmt or (path.suffix.lstrip(".") if isinstance(path, Path) else "svg") or "png"
    width = max(graph.columns, 1) * (BOX_W + GAP_X)
    height = max(graph.rows, 1) * (BOX_H + GAP_Y)
    fig, ax = plt.subplots(figsize=(max(4.0, width * 0.9), max(2.0, height * 0.9 + 1.2)))
    ax.set_xlim(-0.4, width - GAP_X + 0.4)
    ax.set_ylim(-height - 0.2, 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    finally_nodes = [n for n in graph.nodes if n.finally_]
    if finally_nodes:
        x = finally_nodes[0].column * (BOX_W + GAP_X) - 0.25
        rows = max(n.row for n in finally_nodes) + 1
        ax.add_patch(FancyBboxPatch((x, -rows * (BOX_H + GAP_Y) + GAP_Y / 2 - 0.15), BOX_W + 0.5,
                                    rows * (BOX_H + GAP_Y) - GAP_Y / 2 + 0.3, boxstyle="round,pad=0.02",
                                    fill=False, linestyle="--", edgecolor="#757575"))
        ax.text(x + 0.1, 0.25, "finally", fontsize=9, color="#616161", style="italic")
    for node in graph.nodes:
        cx, cy = _centre(node.column, node.row)
        ax.add_patch(FancyBboxPatch((cx - BOX_W / 2, cy - BOX_H / 2), BOX_W, BOX_H, boxstyle="round,pad=0.05",
                                    facecolor=node.colour, edgecolor="#424242", linewidth=1))
        dark = node.state in ("Succeeded", "Failed", "TimedOut", "Running", "Cancelled")
        ax.text(cx, cy + (0.1 if node.detail else 0), node.name, ha="center", va="center", fontsize=9,
                color="white" if dark else "#212121", weight="bold")
        if node.detail:
            ax.text(cx, cy - 0.22, node.detail[:28], ha="center", va="center", fontsize=6.5,
                    color="white" if dark else "#424242")
    for edge in graph.edges:
        s, t = graph.node(edge.source), graph.node(edge.target)
        (sx, sy), (tx, ty) = _centre(s.column, s.row), _centre(t.column, t.row)
        ax.add_patch(FancyArrowPatch((sx + BOX_W / 2 + 0.05, sy), (tx - BOX_W / 2 - 0.05, ty),
                                     arrowstyle="-|>", mutation_scale=10, color="#616161", linewidth=1,
                                     linestyle="-" if edge.kind == "runAfter" else "--",
                                     # an edge over a column bends around the boxes it would cross
                                     connectionstyle=f"arc3,rad={-0.35 if t.column - s.column > 1 else 0.0}"))
    present = [s for s in COLOURS if s in graph.counts]
    ax.legend(handles=[Patch(facecolor=COLOURS[s], edgecolor="#424242", label=f"{s} ({graph.counts[s]})")
                       for s in present], loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(present), 4),
              fontsize=8, frameon=False)
    if graph.title:
        ax.set_title(graph.title, fontsize=11)
    if graph.message:
        fig.text(0.5, 0.01, graph.message, ha="center", fontsize=8, color="#424242")
    fig.savefig(path, dpi=dpi, bbox_inches="tight", format=fmt)
    plt.close(fig)
    return path
