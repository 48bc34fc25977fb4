"""The session's operator with the RiskPolicy admission webhooks on, and helpers to write policies and apps.
Nothing here waits for pods."""

from __future__ import annotations

import datetime as dt
import json
import signal

import pytest
from kubernetes import client

from tests.integration.conftest import free_port, kubectl, wait_until

GROUP, VERSION = "mpcloud.io", "v1alpha1"
CONFIGURATION = "mpcloud-risk"


SCAN_SECONDS = 2.0  # the risk operator's scan tick (MPCLOUD_RISK_SCAN_SECONDS)
TRAFFIC_SECONDS = 0.2  # and its traffic tick: a replayed series plays 5 values a second


@pytest.fixture(scope="module")
def risk_operator(running_operator, operator_factory, kubeconfig, api_client, tmp_path_factory):
    """The session's operator, replaced for this module by one with the admission webhooks on (a free port on
    127.0.0.1, which the local API server reaches directly), a short scan tick, and the traffic detector reading
    a replay file (`op.replay`, see `Replay`) instead of Prometheus. One operator at a time: a second would wait for
    the Lease, and the leader's work (namespace labels, status counts, scans, reports) is part of what these tests
    check."""
    port = free_port()
    replay = tmp_path_factory.mktemp("risk-traffic") / "series.json"
    replay.write_text("{}")
    assert running_operator["op"].stop(signal.SIGTERM) == 0  # releases the Lease
    op = operator_factory("risk", env={"MPCLOUD_ADMISSION_PORT": str(port),
                                       "MPCLOUD_ADMISSION_URL": f"https://127.0.0.1:{port}",
                                       "MPCLOUD_RISK_SCAN_SECONDS": str(SCAN_SECONDS),
                                       "MPCLOUD_RISK_TRAFFIC_SECONDS": str(TRAFFIC_SECONDS),
                                       "MPCLOUD_RISK_TRAFFIC_REPLAY": str(replay)})
    running_operator["op"] = op
    op.start().wait_ready()
    op.port = port
    op.replay = Replay(replay)
    admission = client.AdmissionregistrationV1Api(api_client)

    def configured():
        try:
            conf = admission.read_validating_webhook_configuration(CONFIGURATION)
        except client.ApiException:
            return None
        return all(w.client_config.url and str(port) in w.client_config.url for w in conf.webhooks) and conf
    wait_until(configured, 60, what="the webhook configuration pointing at this operator")
    yield op
    op.stop()
    # Leave no fail-closed webhook behind for the tests that run after these: the operator that follows has
    # admission off and does not keep the configuration.
    kubectl(kubeconfig, "delete", "validatingwebhookconfiguration", CONFIGURATION, "--ignore-not-found")
    running_operator["op"] = operator_factory("after-risk").start().wait_ready()


class Replay:
    """The request series the risk operator's traffic detector plays (riskpolicy/series.py ReplayFile)."""

    def __init__(self, path) -> None:
        self.path = path

    def add(self, kind: str, namespace: str, name: str, values) -> None:
        data = json.loads(self.path.read_text())
        data[f"{kind}/{namespace}/{name}"] = [float(v) for v in values]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)  # the operator never reads a half-written file


class Risk:
    """Policies and apps of one test namespace."""

    def __init__(self, api_client, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def policy(self, spec: dict, name: str = "risk") -> dict:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": name}, "spec": spec}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "riskpolicies", body)

    def create_app(self, name: str, image: str = "nginxinc/nginx-unprivileged:1.27", **spec) -> dict:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MiniProgramApp", "metadata": {"name": name},
                "spec": {"image": image, "ports": [{"name": "http", "containerPort": 8080}], **spec}}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "miniprogramapps", body)

    def create_app_with_headers(self, name: str, image: str) -> tuple:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MiniProgramApp", "metadata": {"name": name},
                "spec": {"image": image, "ports": [{"name": "http", "containerPort": 8080}]}}
        return self.custom.create_namespaced_custom_object_with_http_info(GROUP, VERSION, self.ns, "miniprogramapps",
                                                                           body)

    def set_image(self, name: str, image: str) -> dict:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "miniprogramapps", name,
                                                          {"spec": {"image": image}})

    def delete_app(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "miniprogramapps", name)

    def refusal(self, fn, *args, **kw) -> str | None:
        """The API server's refusal message of fn(...), or None when it was admitted."""
        try:
            fn(*args, **kw)
        except client.ApiException as exc:
            if exc.status in (400, 403, 500):
                import json
                try:
                    return json.loads(exc.body)["message"]
                except (ValueError, KeyError):
                    return str(exc.body)
            raise
        return None

    def wait_in_force(self, image: str = "nginx", timeout: float = 30) -> str:
        """Until a new app with `image` is refused (the policy has reached the webhook's cache): the message.
        Each attempt uses a new name, so an attempt admitted before that leaves no conflict behind."""
        attempt = iter(range(10**6))

        def refused_by_policy() -> str | None:
            # Only the policy's own refusal counts: while the webhook server is still starting, the API server
            # refuses with "failed calling webhook ... connection refused" (failurePolicy Fail).
            message = self.refusal(self.create_app, f"probe-{next(attempt)}", image=image)
            return message if message and "refused by risk policy" in message else None
        return wait_until(refused_by_policy, timeout, interval=0.5, what=f"an app with image {image} to be refused")

    def findings(self) -> list:
        return [e for e in self.core.list_namespaced_event(self.ns, field_selector="reason=PolicyViolation").items]

    def labels(self) -> dict:
        return self.core.read_namespace(self.ns).metadata.labels or {}


@pytest.fixture
def risk(api_client, namespace, risk_operator) -> Risk:
    return Risk(api_client, namespace)


def utc(seconds: float = 0) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
