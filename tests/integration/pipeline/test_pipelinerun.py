"""Pipelines end to end: the operator (own RBAC) runs each task attempt as a Job whose pod really runs on the local
cluster's real node (runc: the run opts out of the sandbox visibly, as examples/pipeline/run-local.yaml), under
Pod Security "restricted". Order, parallel branches, `when`, results, `finally`, retries, timeouts, cancellation,
validation (CEL on the real API server, and the reason-condition path) and a kill -9 of the operator mid-run.
A sandboxed run (Kata RuntimeClass) lands on kwok nodes: its placement is proven at the API level.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.conftest import kubectl, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
GROUP, VERSION = "mpcloud.io", "v1alpha1"
UNSANDBOXED = {"runtimeClassName": "none", "allowUnsandboxed": True}


class Pipelines:
    def __init__(self, api_client, namespace: str, image: str) -> None:
        self.ns, self.image = namespace, image
        self.custom = client.CustomObjectsApi(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def step(self, name: str, script: str) -> dict:
        return {"name": name, "image": self.image, "script": script}

    def task(self, name: str, script: str, **extra) -> dict:
        results = extra.pop("results", [])
        params = extra.pop("taskParams", [])
        return {"name": name, **extra, "taskSpec": {"results": [{"name": r} for r in results],
                                                     "params": [{"name": p} for p in params],
                                                     "steps": [self.step("main", script)]}}

    def create_pipeline(self, name: str, spec: dict) -> dict:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Pipeline", "metadata": {"name": name}, "spec": spec}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "pipelines", body)

    def create_run(self, name: str, spec: dict | None = None, ref: str | None = None, **run_spec) -> dict:
        run_spec.setdefault("sandbox", UNSANDBOXED)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineRun", "metadata": {"name": name},
                "spec": {**({"pipelineSpec": spec} if spec else {"pipelineRef": {"name": ref}}), **run_spec}}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "pipelineruns", body)

    def get(self, name: str, plural: str = "pipelineruns") -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)

    def condition(self, name: str, plural: str = "pipelineruns", type_: str = "Succeeded") -> dict:
        return next((c for c in (self.get(name, plural).get("status") or {}).get("conditions") or []
                     if c["type"] == type_), {})

    def wait_done(self, name: str, timeout: float = 180) -> dict:
        wait_until(lambda: self.condition(name).get("status") in ("True", "False"), timeout, interval=0.5,
                   what=f"run {name} finished (last {self.condition(name)})")
        return self.get(name)

    def tasks(self, name: str) -> dict[str, dict]:
        return {t["name"]: t for t in self.get(name)["status"].get("tasks") or []}

    def jobs(self, run: str) -> list:
        return self.batch.list_namespaced_job(self.ns, label_selector=f"mpcloud.io/pipelinerun={run}").items

    def events(self, name: str) -> list[tuple[str, str]]:
        return [(e.reason, e.message) for e in self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={name}").items]


@pytest.fixture
def pipelines(api_client, namespace, operator, pipeline_helper_image) -> Pipelines:
    if not pipeline_helper_image:
        pytest.skip("no real node: task pods cannot run code here")
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    return Pipelines(api_client, namespace, pipeline_helper_image)


def _time(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_example_runs_in_dependency_order_with_parallel_branches_when_results_and_finally(pipelines, kubeconfig):
    text = (ROOT / "examples" / "pipeline" / "pipeline.yaml").read_text()
    body = yaml.safe_load(text.replace("mpcloud.local/debian-python:IMAGE_TAG", pipelines.image))
    pipelines.create_pipeline("shop-ci", body["spec"])
    wait_until(lambda: pipelines.condition("shop-ci", "pipelines", "Ready").get("reason") == "Valid", 30,
               what="the Pipeline checked")
    run = yaml.safe_load((ROOT / "examples" / "pipeline" / "run-local.yaml").read_text())["spec"]
    started = time.monotonic()
    pipelines.create_run("ship", ref="shop-ci", params=run["params"], timeouts=run["timeouts"])
    done = pipelines.wait_done("ship")
    print(f"example pipeline: {time.monotonic() - started:.1f}s for 5 tasks + finally")
    st = done["status"]
    cond = next(c for c in st["conditions"] if c["type"] == "Succeeded")
    assert (cond["status"], cond["reason"]) == ("True", "Completed"), cond
    assert cond["message"] == "Tasks Completed: 5 (Failed: 0, Cancelled 0), Skipped: 1"
    tasks = pipelines.tasks("ship")
    assert {n: t["status"] for n, t in tasks.items()} == {
        "version": "Succeeded", "unit-tests": "Succeeded", "lint": "Succeeded", "package": "Succeeded",
        "canary": "Skipped", "notify": "Succeeded"}
    assert tasks["canary"]["reason"] == "WhenExpressionsFalse"
    # dependency order: nothing starts before what it depends on finished
    for child, parents in (("unit-tests", ["version"]), ("lint", ["version"]), ("package", ["unit-tests", "lint"]),
                           ("notify", ["package"])):
        for parent in parents:
            assert _time(tasks[child]["startTime"]) >= _time(tasks[parent]["completionTime"]), (child, parent)
    # the parallel branches both started once version finished, before either waited on the other
    assert abs(_time(tasks["unit-tests"]["startTime"]) - _time(tasks["lint"]["startTime"])) <= 2
    # results travelled: version's tag into package's param, package's results into the run's
    assert tasks["version"]["results"] == [{"name": "tag", "value": "v1.4.0-3f2a9c1"}]
    results = {r["name"]: r["value"] for r in st["results"]}
    assert results["artifact"] == "shop-v1.4.0-3f2a9c1.tar.gz" and results["digest"].startswith("sha256:")
    assert st["sandbox"] == "unsandboxed (opt-out)" and st["startTime"] and st["completionTime"]
    jobs = pipelines.jobs("ship")
    assert sorted(j.metadata.name for j in jobs) == sorted(
        f"ship-{t}-1" for t in ("version", "unit-tests", "lint", "package", "notify"))
    pod = pipelines.core.list_namespaced_pod(pipelines.ns, label_selector="batch.kubernetes.io/job-name=ship-notify-1").items[0]
    assert pod.spec.node_selector == {"mpcloud.io/node": "real"} and pod.spec.security_context.run_as_non_root
    log = pipelines.core.read_namespaced_pod_log(pod.metadata.name, pipelines.ns, container="step-post")
    assert log.strip() == "pipeline ship Completed; package Succeeded"
    assert ("Completed", cond["message"]) in pipelines.events("ship")
    print(kubectl(kubeconfig, "get", "pr", "-n", pipelines.ns))


def test_a_workspace_is_shared_between_tasks(pipelines):
    """A PersistentVolume on the real node's host (the local cluster has no provisioner), bound by claim name:
    one task writes, a later one reads."""
    p = pipelines
    host_dir = Path(tempfile.mkdtemp(prefix="mpcloud-ws-"))  # not under pytest's 0700 tmp dirs: pods traverse it
    host_dir.chmod(0o777)  # the task pods run as 10001; hostPath volumes keep the host's ownership
    pv = f"pv-{p.ns}"[:63]
    p.core.create_persistent_volume({"metadata": {"name": pv}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
        "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(host_dir)},
        "claimRef": {"namespace": p.ns, "name": "source"}}})
    try:
        p.core.create_namespaced_persistent_volume_claim(p.ns, {"metadata": {"name": "source"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "volumeName": pv,
            "resources": {"requests": {"storage": "1Gi"}}}})
        ws = [{"name": "src", "workspace": "shared"}]
        write = p.task("write", "echo 'built by $(context.pipelineRun.name)' > $(workspaces.src.path)/out.txt",
                       workspaces=ws)
        write["taskSpec"]["workspaces"] = [{"name": "src"}]
        read = p.task("read", "cat $(workspaces.src.path)/out.txt", runAfter=["write"], workspaces=ws)
        read["taskSpec"]["workspaces"] = [{"name": "src", "readOnly": True}]
        p.create_run("shared", {"workspaces": [{"name": "shared"}], "tasks": [write, read]},
                     workspaces=[{"name": "shared", "persistentVolumeClaim": {"claimName": "source"}}])
        done = p.wait_done("shared", timeout=120)
        assert next(c for c in done["status"]["conditions"] if c["type"] == "Succeeded")["reason"] == "Succeeded"
        pod = p.core.list_namespaced_pod(p.ns, label_selector="batch.kubernetes.io/job-name=shared-read-1").items[0]
        assert p.core.read_namespaced_pod_log(pod.metadata.name, p.ns).strip() == "built by shared"
        assert (host_dir / "out.txt").read_text() == "built by shared\n"
    finally:
        p.core.delete_persistent_volume(pv)
        shutil.rmtree(host_dir, ignore_errors=True)


def test_failure_retries_and_finally(pipelines):
    p = pipelines
    spec = {"tasks": [
        # fails on its first attempt, succeeds on the retry
        p.task("flaky", 'test "$(context.task.retry-count)" -ge 1 || { echo "first attempt fails"; exit 1; }',
               retries=2),
        p.task("broken", 'echo "checking the build"; echo "3 tests failed" >&2; exit 3'),
        p.task("after-broken", "echo never", runAfter=["broken"]),
    ], "finally": [p.task("cleanup", 'echo "cleanup after $(params.broken)"', taskParams=["broken"],
                          params=[{"name": "broken", "value": "$(tasks.broken.status)"}])]}
    p.create_run("fails", spec)
    done = p.wait_done("fails")
    cond = next(c for c in done["status"]["conditions"] if c["type"] == "Succeeded")
    assert (cond["status"], cond["reason"]) == ("False", "Failed")
    assert cond["message"] == "Tasks Completed: 3 (Failed: 1, Cancelled 0), Skipped: 1"
    tasks = p.tasks("fails")
    assert tasks["flaky"]["status"] == "Succeeded" and tasks["flaky"]["attempt"] == 2
    assert tasks["broken"]["status"] == "Failed"
    assert tasks["broken"]["message"].startswith("step main exited with code 3")
    assert "3 tests failed" in tasks["broken"]["message"]
    assert tasks["after-broken"]["status"] == "Skipped" and tasks["after-broken"]["reason"] == "PipelineRunStopping"
    assert tasks["cleanup"]["status"] == "Succeeded"
    pod = p.core.list_namespaced_pod(p.ns, label_selector="batch.kubernetes.io/job-name=fails-cleanup-1").items[0]
    assert p.core.read_namespaced_pod_log(pod.metadata.name, p.ns).strip() == "cleanup after Failed"
    assert _time(tasks["cleanup"]["startTime"]) >= _time(tasks["broken"]["completionTime"])
    assert sorted(j.metadata.name for j in p.jobs("fails")) == [
        "fails-broken-1", "fails-cleanup-1", "fails-flaky-1", "fails-flaky-2"]
    assert all(j.spec.backoff_limit == 0 for j in p.jobs("fails"))


def test_timeouts_task_and_pipeline(pipelines):
    p = pipelines
    p.create_run("task-timeout", {"tasks": [p.task("slow", "sleep 300", timeout="3s")]})
    p.create_run("run-timeout", {"tasks": [p.task("slow", "sleep 300")], "finally": [p.task("f", "echo f")]},
                 timeouts={"pipeline": "6s"})
    done = p.wait_done("task-timeout", timeout=120)
    assert p.tasks("task-timeout")["slow"]["status"] == "TimedOut"
    assert next(c for c in done["status"]["conditions"] if c["type"] == "Succeeded")["reason"] == "Failed"
    done = p.wait_done("run-timeout", timeout=120)
    cond = next(c for c in done["status"]["conditions"] if c["type"] == "Succeeded")
    assert (cond["status"], cond["reason"]) == ("False", "PipelineRunTimeout")
    assert {n: t["status"] for n, t in p.tasks("run-timeout").items()} == {"slow": "TimedOut", "f": "Skipped"}
    wait_until(lambda: not p.jobs("run-timeout"), 30, what="the timed-out Job deleted")


def test_cancellation_stops_running_jobs(pipelines):
    p = pipelines
    p.create_run("cancel-me", {"tasks": [p.task("long", "sleep 300"), p.task("next", "echo no", runAfter=["long"])],
                               "finally": [p.task("f", "echo no")]})
    wait_until(lambda: any((j.status.active or 0) > 0 for j in p.jobs("cancel-me")), 90, what="the task running")
    p.custom.patch_namespaced_custom_object(GROUP, VERSION, p.ns, "pipelineruns", "cancel-me",
                                            {"spec": {"status": "Cancelled"}})
    done = p.wait_done("cancel-me", timeout=60)
    cond = next(c for c in done["status"]["conditions"] if c["type"] == "Succeeded")
    assert (cond["status"], cond["reason"]) == ("False", "Cancelled") and 'was cancelled' in cond["message"]
    assert {n: t["status"] for n, t in p.tasks("cancel-me").items()} == {
        "long": "Cancelled", "next": "Skipped", "f": "Skipped"}
    wait_until(lambda: not p.jobs("cancel-me"), 30, what="the running Job deleted")
    wait_until(lambda: not p.core.list_namespaced_pod(p.ns, label_selector="mpcloud.io/pipelinerun=cancel-me").items,
               60, what="its pod gone")


def test_invalid_pipelines_are_rejected_with_clear_messages(pipelines):
    p = pipelines
    with pytest.raises(ApiException) as refused:  # CEL on the real API server
        p.create_pipeline("bad-ref", {"tasks": [p.task("a", "true", runAfter=["ghost"])]})
    assert refused.value.status == 422 and "runAfter must name other tasks" in refused.value.body
    both = p.task("a", "true")
    both["taskSpec"]["steps"][0]["command"] = ["true"]
    with pytest.raises(ApiException) as refused:
        p.create_pipeline("bad-step", {"tasks": [both]})
    assert "exactly one of script and command" in refused.value.body
    with pytest.raises(ApiException) as refused:
        p.create_run("bad-timeouts", {"tasks": [p.task("a", "true")]},
                     timeouts={"pipeline": "1m", "tasks": "50s", "finally": "20s"})
    assert "must not exceed timeouts.pipeline" in refused.value.body
    # what CEL cannot see: a cycle through a result reference, a missing param, a missing Pipeline
    cyclic = {"tasks": [p.task("a", "true", runAfter=["b"], results=["x"]),
                        p.task("b", "true", params=[{"name": "v", "value": "$(tasks.a.results.x)"}],
                               taskParams=["v"])]}
    p.create_pipeline("cyclic", cyclic)
    p.create_run("cyclic", ref="cyclic")
    p.create_run("no-param", {"params": [{"name": "revision"}], "tasks": [p.task("a", "echo $(params.revision)")]})
    p.create_run("no-pipeline", ref="ghost")
    for run, reason, text in (("cyclic", "PipelineValidationFailed", "the tasks form a cycle: a -> b -> a"),
                              ("no-param", "ParameterMissing", "param revision has no value and no default"),
                              ("no-pipeline", "PipelineNotFound", 'Pipeline "ghost" not found')):
        cond = next(c for c in p.wait_done(run, timeout=30)["status"]["conditions"] if c["type"] == "Succeeded")
        assert (cond["status"], cond["reason"]) == ("False", reason) and text in cond["message"], cond
        assert not p.jobs(run)
        wait_until(lambda: (reason, cond["message"]) in p.events(run), 20, what=f"a {reason} Event")
    ready = wait_until(lambda: p.condition("cyclic", "pipelines", "Ready").get("status") == "False" and
                       p.condition("cyclic", "pipelines", "Ready"), 30, what="the Pipeline marked invalid")
    assert ready["reason"] == "PipelineValidationFailed" and "cycle" in ready["message"]


def test_operator_killed_mid_run_converges_without_duplicate_jobs(pipelines, running_operator, operator_factory):
    p = pipelines
    spec = {"tasks": [p.task("one", "sleep 4"), p.task("two", "sleep 2", runAfter=["one"]),
                      p.task("three", "echo done", runAfter=["two"])]}
    p.create_run("survive", spec)
    wait_until(lambda: p.jobs("survive"), 60, what="the first Job")
    running_operator["op"].stop(signal.SIGKILL)  # no cleanup, no lease release
    replacement = operator_factory("after-pipeline-kill").start()
    running_operator["op"] = replacement
    replacement.wait_ready(timeout=60)  # waits for the dead holder's lease to expire
    done = p.wait_done("survive", timeout=180)
    assert next(c for c in done["status"]["conditions"] if c["type"] == "Succeeded")["reason"] == "Succeeded"
    assert sorted(j.metadata.name for j in p.jobs("survive")) == ["survive-one-1", "survive-three-1",
                                                                  "survive-two-1"]
    assert {t["attempt"] for t in p.tasks("survive").values()} == {1}


def test_sandboxed_run_lands_on_kata_nodes(pipelines):
    """kwok nodes stand in for Kata nodes: the pod asks for the kata RuntimeClass, is admitted under
    "restricted" and scheduled where the RuntimeClass's nodeSelector points."""
    p = pipelines
    p.create_run("sandboxed", {"tasks": [p.task("a", "true")]}, sandbox={"runtimeClassName": "kata"})
    pod = wait_until(lambda: next(iter(p.core.list_namespaced_pod(
        p.ns, label_selector="mpcloud.io/pipelinerun=sandboxed").items), None), 60, what="the task pod")
    assert pod.spec.runtime_class_name == "kata" and pod.spec.overhead
    assert pod.spec.node_selector.get("katacontainers.io/kata-runtime") == "true"
    node = wait_until(lambda: p.core.read_namespaced_pod(pod.metadata.name, p.ns).spec.node_name, 60,
                      what="the pod scheduled")
    assert p.core.read_node(node).metadata.labels.get("katacontainers.io/kata-runtime") == "true"
    assert p.get("sandboxed")["status"]["sandbox"] == "kata"


def test_mpcloud_pipeline_run_waits_for_the_outcome(pipelines, kubeconfig):
    p = pipelines
    p.create_pipeline("hello", {"params": [{"name": "who"}],
                                "tasks": [p.task("greet", 'echo "hello $(params.who)"')]})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), str(ROOT)]))
    res = subprocess.run([sys.executable, "-m", "mpcloud_operator", "pipeline", "run", "hello", "-n", p.ns,
                          "-p", "who=mpcloud", "--unsandboxed", "--wait", "--kubeconfig", str(kubeconfig)],
                         capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("pipelinerun/hello-") and "greet: Succeeded" in res.stdout
    assert "Succeeded: Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0" in res.stdout
