"""Pods on the local cluster's real node really run: kubelet + containerd + runc, images built locally.

The session cluster (`mpcloud cluster up`, one real node where the host can run it) is shared with the kwok
tests; its real node is tainted, so only the pods here, which tolerate it, land there.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from kubernetes import client
from kubernetes.stream import stream

from mpcloud_operator.devenv.cluster import local, realnode
from tests.conftest import CI
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

TOLERATION = {"key": realnode.NODE_LABEL, "operator": "Equal", "value": realnode.NODE_LABEL_VALUE,
              "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def real_node(api_client) -> str:
    nodes = client.CoreV1Api(api_client).list_node(
        label_selector=f"{realnode.NODE_LABEL}={realnode.NODE_LABEL_VALUE}").items
    if not nodes or not realnode.states(local.home()):
        reason = f"no real node in the local cluster: {'; '.join(realnode.host_problems()) or 'started without one'}"
        if CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return nodes[0].metadata.name


@pytest.fixture(scope="module")
def base_image(real_node) -> str:
    """The Debian + python3 image, built (cached) and imported into the real node."""
    return local.build_images(["debian-python"], log=lambda m: print(f"[image] {m}"))["debian-python"].ref


def _pod_spec(image: str, command: list[str], **container) -> dict:
    return {
        "nodeSelector": {realnode.NODE_LABEL: realnode.NODE_LABEL_VALUE},
        "tolerations": [TOLERATION],
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never", "command": command, **container}],
    }


def _pod(name: str, image: str, command: list[str], restart: str = "Never", **container) -> dict:
    spec = _pod_spec(image, command, **container)
    spec["restartPolicy"] = restart
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}


def _terminated(core, name: str, namespace: str):
    pod = core.read_namespaced_pod(name, namespace)
    for cs in pod.status.container_statuses or []:
        if cs.state.terminated:
            return cs.state.terminated
    return None


def test_pod_runs_a_real_process_logs_and_exec(api_client, namespace, real_node, base_image):
    core = client.CoreV1Api(api_client)
    script = "import os, socket, time; print('pid', os.getpid(), 'on', socket.gethostname(), flush=True); time.sleep(600)"
    core.create_namespaced_pod(namespace, _pod("hello", base_image, ["python3", "-c", script]))
    pod = wait_until(lambda: (p := core.read_namespaced_pod("hello", namespace)).status.phase == "Running" and p,
                     timeout=60, what="the pod Running")
    assert pod.spec.node_name == real_node
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    assert pod.status.pod_ip and pod.status.pod_ip != pod.status.host_ip
    # The process's own output (pid 1 in its pid namespace, the pod's name as its hostname), through the kubelet.
    logs = wait_until(lambda: core.read_namespaced_pod_log("hello", namespace), timeout=30, what="log output")
    assert logs.strip() == "pid 1 on hello"
    out = stream(core.connect_get_namespaced_pod_exec, "hello", namespace,
                 command=["python3", "-c", "import os; print(open('/proc/1/cmdline').read().split(chr(0))[0], os.getuid())"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out.strip() == "python3 0"


def test_job_runs_to_completion_and_reports_exit_codes(api_client, namespace, real_node, base_image):
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)

    def job(name: str, code: int) -> dict:
        spec = _pod_spec(base_image, ["python3", "-c", f"print('step {name}'); raise SystemExit({code})"])
        spec["restartPolicy"] = "Never"
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                "spec": {"backoffLimit": 0, "template": {"spec": spec}}}

    batch.create_namespaced_job(namespace, job("passes", 0))
    batch.create_namespaced_job(namespace, job("fails", 3))

    def finished(name: str):
        st = batch.read_namespaced_job(name, namespace).status
        return next((c for c in st.conditions or [] if c.type in ("Complete", "Failed") and c.status == "True"), None)

    assert wait_until(lambda: finished("passes"), timeout=90, what="job passes finished").type == "Complete"
    assert batch.read_namespaced_job("passes", namespace).status.succeeded == 1
    assert wait_until(lambda: finished("fails"), timeout=90, what="job fails finished").type == "Failed"
    for name, code in (("passes", 0), ("fails", 3)):
        pod = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items[0]
        terminated = pod.status.container_statuses[0].state.terminated
        assert terminated.exit_code == code
        assert core.read_namespaced_pod_log(pod.metadata.name, namespace).strip() == f"step {name}"


def test_memory_limit_kills_a_hog(api_client, namespace, real_node, base_image):
    core = client.CoreV1Api(api_client)
    hog = "chunks = []\nwhile True: chunks.append(bytearray(8 << 20))"
    core.create_namespaced_pod(namespace, _pod("hog", base_image, ["python3", "-c", hog],
                                               resources={"limits": {"memory": "64Mi", "cpu": "500m"}}))
    terminated = wait_until(lambda: _terminated(core, "hog", namespace), timeout=90, what="the hog terminated")
    assert terminated.reason == "OOMKilled" and terminated.exit_code == 137


def _web_deployment(image: str, replicas: int = 2) -> dict:
    # Ready only once the server answers: the probe is the kubelet's real HTTP GET to the pod's IP.
    server = ("import http.server, socket\n"
              "class H(http.server.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        body = socket.gethostname().encode()\n"
              "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
              "        self.wfile.write(body)\n"
              "    def log_message(self, *a): pass\n"
              "http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()\n")
    spec = _pod_spec(image, ["python3", "-c", server], ports=[{"containerPort": 8080}],
                     readinessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1})
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}}


def test_readiness_probe_and_service_from_host_and_pod_by_ip_and_name(api_client, namespace, real_node, base_image):
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, _web_deployment(base_image))
    wait_until(lambda: (apps.read_namespaced_deployment("web", namespace).status.ready_replicas or 0) == 2,
               timeout=90, what="2 ready replicas")
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    names = {p.metadata.name for p in pods}
    assert {p.spec.node_name for p in pods} == {real_node}
    for p in pods:
        ready = next(c for c in p.status.conditions if c.type == "Ready")
        assert ready.status == "True"

    svc = core.create_namespaced_service(namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    ip = svc.spec.cluster_ip

    def from_host():
        try:
            with urllib.request.urlopen(f"http://{ip}/", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return None

    # kube-proxy programs the Service once its EndpointSlice lists the ready pods.
    answers = {wait_until(from_host, timeout=30, what=f"an answer from {ip} on the host")}
    answers |= {from_host() for _ in range(20)}
    assert answers == names  # both replicas answer, through the ClusterIP

    # From another pod: by ClusterIP, and by the Service's DNS names (the node's CoreDNS, the pod's search path).
    client_script = ("import socket, urllib.request\n"
                     f"for url in ('http://{ip}/', 'http://web/', 'http://web.{namespace}.svc.cluster.local/'):\n"
                     "    print(url, urllib.request.urlopen(url, timeout=5).read().decode())\n"
                     f"print('resolved', socket.gethostbyname('web.{namespace}.svc'))\n")
    core.create_namespaced_pod(namespace, _pod("caller", base_image, ["python3", "-c", client_script]))
    done = wait_until(lambda: _terminated(core, "caller", namespace), timeout=60, what="the caller pod finished")
    lines = core.read_namespaced_pod_log("caller", namespace).strip().splitlines()
    assert done.exit_code == 0 and len(lines) == 4, lines
    assert all(line.split()[1] in names for line in lines[:3]) and lines[3] == f"resolved {ip}", lines


def test_untolerating_pods_never_land_on_the_real_node(api_client, namespace, real_node):
    core = client.CoreV1Api(api_client)
    for i in range(4):
        core.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"sim-{i}"},
                                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    pods = wait_until(lambda: (ps := core.list_namespaced_pod(namespace).items) and all(p.spec.node_name for p in ps) and ps,
                      what="all scheduled")
    assert real_node not in {p.spec.node_name for p in pods}
    node = core.read_node(real_node)
    assert "katacontainers.io/kata-runtime" not in node.metadata.labels
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [(TOLERATION["key"], TOLERATION["value"], "NoSchedule")]


def _containers_of(namespace: str) -> list[str]:
    state = realnode.states(local.home())[0]
    res = realnode.ctr(state, "containers", "list", f"labels.\"io.kubernetes.pod.namespace\"=={namespace}", check=False)
    return res.stdout.splitlines()[1:]


def test_deleting_the_namespace_cleans_up_containers_and_network(api_client, real_node, base_image):
    core = client.CoreV1Api(api_client)
    name = f"t-realnode-cleanup-{int(time.time() * 1000) % 100000}"
    core.create_namespace({"metadata": {"name": name}})
    for i in range(2):
        core.create_namespaced_pod(name, _pod(f"sleeper-{i}", base_image, ["sleep", "600"]))
    pods = wait_until(lambda: (ps := core.list_namespaced_pod(name).items) and all(p.status.phase == "Running" for p in ps) and ps,
                      timeout=60, what="both pods Running")
    ips = {p.status.pod_ip for p in pods}
    assert len(_containers_of(name)) == 4  # two sandboxes and two containers

    core.delete_namespace(name)
    wait_until(lambda: not core.list_namespace(field_selector=f"metadata.name={name}").items, timeout=90,
               what="the namespace gone")
    state = realnode.states(local.home())[0]

    def released():
        # Sandboxes torn down: no container left, the pods' IPs back in the node's IPAM pool.
        leased = {p.name for p in (state.path / "cni" / "ipam" / state.network_name).glob("*.*.*.*")}
        return not _containers_of(name) and not (ips & leased)

    wait_until(released, timeout=60, what="containers removed and IPs released")
    addrs = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True).stdout
    assert not any(ip in addrs for ip in ips)
    assert not any(ip in json.dumps(core.list_pod_for_all_namespaces().to_dict(), default=str) for ip in ips)


def _operator_pod_diagnostics(core) -> str:
    """What a reader of a failed run needs: each operator pod's phase, container states and its last log lines."""
    out = []
    for pod in core.list_namespaced_pod("mpcloud-system",
                                        label_selector="app.kubernetes.io/name=mpcloud-operator").items:
        out.append(f"pod {pod.metadata.name} on {pod.spec.node_name}: {pod.status.phase}")
        for cs in pod.status.container_statuses or []:
            out.append(f"  {cs.name}: ready={cs.ready} restarts={cs.restart_count} state={cs.state.to_dict()} "
                       f"last={cs.last_state.to_dict()}")
        for previous in (True, False):
            try:
                log = core.read_namespaced_pod_log(pod.metadata.name, "mpcloud-system", tail_lines=40,
                                                   previous=previous)
                out.append(f"  --- log{' (previous)' if previous else ''} ---\n{log}")
            except client.ApiException:
                pass
    events = core.list_namespaced_event("mpcloud-system").items
    out += [f"  event {e.reason}: {e.message}" for e in events[-15:]]
    return "\n".join(out)


def test_operator_image_runs_in_cluster_and_reconciles_an_app(api_client, namespace, real_node, kubeconfig,
                                                              mpcloud_installed, running_operator, operator_factory):
    import signal

    import yaml

    from mpcloud_operator.devenv.cluster import install
    from tests.integration.test_miniprogramapp import Apps, app_body

    image = local.build_images(["operator"], log=lambda m: print(f"[image] {m}"))["operator"].ref
    apps_api, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    # The in-cluster operator must be the only one: the session's (host process) releases the Lease on SIGTERM.
    assert running_operator["op"].stop(signal.SIGTERM) == 0
    docs = install.operator_deployment(image, TOLERATION, {realnode.NODE_LABEL: realnode.NODE_LABEL_VALUE})
    try:
        install.kubectl(kubeconfig, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
        # Ready = /readyz through the kubelet's probe = the process holds the Lease with in-cluster credentials.
        try:
            wait_until(lambda: (apps_api.read_namespaced_deployment("mpcloud-operator", "mpcloud-system").status
                                .ready_replicas or 0) == 1, timeout=120, what="the in-cluster operator Ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_operator_pod_diagnostics(core)}") from None
        pod = core.list_namespaced_pod("mpcloud-system", label_selector="app.kubernetes.io/name=mpcloud-operator").items[0]
        assert pod.spec.node_name == real_node and pod.status.container_statuses[0].image == image
        apps = Apps(api_client, namespace)
        apps.create(app_body("in-cluster"))
        apps.wait_ready("in-cluster", timeout=90)
        assert apps.apps.read_namespaced_deployment("in-cluster", namespace).metadata.labels[
            "app.kubernetes.io/managed-by"] == "mpcloud"
        logs = core.read_namespaced_pod_log(pod.metadata.name, "mpcloud-system")
        assert f"{namespace}/in-cluster" in logs
    finally:
        install.kubectl(kubeconfig, "delete", "-f", "-", "--wait=true", "--timeout=60s", input=yaml.safe_dump_all(docs),
                        check=False)
        running_operator["op"] = operator_factory("after-in-cluster").start().wait_ready(timeout=60)
