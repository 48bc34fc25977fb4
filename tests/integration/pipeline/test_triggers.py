"""Pipeline triggers end to end: a real `git push` to the local Git server (devenv/gitserver.py: git daemon, its
post-receive hook signs a GitHub-style payload) reaches the operator's webhook endpoint (its own process, its own
RBAC, the namespace's opt-in RoleBinding for the trigger's Secret) and starts a PipelineRun of the pushed commit;
a bad signature is refused with 401 and creates nothing; a cron schedule starts one run per scheduled time, and a
restarted operator starts none twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest
from kubernetes import client

from mpcloud_operator.devenv import gitserver
from mpcloud_operator.devenv.ports import free_port
from mpcloud_operator.pipeline.push import github_signature
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration
GROUP, VERSION = "mpcloud.io", "v1alpha1"
SECRET = "it-is-a-secret"
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="dev", GIT_AUTHOR_EMAIL="dev@example.com", GIT_COMMITTER_NAME="dev",
               GIT_COMMITTER_EMAIL="dev@example.com")


@pytest.fixture(scope="module")
def git_server(tmp_path_factory):
    """The local Git server, on 127.0.0.1 and (with a real node) the pod bridge, as `mpcloud git up --pod-network`."""
    from mpcloud_operator.devenv.functions import pod_reachable_host

    host, _ = pod_reachable_host()
    base = tmp_path_factory.mktemp("git")
    gitserver.up(base, port_=free_port(), listen=[host] if host else [])
    yield base
    gitserver.down(base)


def pipeline(name: str, triggers: dict) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Pipeline", "metadata": {"name": name}, "spec": {
        "params": [{"name": "revision"}, {"name": "repo-url", "default": ""}, {"name": "schedule-time", "default": ""}],
        "tasks": [{"name": "test", "params": [{"name": "rev", "value": "$(params.revision)"}],
                   "taskSpec": {"params": [{"name": "rev"}],
                                "steps": [{"name": "t", "image": "busybox", "script": "echo $(params.rev)"}]}}],
        "triggers": triggers}}


class Cluster:
    def __init__(self, api_client, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)

    def opt_in(self) -> None:
        """The namespace lets the operator read trigger Secrets (README: RBAC)."""
        self.core.create_namespaced_secret(self.ns, {"metadata": {"name": "hook"}, "stringData": {"secret": SECRET}})
        self.rbac.create_namespaced_role_binding(self.ns, {
            "metadata": {"name": "mpcloud-operator-triggers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "mpcloud-operator-triggers"},
            "subjects": [{"kind": "ServiceAccount", "name": "mpcloud-operator", "namespace": "mpcloud-system"}]})

    def create(self, body: dict) -> dict:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "pipelines", body)

    def runs(self) -> list[dict]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, "pipelineruns")["items"]


def push_commit(base, repo: str, work, message: str) -> tuple[str, str]:
    """Commit a file and `git push` it to the local server; (commit, the push's output)."""
    if not work.exists():
        subprocess.run(["git", "clone", "-q", gitserver.url(repo, base), str(work)], check=True, capture_output=True)
    (work / "README.md").write_text(message + "\n")
    subprocess.run(["git", "add", "."], cwd=work, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=work, check=True, env=GIT_ENV)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True, text=True).stdout
    out = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=work, capture_output=True, text=True, check=True)
    return sha.strip(), out.stderr


def test_a_git_push_starts_a_run_of_the_commit_and_a_bad_signature_is_refused(
        api_client, namespace, operator, git_server, tmp_path):
    cluster = Cluster(api_client, namespace)
    cluster.opt_in()
    cluster.create(pipeline("shop", {"git": [{"name": "push", "secretRef": {"name": "hook"}, "branches": ["main"]}]}))
    hook_url = f"http://127.0.0.1:{operator.webhook_port}/hooks/git/{namespace}/shop/push"
    gitserver.create_repo("shop", git_server, hook_url, SECRET)

    sha, output = push_commit(git_server, "shop", tmp_path / "work", "first")
    [run] = wait_until(lambda: [r for r in cluster.runs()
                                if r["metadata"]["labels"].get("mpcloud.io/commit") == sha], 30,
                       what=f"a PipelineRun of {sha} (push said: {output})")
    assert {"name": "revision", "value": sha} in run["spec"]["params"]
    assert run["spec"]["pipelineRef"] == {"name": "shop"}
    assert run["metadata"]["labels"]["mpcloud.io/trigger"] == "push"
    assert run["metadata"]["name"].startswith("shop-") and "webhook 201" in output
    assert any(f["manager"] == "mpcloud-triggers" for f in run["metadata"]["managedFields"])
    # The pipeline controller takes it from there: the run's first task becomes a Job.
    name = run["metadata"]["name"]
    wait_until(lambda: cluster.batch.list_namespaced_job(namespace, label_selector=f"mpcloud.io/pipelinerun={name}"
                                                         ).items, 60, what=f"a Job of run {name}")

    # The repository's hook now signs with the wrong secret: 401, and no run.
    gitserver.set_webhook("shop", hook_url, "wrong-secret", git_server)
    bad_sha, output = push_commit(git_server, "shop", tmp_path / "work", "second")
    assert "webhook 401" in output and "InvalidSignature" in output
    body = json.dumps({"ref": "refs/heads/main", "before": sha, "after": bad_sha}).encode()
    for headers in ({"X-Hub-Signature-256": github_signature(b"nope", body)}, {}):
        request = urllib.request.Request(hook_url, body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": "x1",
                                                          **headers}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(request, timeout=10)
        assert exc.value.code == 401 and "error" in json.loads(exc.value.read())
    assert len(cluster.runs()) == 1

    # A redelivery of a good payload (same delivery id) finds the same run.
    good = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-42", "X-Hub-Signature-256": github_signature(
        SECRET.encode(), body)}
    answers = []
    for _ in range(2):
        with urllib.request.urlopen(urllib.request.Request(hook_url, body, good, method="POST"), timeout=10) as r:
            answers.append((r.status, json.loads(r.read())))
    assert answers[0][0] == 201 and answers[1] == (200, {"run": answers[0][1]["run"], "duplicate": True})
    assert len(cluster.runs()) == 2


def test_without_the_opt_in_a_delivery_is_503_and_starts_nothing(api_client, namespace, operator):
    cluster = Cluster(api_client, namespace)
    cluster.core.create_namespaced_secret(namespace, {"metadata": {"name": "hook"}, "stringData": {"secret": SECRET}})
    cluster.create(pipeline("shop", {"git": [{"name": "push", "secretRef": {"name": "hook"}}]}))
    body = b'{"ref": "refs/heads/main", "before": "", "after": "abc"}'
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(SECRET.encode(), body)}
    url = f"http://127.0.0.1:{operator.webhook_port}/hooks/git/{namespace}/shop"

    def answer():
        try:
            urllib.request.urlopen(urllib.request.Request(url, body, headers, method="POST"), timeout=10)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())["error"]
        return None

    code, error = wait_until(lambda: (a := answer()) and a[1]["type"] != "PipelineNotFound" and a, 20,
                             what="the operator to see the Pipeline")
    assert (code, error["type"]) == (503, "TriggerSecretForbidden")
    assert "mpcloud-operator-triggers" in error["message"] and cluster.runs() == []


def test_a_schedule_starts_one_run_per_time_and_a_restart_starts_none_twice(
        api_client, namespace, running_operator, operator_factory):
    cluster = Cluster(api_client, namespace)
    cluster.create(pipeline("nightly", {"schedules": [
        {"name": "every3s", "cron": "* * * * * */3", "params": [{"name": "revision", "value": "main"}]}]}))

    def scheduled() -> dict[str, list[str]]:
        by_time: dict[str, list[str]] = {}
        for r in cluster.runs():
            by_time.setdefault(r["metadata"]["annotations"]["mpcloud.io/scheduled-time"], []).append(
                r["metadata"]["name"])
        return by_time

    wait_until(lambda: len(scheduled()) >= 2, 30, what="two scheduled runs")
    old = running_operator["op"]
    old.stop()
    before = scheduled()
    new = operator_factory("after-restart").start().wait_ready()
    running_operator["op"] = new
    wait_until(lambda: len(scheduled()) >= len(before) + 2, 40, what="runs after the restart")
    after = scheduled()
    assert all(len(names) == 1 for names in after.values()), after  # one run per scheduled time, ever
    assert set(before) <= set(after)
    run = next(r for r in cluster.runs())
    assert {"name": "revision", "value": "main"} in run["spec"]["params"]
    assert run["metadata"]["labels"]["mpcloud.io/trigger-type"] == "schedule"


def test_a_push_runs_the_repositorys_own_unit_tests_and_a_failing_test_fails_the_run(
        api_client, namespace, operator, git_server, tmp_path, pipeline_helper_image):
    """examples/pipeline/git-ci.yaml end to end: push examples/pipeline/shop-src/ → webhook → run → a task pod on
    the real node clones the pushed commit from the Git server over the pod bridge and runs `python3 -m unittest`;
    a commit that breaks the code fails the run at that step."""
    import shutil
    from pathlib import Path

    import yaml

    from mpcloud_operator.devenv.cluster import local

    if not pipeline_helper_image:
        pytest.skip("no real node: task pods cannot run code here")
    root = Path(__file__).resolve().parents[3]
    image = local.build_images(["debian-git"], log=lambda m: print(f"[image] {m}"))["debian-git"].ref
    cluster = Cluster(api_client, namespace)
    cluster.opt_in()
    cluster.core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    body = yaml.safe_load((root / "examples" / "pipeline" / "git-ci.yaml").read_text()
                          .replace("mpcloud.local/debian-git:IMAGE_TAG", image))
    body["spec"]["triggers"]["git"][0]["secretRef"]["name"] = "hook"
    body["spec"]["triggers"]["runSpec"] = {"sandbox": {"runtimeClassName": "none", "allowUnsandboxed": True}}
    cluster.create(body)
    hook_url = f"http://127.0.0.1:{operator.webhook_port}/hooks/git/{namespace}/shop-git/push"
    gitserver.create_repo("shop-src", git_server, hook_url, SECRET)

    work = tmp_path / "shop-src"
    subprocess.run(["git", "clone", "-q", gitserver.url("shop-src", git_server), str(work)], check=True,
                   capture_output=True)

    def push(message: str) -> dict:
        subprocess.run(["git", "add", "."], cwd=work, check=True)
        subprocess.run(["git", "commit", "-qm", message], cwd=work, check=True, env=GIT_ENV)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True,
                             text=True).stdout.strip()
        out = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=work, capture_output=True, text=True,
                             check=True).stderr
        [run] = wait_until(lambda: [r for r in cluster.runs() if r["metadata"]["labels"].get("mpcloud.io/commit") == sha],
                           30, what=f"a PipelineRun of {sha} (push said: {out})")

        def done():
            got = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "pipelineruns",
                                                              run["metadata"]["name"])
            cond = next((c for c in (got.get("status") or {}).get("conditions") or [] if c["type"] == "Succeeded"), {})
            return got if cond.get("status") in ("True", "False") else None

        return wait_until(done, 240, interval=0.5, what=f"run {run['metadata']['name']} finished")

    def outcome(run: dict) -> tuple[str, str]:
        cond = next(c for c in run["status"]["conditions"] if c["type"] == "Succeeded")
        return cond["status"], cond["reason"]

    for src in (root / "examples" / "pipeline" / "shop-src").glob("*.py"):
        shutil.copy(src, work / src.name)
    good = push("shop: cart and its tests")
    assert outcome(good) == ("True", "Succeeded"), good["status"]
    [task] = good["status"]["tasks"]
    assert task["name"] == "unit-tests" and task["status"] == "Succeeded"

    # Break the rounding: test_total fails, so does the run, at the test step (the clone worked).
    cart = work / "cart.py"
    cart.write_text(cart.read_text().replace("round(sum(price * qty for price, qty in items), 2)",
                                             "int(sum(price * qty for price, qty in items))"))
    bad = push("shop: truncate totals")
    assert outcome(bad)[0] == "False", bad["status"]
    [task] = bad["status"]["tasks"]
    # The message names the failing step and carries the end of its log: unittest's own verdict.
    assert task["status"] == "Failed" and "test" in task["message"] and "FAILED (failures=1)" in task["message"], task
