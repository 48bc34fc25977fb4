"""The gateway's KubeRouteSource on the real local control plane, as the gateway's own ServiceAccount.

CloudFunctions and EndpointSlices are written by the test, with the session's operator stopped for it (an operator
would give the function instances of its own: on kwok nodes they are "Ready" at once and the gateway would route to
them instead of buffering): the gateway must learn a function,
buffer a request while it has no ready endpoint, serve it once an EndpointSlice names a real runtime host,
follow readiness, and forget the function when it is deleted. The CRD is the project's when crds/ has it, else a
schemaless stand-in for this test only (removed afterwards).
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
from pathlib import Path

import pytest
import requests

from mpcloud_operator.devenv.cluster import install
from tests.integration.functions.conftest import wait_until
from tests.integration.functions.test_runtime_host import SOURCES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
STAND_IN_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "cloudfunctions.mpcloud.io", "labels": {"mpcloud.io/test": "stand-in"}},
    "spec": {"group": "mpcloud.io", "scope": "Namespaced",
             "names": {"plural": "cloudfunctions", "singular": "cloudfunction", "kind": "CloudFunction"},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def _host_address() -> str:
    """An address of this machine that pods and the API server accept in an EndpointSlice (not loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        return s.getsockname()[0]


@pytest.fixture
def cloudfunction_crd(kubeconfig, mpcloud_installed):
    crds = {line.rpartition("/")[2] for line in install.kubectl(kubeconfig, "get", "crd", "-o", "name").splitlines()}
    made = "cloudfunctions.mpcloud.io" not in crds
    if made:
        install.kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(STAND_IN_CRD))
        install.kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "crd/cloudfunctions.mpcloud.io")
    # kubectl's discovery cache learns of a new kind a moment after the CRD is Established.
    wait_until(lambda: "error" not in install.kubectl(kubeconfig, "get", "cloudfunctions", "-A", check=False).lower(),
               what="the CloudFunction kind to be served")
    yield
    if made:
        install.kubectl(kubeconfig, "delete", "crd", "cloudfunctions.mpcloud.io", "--wait=false", check=False)


@pytest.fixture
def gateway_kubeconfig(kubeconfig, mpcloud_installed, tmp_path) -> Path:
    # mpcloud_installed applied manifests/gateway-rbac.yaml: the gateway's ServiceAccount and read-only role.
    return install.service_account_kubeconfig(kubeconfig, tmp_path / "gateway.kubeconfig", name="mpcloud-gateway")


@pytest.fixture
def no_operator(running_operator, operator_factory):
    """No operator acts during the test; a fresh session operator afterwards (tests/integration/conftest.py)."""
    import signal

    assert running_operator["op"].stop(signal.SIGTERM) == 0
    yield
    running_operator["op"] = operator_factory("after-gateway-kube").start().wait_ready()


def _slice(namespace: str, function: str, address: str, port: int, ready: bool) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"cf-{function}-test", "namespace": namespace,
                         "labels": {"mpcloud.io/function": function}},
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}]}


def test_gateway_routes_from_cloudfunctions_and_endpointslices(kubeconfig, cloudfunction_crd, gateway_kubeconfig,
                                                               namespace, procs, tmp_path, no_operator):
    def apply(obj: dict) -> None:
        install.kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(obj))

    apply({"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction", "metadata": {"name": "add", "namespace": namespace},
           "spec": {"runtime": "python3.11", "handler": "index.main", "timeoutSeconds": 5,
                    "source": {"inline": {"files": {"index.py": SOURCES["python3.11"]["index.py"]}}},
                    "triggers": {"http": {"path": f"/{namespace}-add"}}, "scaling": {"concurrency": 2, "maxInstances": 3}}})
    host = procs.host("python3.11", SOURCES["python3.11"])
    gw = procs._spawn(["-m", "mpcloud_operator.functions.gateway", "--kubeconfig", str(gateway_kubeconfig),
                       "--port", str(port := __import__("mpcloud_operator.devenv.ports", fromlist=["x"]).free_port()),
                       "--queue-timeout", "60"], "gateway-kube", port)
    wait_until(lambda: requests.get(f"{gw.url}/_/health", timeout=2).status_code == 200, timeout=60,
               what=f"the gateway's first lists ({gw.log})")
    routes = lambda: {(f["namespace"], f["name"]): f for f in requests.get(f"{gw.url}/_/routes", timeout=5).json()["functions"]}  # noqa: E731
    route = wait_until(lambda: routes().get((namespace, "add")), what="the CloudFunction's route")
    assert (route["concurrency"], route["maxInstances"], route["timeoutSeconds"], route["instances"]) == (2, 3, 5.0, [])

    address = _host_address()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(requests.get, f"{gw.url}/{namespace}-add/hi?name=kube", timeout=90)
        wait_until(lambda: gw.metric("mpcloud_gateway_queued", {"namespace": namespace, "function": "add"}) == 1,
                   what="the request to wait for an instance")
        apply(_slice(namespace, "add", address, host.port, ready=True))
        r = pending.result(timeout=90)
    assert r.status_code == 200 and r.json()["hello"] == "kube"
    assert gw.metric("mpcloud_function_cold_start_seconds_count", {"namespace": namespace, "function": "add", "start": "pod"}) == 1
    assert requests.get(f"{gw.url}/{namespace}/add/x", timeout=30).status_code == 200  # /<ns>/<name> as well

    apply(_slice(namespace, "add", address, host.port, ready=False))
    wait_until(lambda: routes()[(namespace, "add")]["instances"] == [], what="the not-ready endpoint to leave")
    install.kubectl(kubeconfig, "delete", "cloudfunction", "add", "-n", namespace)
    wait_until(lambda: (namespace, "add") not in routes(), what="the deleted function's route to go")
    assert requests.get(f"{gw.url}/{namespace}/add/x", timeout=30).status_code == 404
