"""The Job of one task attempt (pipeline/resources.py): hardened pod, steps in order, scripts, results, workspaces."""

from __future__ import annotations

import json
import subprocess
import sys

from mpcloud_operator.pipeline import resources
from mpcloud_operator.pipeline.model import PipelineRun

IMAGE = "mpcloud.local/debian-python:1"


def run_with(task: dict, **spec) -> PipelineRun:
    return PipelineRun.model_validate({
        "metadata": {"name": "r", "namespace": "ci", "uid": "u1", "generation": 1},
        "spec": {"pipelineSpec": {"tasks": [task], "workspaces": [{"name": "src"}, {"name": "scratch"}]}, **spec}})


TASK = {"name": "build", "params": [{"name": "v", "value": "1.2"}],
        "workspaces": [{"name": "source", "workspace": "src"}],
        "taskSpec": {"params": [{"name": "v"}], "results": [{"name": "digest"}],
                     "workspaces": [{"name": "source"}, {"name": "tmp", "mountPath": "/scratch"}],
                     "steps": [{"name": "fetch", "image": IMAGE, "command": ["echo", "$(params.v)"],
                                "args": ["$(workspaces.source.path)"]},
                               {"name": "make", "image": IMAGE,
                                "script": "#!/usr/bin/python3\nopen('$(results.digest.path)', 'w').write('$(params.v)')",
                                "env": [{"name": "WHO", "value": "$(context.pipelineRun.name)"}]}]}}


def build(run: PipelineRun, attempt: int = 1, pool: str | None = None) -> dict:
    task = run.spec.pipeline_spec.tasks[0]
    inputs = resources.TaskInputs(task, attempt, {"v": "1.2"}, {}, {"context.pipelineRun.name": "r"}, "helper:1", pool)
    return resources.job(run, inputs)


def test_steps_run_in_order_and_a_reporter_packs_the_results():
    run = run_with(TASK, workspaces=[{"name": "src", "persistentVolumeClaim": {"claimName": "code"}},
                                     {"name": "scratch", "emptyDir": {}}])
    job = build(run, attempt=2)
    assert job["metadata"]["name"] == "r-build-2" and job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    fetch, make = pod["initContainers"]
    assert (fetch["name"], make["name"], pod["containers"][0]["name"]) == ("step-fetch", "step-make", "results")
    assert fetch["command"] == ["echo", "1.2"] and fetch["args"] == ["/workspace/source"]
    assert make["command"] == ["/mpcloud/scripts/make"]
    assert {"name": "WHO", "value": "r"} in make["env"]
    script = job["spec"]["template"]["metadata"]["annotations"]["mpcloud.io/script-make"]
    assert script == "#!/usr/bin/python3\nopen('/mpcloud/results/digest', 'w').write('1.2')"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["scripts"]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['mpcloud.io/script-make']"
    assert volumes["ws-source"] == {"name": "ws-source", "persistentVolumeClaim": {"claimName": "code"}}
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] and pod["runtimeClassName"] == "kata"
    for c in (*pod["initContainers"], *pod["containers"]):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True


def test_without_results_the_last_step_is_the_container_and_unsandboxed_runs_in_the_pool():
    task = {"name": "t", "taskSpec": {"steps": [{"name": "only", "image": IMAGE, "script": "echo hi"}]}}
    run = run_with(task, sandbox={"runtimeClassName": "none", "allowUnsandboxed": True})
    pod = build(run, pool="mpcloud.io/node=real")["spec"]["template"]["spec"]
    assert "initContainers" not in pod and pod["containers"][0]["name"] == "step-only"
    assert "runtimeClassName" not in pod and pod["nodeSelector"] == {"mpcloud.io/node": "real"}
    assert resources.script_text("echo hi") == "#!/bin/sh\nset -e\necho hi"


def test_claim_template_workspace_is_a_pvc_the_run_owns():
    run = run_with(TASK, workspaces=[{"name": "src", "volumeClaimTemplate": {"storage": "2Gi"}},
                                     {"name": "scratch", "emptyDir": {}}])
    pvc = resources.claim(run, run.spec.workspaces[0])
    assert pvc["metadata"]["name"] == "r-ws-src" and pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == "u1"


def test_the_reporter_bounds_results(tmp_path):
    code = resources.REPORTER_CODE.replace(resources.RESULTS_DIR, str(tmp_path)).replace(
        "/dev/termination-log", str(tmp_path / "term"))
    (tmp_path / "a").write_text("value\n")
    assert subprocess.run([sys.executable, "-c", code, "a", "missing"]).returncode == 0
    assert json.loads((tmp_path / "term").read_text()) == {"a": "value"}
    (tmp_path / "a").write_text("x" * 5000)
    assert subprocess.run([sys.executable, "-c", code, "a"], capture_output=True).returncode == 1
    assert "at most 4096 are allowed" in (tmp_path / "term").read_text()


def test_pod_outcome_names_the_failing_step():
    pod = {"status": {"phase": "Failed", "initContainerStatuses": [
        {"name": "step-a", "state": {"terminated": {"exitCode": 0}}},
        {"name": "step-b", "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "3 tests failed"}}}],
        "containerStatuses": [{"name": "results", "state": {"waiting": {}}}]}}
    assert resources.pod_outcome(pod) == ({}, "step b exited with code 3: 3 tests failed")
    ok = {"status": {"containerStatuses": [{"name": "results", "state": {"terminated": {
        "exitCode": 0, "message": '{"d": "sha256:1"}'}}}]}}
    assert resources.pod_outcome(ok) == ({"d": "sha256:1"}, "")


def test_pipeline_run_command_builds_a_run():
    from click.testing import CliRunner

    from mpcloud_operator.cli import main
    from mpcloud_operator.commands.pipeline import run_body

    pl = {"metadata": {"name": "shop-ci", "namespace": "ci"}, "spec": {}}
    body = run_body(pl, [{"name": "revision", "value": "abc"}], unsandboxed=True, timeout="10m")
    run = PipelineRun.model_validate({**body, "metadata": {"name": "x", "namespace": "ci"}})
    assert run.spec.pipeline_ref.name == "shop-ci" and run.spec.sandbox.unsandboxed
    assert body["metadata"]["generateName"] == "shop-ci-" and run.spec.timeouts.pipeline == "10m"
    result = CliRunner().invoke(main, ["pipeline", "run", "p", "-p", "novalue"])
    assert result.exit_code == 2 and "use NAME=VALUE" in result.output


