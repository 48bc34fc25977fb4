"""The pipeline graph: layout (columns by longest dependency chain, rows by barycentre), edges, states, finally
group; the text form; the matplotlib renderer writes PNG and SVG; the CLI's offline path and run body."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mpcloud_operator.cli import main
from mpcloud_operator.commands.pipeline import run_body, spec_from_file
from mpcloud_operator.pipeline import graph
from mpcloud_operator.pipeline.model import PipelineSpec

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "pipeline" / "pipeline.yaml"


def task(name, run_after=(), params=()):
    return {"name": name, "runAfter": list(run_after), "params": [{"name": k, "value": v} for k, v in params],
            "taskSpec": {"params": [{"name": k} for k, _ in params],
                         "steps": [{"name": "s", "image": "busybox", "script": "true"}]}}


def spec(**kw):
    return PipelineSpec.model_validate({
        "tasks": [task("a"), task("b", ["a"]), task("c", ["a"]), task("d", ["b", "c"]),
                  task("e", params=[("x", "$(tasks.d.results.r)")])],
        "finally": [task("notify"), task("cleanup")], **kw})


def test_columns_rows_and_edges():
    g = graph.build(spec())
    cols = {n.name: n.column for n in g.nodes}
    assert cols == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3, "notify": 4, "cleanup": 4}
    assert (g.node("b").row, g.node("c").row) == (0, 1)
    assert {(e.source, e.target, e.kind) for e in g.edges} == {
        ("a", "b", "runAfter"), ("a", "c", "runAfter"), ("b", "d", "runAfter"), ("c", "d", "runAfter"),
        ("d", "e", "result")}
    assert [n.name for n in g.nodes if n.finally_] == ["notify", "cleanup"]
    assert (g.columns, g.rows) == (5, 2) and g.counts == {"Pending": 7}


def test_barycentre_orders_children_under_their_parents():
    s = PipelineSpec.model_validate({"tasks": [task("p1"), task("p2"), task("under-p2", ["p2"]),
                                               task("under-p1", ["p1"])]})
    g = graph.build(s)
    assert g.node("under-p1").row == g.node("p1").row == 0 and g.node("under-p2").row == 1


def test_states_come_from_the_run_status():
    status = {"tasks": [{"name": "a", "status": "Succeeded"}, {"name": "b", "status": "Failed", "attempt": 2,
                                                               "reason": "Error"},
                        {"name": "c", "status": "Running"}, {"name": "d", "status": "Skipped"},
                        {"name": "notify", "status": "Cancelled", "finally": True}],
              "conditions": [{"type": "Succeeded", "status": "False", "message": "Tasks Completed: 2 (Failed: 1)"}]}
    g = graph.build(spec(), status, "run x")
    assert [g.node(n).state for n in ("a", "b", "c", "d", "e", "notify")] == \
        ["Succeeded", "Failed", "Running", "Skipped", "Pending", "Cancelled"]
    assert g.node("b").detail == "Error, attempt 2" and g.node("a").colour == graph.COLOURS["Succeeded"]
    assert g.message.startswith("Tasks Completed") and g.counts["Pending"] == 2
    text = graph.as_text(g)
    assert "stage 3: d [Skipped] <- b, c" in text and "finally: notify [Cancelled]" in text


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_render(tmp_path, suffix, magic):
    from mpcloud_operator.pipeline.render import render

    out = render(graph.build(spec(), None, "p"), tmp_path / f"g{suffix}")
    assert out.read_bytes().startswith(magic)


def test_cli_graph_offline_from_the_example(tmp_path):
    result = CliRunner().invoke(main, ["pipeline", "graph", "--file", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "stage 3: package [Pending] <- version, unit-tests, lint" in result.output
    result = CliRunner().invoke(main, ["pipeline", "graph", "-f", str(EXAMPLE), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 0 and (tmp_path / "x.png").exists()
    assert CliRunner().invoke(main, ["pipeline", "graph", "-f", str(EXAMPLE), "-o", "x.gif"]).exit_code != 0
    assert CliRunner().invoke(main, ["pipeline", "graph"]).exit_code != 0


def test_spec_from_a_run_file(tmp_path):
    body = yaml.safe_load(EXAMPLE.read_text())
    run = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "PipelineRun", "metadata": {"name": "r"},
           "spec": {"pipelineRef": {"name": "shop-ci"}},
           "status": {"pipelineSpec": body["spec"], "tasks": [{"name": "version", "status": "Succeeded"}]}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    s, status, title = spec_from_file(tmp_path / "run.yaml")
    assert title == "PipelineRun r" and graph.build(s, status).node("version").state == "Succeeded"


def test_cli_run_body_takes_the_triggers_run_spec():
    pl = {"metadata": {"name": "shop", "namespace": "ci"},
          "spec": {"triggers": {"runSpec": {"timeouts": {"pipeline": "5m"}}}}}
    body = run_body(pl, [{"name": "revision", "value": "abc"}], unsandboxed=True)
    assert body["metadata"]["generateName"] == "shop-"
    assert body["spec"] == {"timeouts": {"pipeline": "5m"}, "sandbox": {"runtimeClassName": "none",
                            "allowUnsandboxed": True}, "pipelineRef": {"name": "shop"},
                            "params": [{"name": "revision", "value": "abc"}]}


def test_a_cycle_is_a_clear_error():
    # The schema refuses a self-reference; a spec built around it (model_construct) still gets a clear error.
    cyclic = PipelineSpec.model_validate({"tasks": [task("a")]}).tasks[0].model_copy(update={"run_after": ["a"]})
    with pytest.raises(ValueError, match="cycle"):
        graph.build(PipelineSpec.model_construct(tasks=[cyclic], finally_=[]))


def test_cli_graph_target_forms():
    # A file as TARGET (as --file), SVG on stdout with -o -, and a clear error for an unknown TARGET prefix.
    result = CliRunner().invoke(main, ["pipeline", "graph", str(EXAMPLE), "-o", "-"])
    assert result.exit_code == 0 and result.output.lstrip().startswith("<?xml") and "notify" in result.output
    result = CliRunner().invoke(main, ["pipeline", "graph", "job/x"])
    assert result.exit_code == 2 and "run/NAME" in result.output
