"""The pure DAG state (pipeline/dag.py): what starts, what is skipped, when finally runs, the run's condition."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mpcloud_operator.pipeline import dag
from mpcloud_operator.pipeline.dag import Attempt, Observed, RunInput
from mpcloud_operator.pipeline.model import PipelineSpec

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
IMAGE = "mpcloud.local/debian-python:1"


def task(name: str, after=(), params=None, when=None, results=(), retries=0, task_params=()) -> dict:
    return {"name": name, "runAfter": list(after), "retries": retries,
            "params": [{"name": k, "value": v} for k, v in (params or {}).items()],
            "when": when or [],
            "taskSpec": {"params": [{"name": p} for p in task_params], "results": [{"name": r} for r in results],
                         "steps": [{"name": "run", "image": IMAGE, "script": "true"}]}}


def spec(tasks, final=(), params=(), results=()) -> PipelineSpec:
    return PipelineSpec.model_validate({"tasks": list(tasks), "finally": list(final), "params": list(params),
                                        "results": list(results)})


def run(s: PipelineSpec, observed=None, now=T0, params=None, **kw) -> dag.Plan:
    obs = {k: (v if isinstance(v, Observed) else Observed(tuple(v))) for k, v in (observed or {}).items()}
    return dag.plan(RunInput(s, params or {}, obs, start=T0, now=now, context={"context.pipelineRun.name": "r"},
                             **kw))


def ok(n=1, results=None) -> Attempt:
    return Attempt(n, "Succeeded", f"j{n}", results=results or {}, start=T0, finish=T0)


def bad(n=1, state="Failed") -> Attempt:
    return Attempt(n, state, f"j{n}", reason="Error", message="step run exited with code 1", start=T0, finish=T0)


def running(n=1) -> Attempt:
    return Attempt(n, "Running", f"job-{n}", start=T0)


def started(p: dag.Plan) -> list[tuple[str, int]]:
    return sorted((s.task, s.attempt) for s in p.start)


def statuses(p: dag.Plan) -> dict[str, str]:
    return {t.name: t.status for t in p.tasks}


DIAMOND = [task("a", results=["x"]), task("b", after=["a"]), task("c", params={"v": "$(tasks.a.results.x)"},
                                                                  task_params=["v"]),
           task("d", after=["b", "c"])]


def test_roots_start_first_and_parallel_branches_start_together():
    s = spec(DIAMOND)
    p = run(s)
    assert started(p) == [("a", 1)]
    assert statuses(p) == {"a": "Running", "b": "Pending", "c": "Pending", "d": "Pending"}
    p = run(s, {"a": [ok(results={"x": "42"})]})
    assert started(p) == [("b", 1), ("c", 1)]
    assert {s.task: s.params for s in p.start}["c"] == {"v": "42"}  # the result travels into the param
    p = run(s, {"a": [ok(results={"x": "42"})], "b": [ok()], "c": [running()]})
    assert started(p) == []  # d waits for both branches
    assert p.state("d").message == "waiting for c"
    p = run(s, {"a": [ok(results={"x": "42"})], "b": [ok()], "c": [ok()]})
    assert started(p) == [("d", 1)]


def test_all_succeeded_is_succeeded_with_tektons_message():
    p = run(spec(DIAMOND), {n: [ok(results={"x": "1"})] for n in "abcd"})
    assert p.done and p.condition == ("True", "Succeeded", "Tasks Completed: 4 (Failed: 0, Cancelled 0), Skipped: 0")
    assert p.wake_after is None


def test_running_message_counts_incomplete():
    p = run(spec(DIAMOND), {"a": [running()]})
    assert p.condition == ("Unknown", "Running",
                           "Tasks Completed: 0 (Failed: 0, Cancelled 0), Skipped: 0, Incomplete: 4")


def test_when_false_skips_only_that_task_and_tasks_needing_its_results():
    s = spec([task("gate", when=[{"input": "$(params.env)", "operator": "in", "values": ["prod"]}], results=["r"]),
              task("after", after=["gate"]),
              task("reader", params={"v": "$(tasks.gate.results.r)"}, task_params=["v"])],
             params=[{"name": "env", "default": "dev"}])
    p = run(s, params={"env": "dev"})
    assert statuses(p) == {"gate": "Skipped", "after": "Running", "reader": "Skipped"}
    assert p.state("gate").reason == "WhenExpressionsFalse" and "'dev'" in p.state("gate").message
    assert p.state("reader").reason == "ResultsMissing"
    p = run(s, {"after": [ok()]}, params={"env": "dev"})
    assert p.condition[:2] == ("True", "Completed")
    assert p.condition[2] == "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 2"
    assert started(run(s, params={"env": "prod"})) == [("gate", 1)]


def test_notin_operator():
    s = spec([task("t", when=[{"input": "a", "operator": "notin", "values": ["a", "b"]}])])
    assert statuses(run(s)) == {"t": "Skipped"}


def test_a_failure_stops_the_dag_and_finally_runs_after_it():
    s = spec([task("a"), task("b"), task("c", after=["a"])], final=[task("report")])
    p = run(s, {"a": [bad()], "b": [running()]})
    assert statuses(p) == {"a": "Failed", "b": "Running", "c": "Skipped", "report": "Pending"}
    assert p.state("c").reason == "PipelineRunStopping" and started(p) == []
    p = run(s, {"a": [bad()], "b": [ok()]})
    assert started(p) == [("report", 1)]
    p = run(s, {"a": [bad()], "b": [ok()], "report": [ok()]})
    assert p.done and p.condition == ("False", "Failed", "Tasks Completed: 3 (Failed: 1, Cancelled 0), Skipped: 1")


def test_finally_reads_task_status_and_a_failed_finally_fails_the_run():
    s = spec([task("a"), task("b")], final=[
        task("notify", params={"s": "$(tasks.a.status)", "all": "$(tasks.status)"}, task_params=["s", "all"],
             when=[{"input": "$(tasks.a.status)", "operator": "in", "values": ["Failed"]}])])
    p = run(s, {"a": [bad()], "b": [ok()]})
    assert [(x.task, x.params) for x in p.start] == [("notify", {"s": "Failed", "all": "Failed"})]
    assert statuses(run(s, {"a": [ok()], "b": [ok()]}))["notify"] == "Skipped"
    p = run(spec([task("a")], final=[task("f")]), {"a": [ok()], "f": [bad()]})
    assert p.condition[:2] == ("False", "Failed")


def test_retries_start_the_next_attempt_then_fail_for_good():
    s = spec([task("flaky", retries=2), task("next", after=["flaky"])])
    p = run(s, {"flaky": [bad(1)]})
    assert started(p) == [("flaky", 2)] and p.state("flaky").reason == "Retrying"
    assert "attempt 1 failed" in p.state("flaky").message
    assert started(run(s, {"flaky": [bad(1), running(2)]})) == []
    assert started(run(s, {"flaky": [bad(1), bad(2, "TimedOut")]})) == [("flaky", 3)]
    p = run(s, {"flaky": [bad(1), bad(2), bad(3)]})
    assert statuses(p) == {"flaky": "Failed", "next": "Skipped"} and p.done
    p = run(s, {"flaky": [bad(1), ok(2)]})
    assert started(p) == [("next", 1)]


def test_retry_params_see_upstream_results_whatever_the_spec_order():
    s = spec([task("late", params={"v": "$(tasks.early.results.x)"}, task_params=["v"], retries=1),
              task("early", results=["x"])])
    p = run(s, {"early": [ok(results={"x": "7"})], "late": [bad(1)]})
    assert [(x.task, x.attempt, x.params) for x in p.start] == [("late", 2, {"v": "7"})]


def test_tasks_timeout_stops_running_tasks_and_starts_finally():
    s = spec([task("slow"), task("later", after=["slow"])], final=[task("cleanup")])
    p = run(s, {"slow": [running()]}, now=T0 + timedelta(seconds=30), tasks_timeout=60)
    assert started(p) == [] and 29 <= p.wake_after <= 30
    p = run(s, {"slow": [running()]}, now=T0 + timedelta(seconds=61), tasks_timeout=60)
    assert [(x.task, x.state) for x in p.stop] == [("slow", "TimedOut")]
    assert statuses(p) == {"slow": "TimedOut", "later": "Skipped", "cleanup": "Running"}
    assert started(p) == [("cleanup", 1)]
    p = run(s, {"slow": [Attempt(1, "TimedOut", "j", reason="PipelineRunTimeout")],
                "later": Observed(skipped=("PipelineRunTimeout", "")), "cleanup": [ok()]},
            now=T0 + timedelta(seconds=70), tasks_timeout=60)
    assert p.done and p.condition[:2] == ("False", "PipelineRunTimeout")


def test_pipeline_timeout_stops_everything_including_finally():
    s = spec([task("a")], final=[task("f")])
    p = run(s, {"a": [bad()], "f": [running()]}, now=T0 + timedelta(hours=2), pipeline_timeout=3600)
    assert [(x.task, x.state) for x in p.stop] == [("f", "TimedOut")]
    assert p.done and p.condition[:2] == ("False", "PipelineRunTimeout")
    p = run(s, {"a": [running()]}, now=T0 + timedelta(hours=2), pipeline_timeout=3600)
    assert statuses(p) == {"a": "TimedOut", "f": "Skipped"} and p.condition[1] == "PipelineRunTimeout"


def test_finally_timeout_counts_from_its_start():
    s = spec([task("a")], final=[task("f")])
    f_run = Attempt(1, "Running", "jf", start=T0 + timedelta(seconds=100))
    p = run(s, {"a": [ok()], "f": [f_run]}, now=T0 + timedelta(seconds=150), finally_timeout=60)
    assert not p.stop and 9 <= p.wake_after <= 10
    p = run(s, {"a": [ok()], "f": [f_run]}, now=T0 + timedelta(seconds=161), finally_timeout=60)
    assert [(x.task, x.state) for x in p.stop] == [("f", "TimedOut")]


def test_cancelled_stops_running_skips_the_rest_and_no_finally():
    s = spec([task("a"), task("b", after=["a"])], final=[task("f")])
    p = run(s, {"a": [running()]}, cancel="Cancelled")
    assert [(x.task, x.job_name, x.state) for x in p.stop] == [("a", "job-1", "Cancelled")]
    assert statuses(p) == {"a": "Cancelled", "b": "Skipped", "f": "Skipped"}
    assert p.done and p.condition[:2] == ("False", "Cancelled") and 'PipelineRun "r" was cancelled' in p.condition[2]


def test_cancelled_run_finally_runs_finally_and_stopped_lets_running_finish():
    s = spec([task("a"), task("b", after=["a"])], final=[task("f")])
    p = run(s, {"a": [running()]}, cancel="CancelledRunFinally")
    assert [x.task for x in p.stop] == ["a"] and started(p) == [("f", 1)]
    p = run(s, {"a": [running()]}, cancel="StoppedRunFinally")
    assert not p.stop and statuses(p) == {"a": "Running", "b": "Skipped", "f": "Pending"}
    p = run(s, {"a": [ok()], "b": Observed(skipped=("PipelineRunCancelled", "")), "f": [ok()]},
            cancel="StoppedRunFinally")
    assert p.done and p.condition[:2] == ("False", "Cancelled") and "stopped" in p.condition[2]


def test_recorded_skips_are_sticky_after_the_cancel_is_removed():
    s = spec([task("a"), task("b", after=["a"])])
    p = run(s, {"a": [ok()], "b": Observed(skipped=("PipelineRunCancelled", "the run was cancelled"))})
    assert started(p) == [] and p.done


def test_a_result_a_succeeded_task_did_not_write_fails_its_consumer():
    s = spec([task("a", results=["x"]), task("b", params={"v": "$(tasks.a.results.x)"}, task_params=["v"])])
    p = run(s, {"a": [ok(results={})]})
    assert p.state("b").status == "Failed" and p.state("b").reason == "InvalidTaskResultReference"
    assert p.done and p.condition[1] == "Failed"


def test_pipeline_results_and_context():
    s = spec([task("a", results=["x"], params={"who": "$(context.pipelineRun.name)"}, task_params=["who"])],
             results=[{"name": "out", "value": "v=$(tasks.a.results.x)"}])
    assert run(s).start[0].params == {"who": "r"}
    assert run(s, {"a": [ok(results={"x": "9"})]}).results == {"out": "v=9"}


@pytest.mark.parametrize("n", [1, 5])
def test_a_chain_runs_one_after_another(n):
    s = spec([task("t0")] + [task(f"t{i}", after=[f"t{i - 1}"]) for i in range(1, n)])
    for i in range(n):
        p = run(s, {f"t{j}": [ok()] for j in range(i)})
        assert started(p) == [(f"t{i}", 1)]
