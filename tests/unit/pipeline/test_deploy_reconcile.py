"""Built-in deploy and canary tasks through the real generic reconcile with the FakeClient (no control plane):
the app's image set by merge patch, Ready awaited, the next task started in the same reconcile; a canary's
Deployment rendered from the app's builders, analysis against a local HTTP server speaking Prometheus' API,
promotion, rollback, an admission refusal as the failure message, and a restarted operator mid-canary."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mpcloud_operator.pipeline import resources
from mpcloud_operator.reconcile import children
from tests.fakes.kube import FakeWatch
from tests.unit.pipeline.test_dag import task
from tests.unit.pipeline.test_run_reconcile import NS, Cluster, pipeline_run


def app_body(image="shop:1", generation=1) -> dict:
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp",
            "metadata": {"name": "shop", "namespace": NS, "uid": "uid-shop", "generation": generation},
            "spec": {"image": image, "ports": [{"name": "http", "containerPort": 8080}],
                     "replicas": {"min": 1, "max": 10, "desired": 4}},
            "status": ready_status(generation)}


def ready_status(generation: int, rolling: bool = False) -> dict:
    def cond(type_, status, reason):
        return {"type": type_, "status": status, "reason": reason, "message": "", "observedGeneration": generation,
                "lastTransitionTime": "2026-12-04T00:00:00Z"}
    return {"observedGeneration": generation, "conditions": [
        cond("Ready", "True", "ReplicasAvailable"),
        cond("Progressing", "True" if rolling else "False", "RollingOut" if rolling else "RolloutComplete"),
        cond("Degraded", "False", "AsExpected")]}


class Apps(Cluster):
    def runtime(self):
        rt = super().runtime()
        rt.child_watches["Deployment"] = FakeWatch(self.kube, "Deployment")
        for (kind, ns, name), obj in list(self.kube.objects.items()):
            if kind == "MiniProgramApp":
                rt.primaries.put((kind, ns, name), obj)
            if kind == "Deployment":
                children.on_child_event(rt, "ADDED", obj)
        return rt

    def app(self) -> dict:
        return self.kube.objects[("MiniProgramApp", NS, "shop")]

    def app_reconciled(self, rolling: bool = False) -> None:
        """What the app's own reconciler would report for its current generation."""
        body = self.app()
        body["status"] = ready_status(body["metadata"]["generation"], rolling)
        self.rt.primaries.put(("MiniProgramApp", NS, "shop"), body)

    def later(self, seconds: float) -> None:
        self.clock[0] += timedelta(seconds=seconds)


class Prometheus:
    """A local HTTP server answering /api/v1/query with the value the test sets (Prometheus' response shape)."""

    def __init__(self) -> None:
        self.value: float | None = 0.0
        self.queries: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                from urllib.parse import parse_qs

                length = int(self.headers["Content-Length"])
                outer.queries.append(parse_qs(self.rfile.read(length).decode())["query"][0])
                result = [] if outer.value is None else [{"metric": {}, "value": [0, str(outer.value)]}]
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def prom():
    p = Prometheus()
    yield p
    p.stop()


def deploy_spec() -> dict:
    return {"params": [{"name": "image"}],
            "tasks": [{"name": "ship", "deploy": {"app": "shop", "image": "$(params.image)"}},
                      task("smoke", after=["ship"])]}


def test_deploy_sets_the_image_waits_for_ready_then_the_dag_goes_on():
    c = Apps([app_body(), pipeline_run(spec=deploy_spec(), params=[{"name": "image", "value": "shop:2"}])])
    result = c.reconcile()
    assert c.app()["spec"]["image"] == "shop:2" and c.app()["metadata"]["generation"] == 2
    patch = next(a for a in c.kube.actions if a.verb == "patch")
    assert patch.detail == {"spec": {"image": "shop:2"}}
    ship = c.task("ship")
    assert ship["status"] == "Running" and ship["deploy"] == {"target": "MiniProgramApp/shop", "generation": 2,
                                                              "previous": "shop:1"}
    assert "jobName" not in ship and result.after == 2.0 and c.jobs() == []
    c.app_reconciled(rolling=True)
    c.reconcile()
    assert c.task("ship")["status"] == "Running" and c.jobs() == []
    c.app_reconciled()
    c.reconcile()
    assert c.task("ship")["status"] == "Succeeded" and "Ready at generation 2" in c.task("ship")["message"]
    assert c.jobs() == ["r-smoke-1"]  # started in the same reconcile
    assert len([a for a in c.kube.actions if a.verb == "patch"]) == 1


def test_deploy_refused_by_admission_fails_the_run_with_the_refusal():
    c = Apps([app_body(), pipeline_run(spec=deploy_spec(), params=[{"name": "image", "value": "shop:2"}])])
    c.kube.refuse["MiniProgramApp"] = ("admission webhook \"enforce.risk.mpcloud.io\" denied the request: "
                                       "MiniProgramApp ci/shop refused by risk policy: change freeze black-friday")
    c.reconcile()
    ship = c.task("ship")
    assert (ship["status"], ship["reason"]) == ("Failed", "DeployRefused")
    assert "change freeze black-friday" in ship["message"]
    assert c.condition()[:2] == ("False", "Failed") and c.task("smoke")["status"] == "Skipped"
    assert c.app()["spec"]["image"] == "shop:1"


def canary_spec(url: str) -> dict:
    return {"params": [{"name": "image"}], "tasks": [{"name": "canary", "canary": {
        "app": "shop", "image": "$(params.image)", "steps": [
            {"weight": 50},
            {"analysis": {"name": "error-rate", "address": url, "interval": "10s", "count": 2,
                          "query": 'sum(errors{namespace="$(context.pipelineRun.namespace)"})',
                          "successCondition": "result < 0.05"}},
        ]}}]}


def test_canary_promoted_on_good_metrics_and_survives_a_restart(prom):
    c = Apps([app_body(), pipeline_run(spec=canary_spec(prom.url), params=[{"name": "image", "value": "shop:2"}])])
    c.reconcile()
    name = resources.canary_name("shop")
    dep = c.kube.objects[("Deployment", NS, name)]
    pod = dep["spec"]["template"]["spec"]  # rendered from the app's builders: the same hardened pod
    assert pod["containers"][0]["image"] == "shop:2" and pod["securityContext"]["runAsNonRoot"]
    assert pod["runtimeClassName"] == "kata" and pod["automountServiceAccountToken"] is False
    assert dep["spec"]["replicas"] == 2  # 50 % of the app's 4
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-r"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "shop" and resources.CANARY_LABEL in labels  # in the Service
    assert c.task("canary")["canary"]["step"] == 0
    c.reconcile()  # its pods are ready: the analysis measures at once
    assert prom.queries == [f'sum(errors{{namespace="{NS}"}})']
    st = c.task("canary")["canary"]
    assert st["step"] == 1 and st["analysis"]["taken"] == 1 and st["analysis"]["measurements"][0]["value"] == "0"
    c.rt = c.runtime()  # the operator restarts: nothing but the cluster and the run's status
    c.reconcile()
    assert len(prom.queries) == 1  # not due yet: not measured again
    c.later(10)
    c.reconcile()
    assert len(prom.queries) == 2 and c.task("canary")["canary"]["phase"] == "Promoting"
    assert c.app()["spec"]["image"] == "shop:2"
    assert ("Deployment", NS, name) in c.kube.objects  # serves until the app runs the new image
    c.app_reconciled()
    c.reconcile()
    t = c.task("canary")
    assert (t["status"], t["reason"]) == ("Succeeded", "Promoted") and t["canary"]["phase"] == "Promoted"
    assert ("Deployment", NS, name) not in c.kube.objects
    assert c.condition()[:2] == ("True", "Succeeded")


def test_canary_rolled_back_on_bad_metrics(prom):
    c = Apps([app_body(), pipeline_run(spec=canary_spec(prom.url), params=[{"name": "image", "value": "shop:2"}])])
    c.reconcile()
    prom.value = 0.31
    c.reconcile()
    t = c.task("canary")
    assert (t["status"], t["reason"]) == ("Failed", "AnalysisFailed")
    assert "analysis error-rate: value 0.31" in t["message"] and "result < 0.05" in t["message"]
    assert t["canary"]["phase"] == "RolledBack"
    assert ("Deployment", NS, resources.canary_name("shop")) not in c.kube.objects
    assert c.app()["spec"]["image"] == "shop:1" and c.app()["metadata"]["generation"] == 1  # stable untouched
    assert c.condition()[:2] == ("False", "Failed")


def test_cancelling_a_canary_removes_it(prom):
    c = Apps([app_body(), pipeline_run(spec=canary_spec(prom.url), params=[{"name": "image", "value": "shop:2"}])])
    c.reconcile()
    c.kube.objects[("PipelineRun", NS, "r")]["spec"]["status"] = "Cancelled"
    c.reconcile()
    assert c.task("canary")["status"] == "Cancelled" and c.task("canary")["canary"]["phase"] == "RolledBack"
    assert ("Deployment", NS, resources.canary_name("shop")) not in c.kube.objects
    assert c.app()["spec"]["image"] == "shop:1"


def test_a_canary_name_taken_by_someone_else_fails_without_touching_it(prom):
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": resources.canary_name("shop"), "namespace": NS, "labels": {"app.kubernetes.io/managed-by": "mpcloud"},
        "ownerReferences": [{"apiVersion": "mpcloud.io/v1alpha1", "kind": "PipelineRun", "name": "older",
                             "uid": "uid-older", "controller": True}]}, "spec": {"replicas": 1}}
    c = Apps([app_body(), other, pipeline_run(spec=canary_spec(prom.url), params=[{"name": "image", "value": "x:2"}])])
    c.reconcile()
    assert c.task("canary")["reason"] == "CanaryConflict"
    assert c.kube.objects[("Deployment", NS, resources.canary_name("shop"))]["metadata"]["ownerReferences"][0][
        "uid"] == "uid-older"


def test_deploy_of_a_function_source_replaces_its_source_and_waits_until_served():
    fn = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction",
          "metadata": {"name": "add-todo", "namespace": NS, "uid": "uid-fn", "generation": 1},
          "spec": {"runtime": "nodejs20", "source": {"configMapRef": {"name": "old-code"}}},
          "status": {"observedGeneration": 1, "servingGeneration": 1}}
    spec = {"tasks": [{"name": "ship", "deploy": {"function": "add-todo", "source": {"inline": {"files": {
        "index.js": "exports.main = async () => `$(params.image)`"}}}}}], "params": [{"name": "image", "default": "x"}]}
    c = Apps([fn, pipeline_run(spec=spec)])
    c.rt.primaries.put(("CloudFunction", NS, "add-todo"), fn)
    c.reconcile()
    body = c.kube.objects[("CloudFunction", NS, "add-todo")]
    assert body["spec"]["source"] == {"inline": {"files": {"index.js": "exports.main = async () => `$(params.image)`"}}}
    assert body["metadata"]["generation"] == 2 and c.task("ship")["status"] == "Running"
    body["status"] = {"observedGeneration": 2, "servingGeneration": 2, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Serving", "message": "1 instance(s)", "observedGeneration": 2,
         "lastTransitionTime": "2026-12-04T00:00:00Z"}]}
    c.rt.primaries.put(("CloudFunction", NS, "add-todo"), body)
    c.reconcile()
    assert c.task("ship")["status"] == "Succeeded" and "serves generation 2" in c.task("ship")["message"]
