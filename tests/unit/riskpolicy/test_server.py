"""The webhook server without a cluster: TLS with the generated CA, the three paths, the certificate Secret
created once and reused, the webhook configuration applied with its caBundle, and the webhook's own latency."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
import urllib.request
from types import SimpleNamespace

import pytest

from mpcloud_operator.kube.client import api_error
from mpcloud_operator.riskpolicy.admission import AdmissionServer
from mpcloud_operator.riskpolicy.model import RiskPolicy


class Kube:
    """The few API calls the server makes, in memory."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict] = {}
        self.applied: list[dict] = []
        self.events: list[tuple] = []

    def request(self, method, path, body=None, content_type="application/json", query=None, timeout=30):
        if "/secrets" in path:
            name = path.rsplit("/", 1)[-1]
            if method == "GET":
                if name not in self.secrets:
                    raise api_error(404, "NotFound")
                return json.loads(json.dumps(self.secrets[name]))
            if method == "POST":
                self.secrets[body["metadata"]["name"]] = body
                return body
            if method == "PUT":
                self.secrets[name] = body
                return body
        if "validatingwebhookconfigurations" in path:
            self.applied.append(body)
            return body
        if path == "/api/v1/namespaces":
            return {"items": []}
        return {}

    def post_event(self, involved, reason, message, type_="Normal"):
        self.events.append((involved["kind"], involved["metadata"]["name"], reason, message, type_))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    port = free_port()
    config = SimpleNamespace(lease_namespace="mpcloud-system", admission_port=port, bind_address="127.0.0.1",
                             admission_url=f"https://127.0.0.1:{port}", admission_cert_seconds=3600.0,
                             admission_cert_check_seconds=3600.0, admission_timeout_seconds=5)
    kube = Kube()
    srv = AdmissionServer(kube, config, is_leader=lambda: True)
    srv.cache.informer.start = lambda: srv.cache.informer  # no watch: the cache is filled by hand
    srv.cache._on_event("ADDED", {"apiVersion": "mpcloud.io/v1alpha1", "kind": "RiskPolicy",
                                  "metadata": {"name": "risk", "namespace": "team"},
                                  "spec": {"admission": {"mode": "Enforce", "secretEnv": {"mode": "Audit"}}}})
    srv.cache.informer.synced.set()
    srv.start()
    assert srv.serving.wait(10)
    yield srv, kube, port
    srv.stop()


def review(image: str, env=()) -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u1", "operation": "CREATE", "namespace": "team", "object": {
            "apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp", "metadata": {"name": "shop"},
            "spec": {"image": image, "env": list(env)}}}}).encode()


def post(port: int, path: str, data: bytes, context: ssl.SSLContext) -> dict:
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=context, timeout=5) as r:
        return json.loads(r.read())


def test_tls_paths_secret_and_configuration(server):
    srv, kube, port = server
    bundle = srv.certs.bundle
    assert set(kube.secrets["mpcloud-webhook-tls"]["data"]) == {"ca.crt", "ca.key", "tls.crt", "tls.key",
                                                                "ca-bundle.crt"}
    context = ssl.create_default_context(cadata=bundle.ca_bundle.decode())  # verifies 127.0.0.1 against the SANs
    denied = post(port, "/enforce", review("nginx"), context)["response"]
    assert denied["allowed"] is False and "[admission.images]" in denied["status"]["message"]
    audit = post(port, "/audit", review("nginx:1.27", [{"name": "TOKEN", "value": "x"}]), context)["response"]
    assert audit["allowed"] is True and audit["warnings"][0].startswith("[admission.secretEnv]")
    deadline = time.monotonic() + 10
    while not kube.applied and time.monotonic() < deadline:
        time.sleep(0.05)
    conf = kube.applied[-1]
    assert {w["clientConfig"]["caBundle"] for w in conf["webhooks"]} == {base64.b64encode(bundle.ca_bundle).decode()}
    assert ("RiskPolicy", "risk", "PolicyViolation") == kube.events[0][:3]  # the refused CREATE, on the policy
    # A second replica reads the same Secret: same CA, so one caBundle serves both.
    other = AdmissionServer(kube, srv.config)
    other.certs.ensure()
    assert other.certs.bundle == bundle


def test_webhook_latency(server, capsys):
    srv, _, port = server
    context = ssl.create_default_context(cadata=srv.certs.bundle.ca_bundle.decode())
    data = review("registry.example.com/team/shop:1.2")
    post(port, "/enforce", data, context)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        assert post(port, "/enforce", data, context)["response"]["allowed"]
        times.append(time.perf_counter() - started)
    times.sort()
    p50, p99 = times[100] * 1000, times[197] * 1000
    with capsys.disabled():
        print(f"\nwebhook round trip (new TLS connection each): p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    assert p99 < 250  # a loose sanity bound: the bench measures it properly
