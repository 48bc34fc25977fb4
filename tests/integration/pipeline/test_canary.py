"""Built-in deploy and canary tasks on the real control plane, with a real Prometheus (Debian's binary, run by
devenv/prometheus.py as the predictive-scaling test runs it) scraping a metric the test serves and sets.

- canary promoted on good metrics: the canary Deployment (the app's own hardened pod, the new image) runs its
  share beside the stable one, the analysis passes, the app's image is set, the canary is deleted;
- rolled back on bad ones: the stable Deployment is exactly as it was, the canary is gone, the run failed with
  the metric, its value and the condition in its message;
- the operator SIGKILLed mid-analysis: its replacement goes on from the run's status, no measurement repeated;
- a plain deploy task sets the image and succeeds once the app is Ready at its new generation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import signal
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from kubernetes import client

from tests.integration.conftest import free_port, wait_until
from tests.integration.test_miniprogramapp import Apps, app_body

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("prometheus") is None and not os.environ.get("CI"),
                                 reason="needs Debian's prometheus package (make prometheus)")]
GROUP, VERSION = "mpcloud.io", "v1alpha1"
ROOT = Path(__file__).resolve().parents[3]
STABLE, NEW = "nginxinc/nginx-unprivileged:1.27", "nginxinc/nginx-unprivileged:1.27-alpine"


class Metric:
    """An HTTP endpoint Prometheus scrapes: `canary_error_ratio{run="<run>"} <value>` for each run the test set."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                text = "".join(f'canary_error_ratio{{run="{r}"}} {v}\n' for r, v in sorted(outer.values.items()))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    from mpcloud_operator.devenv import prometheus

    base = tmp_path_factory.mktemp("prometheus")
    url = prometheus.up(base, port=free_port(), scrape_interval="500ms")
    metric = Metric()
    prometheus.add_target("canary-metric", metric.address, base=base)
    yield url, metric
    metric.stop()
    prometheus.down(base)


def query(url: str, promql: str) -> list:
    data = urllib.parse.urlencode({"query": promql}).encode()
    with urllib.request.urlopen(url + "/api/v1/query", data=data, timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


class Runs:
    def __init__(self, api_client, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.apps_api = client.AppsV1Api(api_client)

    def create(self, name: str, spec: dict, params: dict, **run_spec) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineRun", "metadata": {"name": name},
                "spec": {"pipelineSpec": spec, "params": [{"name": k, "value": v} for k, v in params.items()],
                         **run_spec}}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "pipelineruns", body)

    def get(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "pipelineruns", name)

    def task(self, run: str, name: str) -> dict:
        return next((t for t in (self.get(run).get("status") or {}).get("tasks") or [] if t["name"] == name), {})

    def wait_done(self, name: str, timeout: float = 120) -> dict:
        def done():
            cond = next((c for c in (self.get(name).get("status") or {}).get("conditions") or []
                         if c["type"] == "Succeeded"), {})
            return cond if cond.get("status") in ("True", "False") else None
        return wait_until(done, timeout, interval=0.5, what=f"run {name} finished (last: {self.get(name).get('status')})")

    def deployment(self, name: str):
        try:
            return self.apps_api.read_namespaced_deployment(name, self.ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise


@pytest.fixture
def setup(api_client, namespace, operator, prom):
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    apps = Apps(api_client, namespace)
    apps.create(app_body("shop", image=STABLE, replicas={"min": 1, "max": 4, "desired": 2}))
    apps.wait_ready("shop", timeout=90)
    return apps, Runs(api_client, namespace), prom


def canary_pipeline(prom_url: str, count: int = 3, interval: str = "2s") -> dict:
    return {"params": [{"name": "image"}], "tasks": [{"name": "canary", "canary": {
        "app": "shop", "image": "$(params.image)", "steps": [
            {"weight": 50},
            {"analysis": {"name": "error-rate", "address": prom_url, "interval": interval, "count": count,
                          "query": 'max(canary_error_ratio{run="$(context.pipelineRun.name)"})',
                          "successCondition": "result < 0.05"}},
        ]}}]}


def scraped(prom_url: str, run: str) -> bool:
    return bool(query(prom_url, f'canary_error_ratio{{run="{run}"}}'))


def test_canary_promoted_on_good_metrics(setup):
    apps, runs, (url, metric) = setup
    metric.values["good"] = 0.01
    wait_until(lambda: scraped(url, "good"), 30, what="the metric scraped")
    runs.create("good", canary_pipeline(url), {"image": NEW})
    canary = wait_until(lambda: runs.deployment("shop-canary"), 60, what="the canary Deployment")
    pod = canary.spec.template.spec
    assert pod.containers[0].image == NEW and canary.spec.replicas == 1  # 50 % of 2
    assert pod.security_context.run_as_non_root and pod.runtime_class_name == "kata"
    assert canary.metadata.owner_references[0].kind == "PipelineRun"
    cond = runs.wait_done("good")
    assert (cond["status"], cond["reason"]) == ("True", "Succeeded"), cond
    t = runs.task("good", "canary")
    assert t["reason"] == "Promoted" and t["canary"]["phase"] == "Promoted", t
    assert t["canary"]["analysis"]["taken"] == 3 and t["canary"]["analysis"]["successful"] == 3
    assert apps.get("shop")["spec"]["image"] == NEW
    assert runs.deployment("shop").spec.template.spec.containers[0].image == NEW
    wait_until(lambda: runs.deployment("shop-canary") is None, 30, what="the canary deleted")


def test_canary_rolled_back_on_bad_metrics(setup):
    apps, runs, (url, metric) = setup
    before = runs.deployment("shop")
    metric.values["bad"] = 0.31
    wait_until(lambda: scraped(url, "bad"), 30, what="the metric scraped")
    runs.create("bad", canary_pipeline(url), {"image": NEW})
    cond = runs.wait_done("bad")
    assert (cond["status"], cond["reason"]) == ("False", "Failed"), cond
    t = runs.task("bad", "canary")
    assert (t["status"], t["reason"]) == ("Failed", "AnalysisFailed"), t
    assert "analysis error-rate: value 0.31" in t["message"] and "result < 0.05" in t["message"], t["message"]
    assert t["canary"]["phase"] == "RolledBack"
    wait_until(lambda: runs.deployment("shop-canary") is None, 30, interval=0.05, what="the canary deleted")
    gone = time.time()
    failed_at = datetime.fromisoformat(t["canary"]["analysis"]["measurements"][-1]["time"].replace("Z", "+00:00"))
    print(f"\nrollback: canary Deployment gone {gone - failed_at.timestamp():.2f}s after the failing measurement")
    after = runs.deployment("shop")
    assert (after.metadata.generation, after.spec.template.spec.containers[0].image) == (
        before.metadata.generation, STABLE)  # the stable Deployment untouched
    assert apps.get("shop")["spec"]["image"] == STABLE


def test_operator_killed_mid_canary_resumes_without_repeating_a_measurement(setup, running_operator,
                                                                            operator_factory):
    apps, runs, (url, metric) = setup
    metric.values["resume"] = 0.0
    wait_until(lambda: scraped(url, "resume"), 30, what="the metric scraped")
    runs.create("resume", canary_pipeline(url, count=4, interval="4s"), {"image": NEW})
    wait_until(lambda: ((runs.task("resume", "canary").get("canary") or {}).get("analysis") or {}).get("taken", 0) >= 1,
               60, what="the first measurement")
    running_operator["op"].stop(signal.SIGKILL)
    replacement = operator_factory("after-canary-kill").start()
    running_operator["op"] = replacement
    replacement.wait_ready(timeout=60)
    cond = runs.wait_done("resume", timeout=120)
    assert (cond["status"], cond["reason"]) == ("True", "Succeeded"), cond
    analysis = runs.task("resume", "canary")["canary"]["analysis"]
    assert analysis["taken"] == 4 and analysis["successful"] == 4, analysis
    times = [datetime.fromisoformat(m["time"].replace("Z", "+00:00")) for m in analysis["measurements"]]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert len(times) == 4 and min(gaps) >= 3.5, gaps  # none repeated: every measurement its own interval


def test_deploy_task_sets_the_image_and_waits_for_ready(setup):
    apps, runs, _ = setup
    runs.create("ship", {"params": [{"name": "image"}], "tasks": [
        {"name": "ship", "deploy": {"app": "shop", "image": "$(params.image)"}}]}, {"image": NEW})
    cond = runs.wait_done("ship", timeout=120)
    assert (cond["status"], cond["reason"]) == ("True", "Succeeded"), cond
    t = runs.task("ship", "ship")
    app = apps.get("shop")
    assert app["spec"]["image"] == NEW and t["deploy"]["generation"] == app["metadata"]["generation"]
    assert t["deploy"]["previous"] == STABLE and "Ready at generation" in t["message"]


def test_release_example_tests_then_canary_then_promotes(setup, pipeline_helper_image):
    """examples/pipeline/release.yaml as written, but its waits shortened and its query aimed at the test's metric."""
    if not pipeline_helper_image:
        pytest.skip("no real node: the unit-tests task cannot run code here")
    apps, runs, (url, metric) = setup
    text = (ROOT / "examples" / "pipeline" / "release.yaml").read_text()
    spec = yaml.safe_load(text.replace("mpcloud.local/debian-python:IMAGE_TAG", pipeline_helper_image))["spec"]
    for step in spec["tasks"][1]["canary"]["steps"]:
        if "pause" in step:
            step["pause"] = "1s"
        if "analysis" in step:
            step["analysis"].update(interval="1s", count=2)
    metric.values["release"] = 0.001
    wait_until(lambda: scraped(url, "release"), 30, what="the metric scraped")
    runs.create("release", spec, {"image": NEW, "prometheus": url,
                                  "error-ratio": 'max(canary_error_ratio{run="release"})'},
                sandbox={"runtimeClassName": "none", "allowUnsandboxed": True})
    cond = runs.wait_done("release", timeout=180)
    assert (cond["status"], cond["reason"]) == ("True", "Succeeded"), cond
    tests, canary = runs.task("release", "unit-tests"), runs.task("release", "canary")
    assert tests["status"] == "Succeeded" and canary["reason"] == "Promoted", canary
    assert canary["startTime"] >= tests["completionTime"]
    assert apps.get("shop")["spec"]["image"] == NEW
