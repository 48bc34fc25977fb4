"""A PipelineRun through the real generic reconcile with the FakeClient: Jobs per attempt, results from the pod's
termination message, retries, cancellation, validation failures, and a restarted operator (no control plane)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from mpcloud_operator.kinds import KINDS
from mpcloud_operator.pipeline import resources
from mpcloud_operator.reconcile import children, runner
from mpcloud_operator.runtime import Runtime
from tests.fakes.kube import FakeClient, FakeWatch
from tests.unit.pipeline.test_dag import task

NS = "ci"
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def pipeline_run(name="r", spec=None, **run_spec) -> dict:
    body = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "PipelineRun",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1},
            "spec": {"sandbox": {"runtimeClassName": "none", "allowUnsandboxed": True}, **run_spec}}
    if spec is not None:
        body["spec"]["pipelineSpec"] = spec
    return body


class Cluster:
    def __init__(self, objects, now=T0) -> None:
        self.kube = FakeClient(objects)
        self.clock = [now]
        self.rt = self.runtime()

    def runtime(self) -> Runtime:
        """A fresh operator process over the same cluster (the watch caches list what exists)."""
        rt = Runtime.for_kinds(self.kube, KINDS, now=lambda: self.clock[0])
        rt.child_watches["Job"] = FakeWatch(self.kube, "Job")
        for (kind, ns, name), obj in list(self.kube.objects.items()):
            if kind in ("PipelineRun", "Pipeline"):
                rt.primaries.put((kind, ns, name), obj)
            if kind == "Job":
                children.on_child_event(rt, "ADDED", obj)
        return rt

    def reconcile(self, name="r") -> runner.Result:
        self.sync(name)
        return runner.reconcile(self.rt, self.rt.kinds["PipelineRun"], NS, name)

    def sync(self, name="r") -> None:
        self.rt.primaries.put(("PipelineRun", NS, name), self.kube.objects[("PipelineRun", NS, name)])

    def jobs(self) -> list[str]:
        return sorted(n for (k, _, n) in self.kube.objects if k == "Job")

    def finish(self, job: str, ok: bool = True, results: dict | None = None, reason: str = "BackoffLimitExceeded",
               log: str = "boom") -> None:
        obj = self.kube.objects[("Job", NS, job)]
        obj["status"] = {"startTime": "2026-12-03T12:00:00Z", "completionTime": "2026-12-03T12:00:05Z",
                         "conditions": [{"type": "Complete" if ok else "Failed", "status": "True",
                                         "reason": "" if ok else reason}]}
        names = [c["name"] for c in obj["spec"]["template"]["spec"].get("initContainers", [])]
        main = obj["spec"]["template"]["spec"]["containers"][0]["name"]
        statuses = [{"name": n, "state": {"terminated": {"exitCode": 0}}} for n in names]
        main_state = {"exitCode": 0, "message": json.dumps(results or {})} if ok else {"exitCode": 2, "message": log}
        self.kube.put({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"{job}-pod", "namespace": NS, "labels": {"batch.kubernetes.io/job-name": job},
            "creationTimestamp": "2026-12-03T12:00:00Z"},
            "status": {"phase": "Succeeded" if ok else "Failed", "initContainerStatuses": statuses,
                       "containerStatuses": [{"name": main, "state": {"terminated": main_state}}]}})
        children.on_child_event(self.rt, "MODIFIED", obj)

    def status(self, name="r") -> dict:
        return self.kube.objects[("PipelineRun", NS, name)].get("status") or {}

    def condition(self, name="r") -> tuple[str, str, str]:
        c = next(c for c in self.status(name)["conditions"] if c["type"] == "Succeeded")
        return c["status"], c["reason"], c["message"]

    def task(self, name: str, run="r") -> dict:
        return next(t for t in self.status(run)["tasks"] if t["name"] == name)


SPEC = {"tasks": [task("build", results=["digest"]),
                  task("test", after=["build"]),
                  task("deploy", params={"d": "$(tasks.build.results.digest)"}, task_params=["d"])],
        "finally": [task("report")]}


def test_a_run_goes_through_its_dag_and_results_travel():
    c = Cluster([pipeline_run(spec=SPEC)])
    assert c.reconcile().outcome == "ok"
    assert c.jobs() == ["r-build-1"]
    job = c.kube.objects[("Job", NS, "r-build-1")]
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-r"
    pod = job["spec"]["template"]["spec"]
    assert [x["name"] for x in pod["initContainers"]] == ["step-run"] and pod["containers"][0]["name"] == "results"
    assert pod["securityContext"]["runAsNonRoot"] and "runtimeClassName" not in pod
    assert c.condition()[:2] == ("Unknown", "Running") and c.status()["sandbox"] == "unsandboxed (opt-out)"
    assert c.status()["pipelineSpec"]["tasks"][0]["name"] == "build"
    c.finish("r-build-1", results={"digest": "sha256:abc"})
    c.reconcile()
    assert c.jobs() == ["r-build-1", "r-deploy-1", "r-test-1"]
    assert c.task("build")["results"] == [{"name": "digest", "value": "sha256:abc"}]
    deploy = c.kube.objects[("Job", NS, "r-deploy-1")]["spec"]["template"]
    assert deploy["metadata"]["labels"][resources.TASK_LABEL] == "deploy"
    c.finish("r-test-1")
    c.finish("r-deploy-1")
    c.reconcile()
    assert "r-report-1" in c.jobs()
    c.finish("r-report-1")
    c.reconcile()
    assert c.condition() == ("True", "Succeeded", "Tasks Completed: 4 (Failed: 0, Cancelled 0), Skipped: 0")
    assert c.status()["completionTime"]
    writes = len(c.kube.writes())
    c.reconcile()
    assert len(c.kube.writes()) == writes  # a finished run is left alone


def test_a_restarted_operator_duplicates_nothing():
    c = Cluster([pipeline_run(spec=SPEC)])
    c.reconcile()
    c.finish("r-build-1", results={"digest": "d"})
    c.reconcile()
    applies = [a for a in c.kube.actions if a.verb == "apply" and a.kind == "Job"]
    c.rt = c.runtime()  # killed and started again: nothing but what the cluster holds
    c.reconcile()
    assert [a for a in c.kube.actions if a.verb == "apply" and a.kind == "Job"] == applies
    assert c.jobs() == ["r-build-1", "r-deploy-1", "r-test-1"]


def test_a_job_created_before_the_crash_but_not_in_status_is_found():
    c = Cluster([pipeline_run(spec=SPEC)])
    c.reconcile()
    c.kube.objects[("PipelineRun", NS, "r")].pop("status")  # the status write never happened
    c.rt = c.runtime()
    c.reconcile()
    assert c.jobs() == ["r-build-1"] and c.task("build")["jobName"] == "r-build-1"
    assert len([a for a in c.kube.actions if a.verb == "apply" and a.kind == "Job"]) == 1  # observed, not re-created


def test_failure_message_retries_and_finally():
    spec = {"tasks": [task("flaky", retries=1)], "finally": [task("cleanup")]}
    c = Cluster([pipeline_run(spec=spec)])
    c.reconcile()
    c.finish("r-flaky-1", ok=False, log="assert 1 == 2")
    c.reconcile()
    assert c.jobs() == ["r-flaky-1", "r-flaky-2"] and c.task("flaky")["attempt"] == 2
    c.finish("r-flaky-2", ok=False, log="assert 1 == 2")
    c.reconcile()
    assert c.task("flaky")["status"] == "Failed"
    assert c.task("flaky")["message"] == "step run exited with code 2: assert 1 == 2"
    assert "r-cleanup-1" in c.jobs()
    c.finish("r-cleanup-1")
    c.reconcile()
    assert c.condition() == ("False", "Failed", "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 0")
    assert ("Failed", "Warning") in c.kube.events()


def test_a_task_timeout_is_timed_out():
    spec = {"tasks": [{**task("slow"), "timeout": "30s"}]}
    c = Cluster([pipeline_run(spec=spec)])
    c.reconcile()
    assert c.kube.objects[("Job", NS, "r-slow-1")]["spec"]["activeDeadlineSeconds"] == 30
    c.finish("r-slow-1", ok=False, reason="DeadlineExceeded", log="")
    c.reconcile()
    assert c.task("slow")["status"] == "TimedOut" and c.condition()[:2] == ("False", "Failed")


def test_cancel_deletes_running_jobs_and_the_pipeline_deadline_requeues():
    spec = {"tasks": [task("a"), task("b")], "finally": [task("f")]}
    c = Cluster([pipeline_run(spec=spec)])
    result = c.reconcile()
    assert 3599 <= result.after <= 3600  # woken at the pipeline's deadline (1h default)
    c.kube.objects[("PipelineRun", NS, "r")]["spec"]["status"] = "Cancelled"
    c.reconcile()
    assert ("delete", "Job") in c.kube.verbs("delete") and c.jobs() == []
    assert {t["name"]: t["status"] for t in c.status()["tasks"]} == {"a": "Cancelled", "b": "Cancelled",
                                                                     "f": "Skipped"}
    assert c.condition()[:2] == ("False", "Cancelled")


def test_pipeline_timeout_stops_running_jobs():
    c = Cluster([pipeline_run(spec={"tasks": [task("a")]}, timeouts={"pipeline": "1m"})])
    c.reconcile()
    c.clock[0] = T0 + timedelta(minutes=2)
    c.reconcile()
    assert c.jobs() == [] and c.condition()[:2] == ("False", "PipelineRunTimeout")


def test_validation_failures_fail_the_run_before_any_task():
    cyc = {"tasks": [task("a", after=["b"]), task("b", after=["a"])]}
    c = Cluster([pipeline_run("cyc", spec=cyc), pipeline_run("ref", pipelineRef={"name": "missing"}),
                 pipeline_run("par", spec={"params": [{"name": "need"}], "tasks": [task("a")]})])
    for name, reason, text in (("cyc", "PipelineValidationFailed", "cycle: a -> b -> a"),
                               ("ref", "PipelineNotFound", 'Pipeline "missing" not found'),
                               ("par", "ParameterMissing", "param need has no value")):
        assert c.reconcile(name).outcome == "ok"
        status, got, message = c.condition(name)
        assert (status, got) == ("False", reason) and text in message
        assert (reason, "Warning") in c.kube.events()
    assert c.jobs() == []


def test_pipeline_ref_is_resolved_once_and_the_pipeline_status_says_what_is_wrong():
    pl = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "Pipeline",
          "metadata": {"name": "p", "namespace": NS, "uid": "uid-p", "generation": 1}, "spec": {"tasks": [task("a")]}}
    c = Cluster([pl, pipeline_run(pipelineRef={"name": "p"})])
    c.reconcile()
    assert c.jobs() == ["r-a-1"]
    c.kube.objects[("Pipeline", NS, "p")]["spec"] = {"tasks": [task("z")]}  # later edits do not affect the run
    c.rt.primaries.put(("Pipeline", NS, "p"), c.kube.objects[("Pipeline", NS, "p")])
    c.finish("r-a-1")
    c.reconcile()
    assert c.condition()[:2] == ("True", "Succeeded")
    bad = {**pl, "metadata": {**pl["metadata"], "name": "bad"},
           "spec": {"tasks": [task("a", params={"v": "$(tasks.a.results.x)"}, task_params=["v"])]}}
    c.kube.put(bad)
    c.rt.primaries.put(("Pipeline", NS, "bad"), c.kube.objects[("Pipeline", NS, "bad")])
    runner.reconcile(c.rt, c.rt.kinds["Pipeline"], NS, "bad")
    ready = c.kube.objects[("Pipeline", NS, "bad")]["status"]["conditions"][0]
    assert ready["status"] == "False" and ready["reason"] == "PipelineValidationFailed"
    assert "cycle: a -> a" in ready["message"]


def test_job_names_are_bounded_and_distinct():
    long = resources.job_name("r" * 60, "task", 1)
    assert len(long) == 63 and long != resources.job_name("r" * 60, "task", 2)
    assert resources.job_name("build-x7k2p", "test", 2) == "build-x7k2p-test-2"
