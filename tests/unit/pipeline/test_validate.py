"""What the schema cannot check (pipeline/validate.py) and the model's CEL mirrors (pipeline/model.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mpcloud_operator.pipeline import validate
from mpcloud_operator.pipeline.model import PipelineRunSpec, PipelineSpec, WorkspaceBinding, seconds
from tests.unit.pipeline.test_dag import spec, task


def test_cycles_are_found_through_run_after_and_result_references():
    s = spec([task("a", after=["c"]), task("b", params={"v": "$(tasks.a.results.x)"}, task_params=["v"]),
              task("c", after=["b"], results=["x"])])
    found = validate.problems(s)
    assert found[0] == "the tasks form a cycle: a -> c -> b -> a"
    assert validate.find_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None
    assert validate.find_cycle({"x": {"x"}}) == ["x", "x"]


def test_unknown_references_are_named_with_where_they_are():
    s = spec([task("a", results=["x"]),
              task("b", params={"v": "$(tasks.a.results.nope)", "w": "$(params.missing)"}, task_params=["v", "w"]),
              task("c", params={"v": "$(tasks.ghost.results.x)", "s": "$(tasks.a.status)"}, task_params=["v", "s"])])
    found = "\n".join(validate.problems(s))
    assert "task b params[v]: $(tasks.a.results.nope): task a declares no result nope" in found
    assert "task b params[w]: $(params.missing) names a param the pipeline does not declare" in found
    assert "task c params[v]: $(tasks.ghost.results.x) names no task of tasks[]" in found
    assert "task status is only known to finally tasks" in found


def test_step_references_params_results_workspaces():
    t = task("a", results=["r"])
    t["taskSpec"]["steps"][0]["script"] = "echo $(params.p) $(results.r.path) $(results.q.path) $(workspaces.w.path)"
    found = validate.problems(spec([t], params=[{"name": "p"}]))  # pipeline params propagate into steps
    assert found == ["task a steps[run].script: $(results.q.path) names no param, result or workspace of the task",
                     "task a steps[run].script: $(workspaces.w.path) names no param, result or workspace of the task"]


def test_task_params_need_values():
    found = validate.problems(spec([task("a", task_params=["p"]), task("b", params={"extra": "1"})]))
    assert "task a: param p has no value and no default" in found
    assert "task b: param extra is not declared by its taskSpec" in found


def test_run_problems_params_and_workspaces():
    s = PipelineSpec.model_validate({
        "params": [{"name": "req"}, {"name": "opt", "default": "x"}], "workspaces": [{"name": "src"}],
        "tasks": [task("a")]})
    found = validate.run_problems(s, {"other": "1"}, [WorkspaceBinding(name="nope", emptyDir={})])
    assert ("ParameterMissing", "param req has no value and no default") in found
    assert ("PipelineValidationFailed", "param other is not declared by the pipeline") in found
    assert ("InvalidWorkspaceBindings", "workspace src is not bound by the run") in found
    assert validate.param_values(s, {"req": "1"}) == {"opt": "x", "req": "1"}


@pytest.mark.parametrize("body, message", [
    ({"tasks": [task("a", after=["b"])]}, "runAfter must name other tasks"),
    ({"tasks": [task("a", after=["a"])]}, "runAfter must name other tasks"),
    ({"tasks": [task("a")], "finally": [task("a")]}, "may not have the name of a task"),
    ({"tasks": [task("a")], "finally": [task("f", after=["a"])]}, "finally tasks cannot have runAfter"),
    ({"tasks": [task("a"), task("a")]}, "duplicate name"),
    ({"tasks": []}, "at least 1 item"),
])
def test_cel_mirrors(body, message):
    with pytest.raises(ValidationError, match=message):
        PipelineSpec.model_validate(body)


def test_step_script_xor_command_and_run_rules():
    t = task("a")
    t["taskSpec"]["steps"][0]["command"] = ["true"]
    with pytest.raises(ValidationError, match="exactly one of script and command"):
        PipelineSpec.model_validate({"tasks": [t]})
    with pytest.raises(ValidationError, match="exactly one of pipelineRef and pipelineSpec"):
        PipelineRunSpec.model_validate({})
    with pytest.raises(ValidationError, match="must not exceed timeouts.pipeline"):
        PipelineRunSpec.model_validate({"pipelineRef": {"name": "p"},
                                        "timeouts": {"pipeline": "10m", "tasks": "9m", "finally": "2m"}})
    assert seconds("1h30m") == 5400 and seconds("0s") is None and seconds("1.5s") == 1.5 and seconds("250ms") == 0.25


def test_builtin_tasks_references_conditions_and_edges():
    canary = {"name": "canary", "canary": {"app": "$(params.app)", "image": "$(tasks.build.results.image)", "steps": [
        {"weight": 20}, {"analysis": {"name": "m", "query": "q{x=\"$(params.nope)\"}", "successCondition": "result <"}},
        {"analysis": {"name": "m", "query": "q", "failureCondition": "result > 1"}}]}}
    deploy = {"name": "fn", "deploy": {"function": "todo", "source": {"inline": {"files": {
        "index.js": "const s = `$(not.a.reference)`"}}}}}  # code: not substituted, not checked
    s = spec([task("build", results=["image"]), canary, deploy], params=[{"name": "app"}])
    found = validate.problems(s)
    assert found == [
        "task canary canary.steps[1].analysis.query: $(params.nope) names a param the pipeline does not declare",
        "task canary canary.steps[1].analysis.successCondition 'result <': the condition ends too early",
        "task canary canary.steps[2].analysis: name m is used by an earlier analysis"]
    assert validate.dependencies(s.task("canary")) == {"build"}
    bad = spec([task("a"), {"name": "b", "deploy": {"app": "shop", "image": "$(tasks.a.results.image)"}},
                {"name": "c", "deploy": {"app": "shop", "image": "i"}}, task("d", params={"x": "$(tasks.c.results.y)"},
                                                                        task_params=["x"])])
    found = validate.problems(bad)
    assert "task b deploy.image: $(tasks.a.results.image): task a declares no result image" in found
    assert "task d params[x]: $(tasks.c.results.y): task c declares no result y" in found


@pytest.mark.parametrize("body, message", [
    ({"name": "x"}, "exactly one of taskSpec, deploy and canary"),
    ({"name": "x", "deploy": {"app": "a", "image": "i"}, "taskSpec": {"steps": [
        {"name": "s", "image": "i", "script": "true"}]}}, "exactly one of taskSpec, deploy and canary"),
    ({"name": "x", "deploy": {"app": "a", "image": "i"}, "params": [{"name": "p", "value": "v"}]},
     "deploy and canary tasks take no params"),
    ({"name": "x", "deploy": {"app": "a"}}, "deploy sets app with image"),
    ({"name": "x", "deploy": {"function": "f", "image": "i"}}, "deploy sets app with image"),
    ({"name": "x", "deploy": {"function": "f", "source": {}}}, "exactly one of inline and configMapRef"),
])
def test_builtin_cel_mirrors(body, message):
    from mpcloud_operator.pipeline.model import PipelineTask

    with pytest.raises(ValidationError, match=message):
        PipelineTask.model_validate(body)


def test_the_release_example_is_valid_and_its_canary_waits_for_the_tests():
    import yaml

    from tests.unit.pipeline.test_graph import ROOT

    body = yaml.safe_load((ROOT / "examples" / "pipeline" / "release.yaml").read_text())
    s = PipelineSpec.model_validate(body["spec"])
    assert validate.problems(s) == []
    canary = s.task("canary")
    assert canary.builtin == "canary" and validate.dependencies(canary) == {"unit-tests"}
    assert [st.weight or st.pause or st.analysis.name for st in canary.canary.steps] == [
        25, "30s", "error-rate", 50, "error-rate-at-50"]
