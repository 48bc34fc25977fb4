"""`mpcloud cluster up|down|status|kubeconfig`: a real control plane on 127.0.0.1, orchestrated by kwokctl.

kwokctl (runtime `binary`) starts our cached etcd, kube-apiserver (RBAC on, default admission plugins),
kube-controller-manager, kube-scheduler and the kwok controller as local processes, generates the
certificates and the kubeconfig, and records each process's pid under its work dir. mpcloud then adds
simulated nodes (kata-capable and plain), the RuntimeClasses from `manifests/`, and — where the host can run
them — real nodes (`realnode.py`: kubelet + containerd, tainted `mpcloud.io/node=real`).

State lives in `$MPCLOUD_HOME` (default `~/.local/share/mpcloud`): `kwok/` (kwokctl's work dir),
`nodes/` (the real nodes) and `kubeconfig`. `down` deletes the cluster through kwokctl, checks every recorded pid is gone, and removes it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from mpcloud_operator.devenv.cluster import binaries, images, realnode
from mpcloud_operator.devenv.ports import free_port, port_free

CLUSTER_NAME = "mpcloud"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.128.0.1/16"
KATA_LABEL = "katacontainers.io/kata-runtime"
REPO_ROOT = Path(__file__).resolve().parents[4]


class ClusterError(RuntimeError):
    """The local control plane could not be brought up / inspected; the message says why."""


def home() -> Path:
    return Path(os.environ.get("MPCLOUD_HOME", Path.home() / ".local" / "share" / "mpcloud"))


def kubeconfig_path() -> Path:
    return home() / "kubeconfig"


def _workdir() -> Path:
    return home() / "kwok"


def _kwokctl(args: list[str], timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, KWOK_WORKDIR=str(_workdir()))
    # kwokctl edits $KUBECONFIG (default ~/.kube/config) on create/delete; it must only ever edit ours,
    # or deleting one mpcloud cluster would strip the same-named context from another's kubeconfig.
    env.pop("KUBECONFIG", None)
    cmd = [str(binaries.binary_path("kwokctl")), *args, "--name", CLUSTER_NAME]
    if args[0] in ("create", "delete"):  # the only kwokctl commands that touch a kubeconfig
        cmd += ["--kubeconfig", str(kubeconfig_path())]
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"`kwokctl {' '.join(args)}` did not finish in {timeout:.0f}s") from exc
    if check and res.returncode != 0:
        raise ClusterError(f"`kwokctl {' '.join(args)}` failed ({res.returncode}):\n{(res.stderr or res.stdout)[-3000:]}")
    return res


def _kwokctl_config(port: int, real_nodes: int) -> dict:
    b = binaries.binary_path
    apiserver_args = [
        {"key": "service-cluster-ip-range", "value": SERVICE_CIDR},
        # Logs, exec and port-forward of pods on real nodes: the API server calls their kubelet as admin
        # (a kubelet authorizes it by webhook; it does not verify the kubelet's self-issued serving cert).
        {"key": "kubelet-client-certificate", "value": str(_pki_dir() / "admin.crt")},
        {"key": "kubelet-client-key", "value": str(_pki_dir() / "admin.key")},
        # A real node's name is no DNS name here; its InternalIP is the bridge address.
        {"key": "kubelet-preferred-address-types", "value": "InternalIP,Hostname"},
    ]
    if real_nodes:
        # In-cluster clients on a real node reach the API server through the `kubernetes` Service, whose
        # endpoint is this host's default-interface address (the certificate names it): listen there too.
        apiserver_args.append({"key": "bind-address", "value": "0.0.0.0"})
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "bindAddress": "127.0.0.1",
            "kubeApiserverPort": port,
            "kubeAuthorization": True,  # --authorization-mode=Node,RBAC
            "kubeAdmission": True,  # default admission plugins, RuntimeClass among them
            "kubeApiserverBinary": str(b("kube-apiserver")),
            "kubeControllerManagerBinary": str(b("kube-controller-manager")),
            "kubeSchedulerBinary": str(b("kube-scheduler")),
            "kubectlBinary": str(b("kubectl")),
            "kwokControllerBinary": str(b("kwok")),
            "etcdBinary": str(b("etcd")),
            "kubeVersion": binaries.KUBE_VERSION,
            "etcdVersion": binaries.ETCD_VERSION.lstrip("v"),
            "kwokVersion": binaries.KWOK_VERSION,
            "quietPull": True,
            # In-cluster clients verify the API server as the `kubernetes` Service's ClusterIP.
            "kubeApiserverCertSANs": [str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))],
        },
        # kube-apiserver's default Service range is a /24 (254 ClusterIPs) and kwok's pod range too small
        # for benchmarks with thousands of apps: give both room.
        "componentsPatches": [
            {"name": "kube-apiserver", "extraArgs": apiserver_args},
            {"name": "kwok-controller", "extraArgs": [
                {"key": "cidr", "value": POD_CIDR},
                # kwokctl makes kwok manage every node; a real node's status and pods belong to its kubelet.
                {"key": "manage-all-nodes", "value": "false"},
                {"key": "manage-nodes-with-annotation-selector", "value": "kwok.x-k8s.io/node=fake"},
            ]},
        ],
    }


def is_running() -> bool:
    """True when the cluster's kubeconfig exists and its API server answers /readyz."""
    if not kubeconfig_path().exists():
        return False
    res = kubectl(["get", "--raw", "/readyz"], check=False, timeout=10)
    return res.returncode == 0 and res.stdout.strip() == "ok"


def kubectl(args: list[str], check: bool = True, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the cached kubectl against the local cluster."""
    cmd = [str(binaries.binary_path("kubectl")), "--kubeconfig", str(kubeconfig_path()), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise ClusterError(f"`kubectl {' '.join(args)}` failed: {res.stderr.strip()[-2000:]}")
    return res


@dataclass(frozen=True)
class NodePlan:
    kata: int
    plain: int

    @classmethod
    def from_total(cls, total: int) -> NodePlan:
        if total < 3:
            raise ClusterError("--nodes must be at least 3 (2 kata-capable nodes and 1 plain node)")
        plain = max(1, total // 3)
        return cls(kata=total - plain, plain=plain)


def node_manifest(name: str, kata: bool, cpu: str = "16", memory: str = "64Gi", pods: str = "110") -> dict:
    """A kwok-managed Node with realistic allocatable resources (a 16-core, 64 GiB machine)."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "ecs.g7.4xlarge",
        "type": "kwok",
    }
    if kata:
        labels[KATA_LABEL] = "true"
    resources = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "200Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            # kwok's controller manages nodes carrying this annotation (its default selector).
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {
            "allocatable": resources,
            "capacity": resources,
        },
    }


def _node_names(plan: NodePlan) -> list[tuple[str, bool]]:
    return [(f"kata-node-{i}", True) for i in range(plan.kata)] + [(f"plain-node-{i}", False) for i in range(plan.plain)]


def up(nodes: int = 3, port: int | None = None, log: Callable[[str], None] = print, timeout: float = 120,
       real_nodes: int | None = None) -> Path:
    """Bring the cluster up (idempotent): build/cached binaries, control plane, nodes, RuntimeClasses.

    `real_nodes`: kubelet + containerd nodes on this host (`realnode.py`); None means one where the host
    can run it (else kwok only, saying why), an explicit number fails when it cannot."""
    plan = NodePlan.from_total(nodes)
    started = time.monotonic()
    if real_nodes is None:
        problems = realnode.host_problems()
        real_nodes = 0 if problems else 1
        if problems:
            log("no real node (kwok only): " + "; ".join(problems))
    elif real_nodes > 0 and (problems := realnode.host_problems()):
        raise ClusterError("this host cannot run a real node: " + "; ".join(problems))
    names = binaries.control_plane_names() | (binaries.NODE_BINARIES if real_nodes else set())
    binaries.ensure_binaries(log, names=names)
    if is_running():
        log(f"cluster {CLUSTER_NAME!r} already running ({kubeconfig_path()})")
    else:
        if _cluster_exists():
            log("found a stopped or broken cluster: deleting it first")
            down(log=lambda _m: None)
        if port is not None and not port_free(port):
            raise ClusterError(f"port {port} on 127.0.0.1 is already in use; pick another with --port or stop what uses it")
        port = port or free_port()
        home().mkdir(parents=True, exist_ok=True)
        config = home() / "kwokctl.yaml"
        config.write_text(yaml.safe_dump(_kwokctl_config(port, real_nodes), sort_keys=False))
        log(f"starting etcd, kube-apiserver (127.0.0.1:{port}), controller-manager, scheduler, kwok")
        try:
            _kwokctl(["create", "cluster", "--config", str(config),
                      "--wait", f"{int(timeout)}s", "--timeout", f"{int(timeout)}s"], timeout=timeout + 60)
        except ClusterError as exc:
            logs = _component_log_tail()
            down(log=lambda _m: None)
            raise ClusterError(f"{exc}\n{logs}") from exc
        _wait_for(lambda: is_running(), timeout, "the API server to report ready")
    _ensure_nodes(plan, log)
    _apply_runtime_classes(log)
    _ensure_real_nodes(real_nodes, log, timeout)
    _wait_for(lambda: _ready_nodes() >= plan.kata + plan.plain + real_nodes, timeout, "the nodes to become Ready")
    # Pods can only be created once the controller-manager has made the namespace's default ServiceAccount.
    _wait_for(lambda: kubectl(["get", "serviceaccount", "default", "-n", "default"], check=False).returncode == 0,
              timeout, "the default ServiceAccount")
    log(f"cluster ready in {time.monotonic() - started:.1f}s; KUBECONFIG={kubeconfig_path()}")
    return kubeconfig_path()


def _ensure_nodes(plan: NodePlan, log: Callable[[str], None]) -> None:
    wanted = _node_names(plan)
    docs = [node_manifest(name, kata) for name, kata in wanted]
    # Nodes are created once (their status then belongs to kwok); `create` skips ones that exist.
    existing = set(kubectl(["get", "nodes", "-o", "name"]).stdout.split())
    new = [d for d in docs if f"node/{d['metadata']['name']}" not in existing]
    if new:
        kubectl(["create", "-f", "-"], input=yaml.safe_dump_all(new))
        log(f"created {len(new)} simulated nodes ({plan.kata} kata-capable, {plan.plain} plain in total)")


def _pki_dir() -> Path:
    return _workdir() / "clusters" / CLUSTER_NAME / "pki"


def _server() -> str:
    return yaml.safe_load(kubeconfig_path().read_text())["clusters"][0]["cluster"]["server"]


def _ensure_real_nodes(count: int, log: Callable[[str], None], timeout: float) -> None:
    """Start `count` real nodes (and one kube-proxy) and stop any beyond it; the kubelets register themselves."""
    config = home() / "kwokctl.yaml"
    if count and config.exists() and "0.0.0.0" not in config.read_text():
        log("note: the API server was started without real nodes and listens on 127.0.0.1 only, so pods cannot "
            "reach it (in-cluster clients fail); `mpcloud cluster down` and `up` again to fix that")
    running = {s.name: s for s in realnode.states(home())}
    wanted = [realnode.node_name(i) for i in range(count)]
    for name, state in running.items():
        if name not in wanted:
            _drain(name)
            realnode.wait_idle(state)
            realnode.stop_node(state, log)
            kubectl(["delete", "node", name, "--ignore-not-found", "--wait=false"], check=False)
    if count:
        kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager", "mpcloud-install", "-f", "-"],
                input=yaml.safe_dump_all(realnode.DNS_RBAC))
    for i in range(count):
        try:
            state = realnode.start_node(home(), i, _server(), _pki_dir(), log, timeout)
            if i == 0 and (problem := realnode.kube_proxy_problem()) and "kube-proxy" not in state.pids:
                log(f"no kube-proxy for this cluster, so no Services on its real nodes: {problem}")
            elif i == 0:
                realnode.start_kube_proxy(state, _server(), _pki_dir(), realnode.POD_NETWORK.with_prefixlen, log)
        except realnode.RealNodeError as exc:
            raise ClusterError(str(exc)) from exc


def build_images(names: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, images.Image]:
    """Build the project's images (`images.py`) and import them into every running real node's containerd."""
    built = images.build(log, names=names or images.NAMES)
    for state in realnode.states(home()):
        if realnode.pid_alive(state.pids.get("containerd", 0)):
            images.import_into(state.socket, built.values())
            log(f"imported {', '.join(i.ref for i in built.values())} into {state.name}")
    return built


def _drain(node: str, timeout: float = 30) -> None:
    """Delete the node's pods through the API so its kubelet stops them (CNI teardown included)."""
    selector = f"spec.nodeName={node}"
    if kubectl(["delete", "pods", "-A", "--field-selector", selector, "--grace-period=1", "--wait=false"],
               check=False, timeout=30).returncode != 0:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = kubectl(["get", "pods", "-A", "--field-selector", selector, "-o", "name"], check=False, timeout=10)
        if res.returncode != 0 or not res.stdout.strip():
            return
        time.sleep(0.5)


def _apply_runtime_classes(log: Callable[[str], None]) -> None:
    path = REPO_ROOT / "manifests" / "runtimeclasses.yaml"
    if not path.exists():
        raise ClusterError(f"{path} not found: run mpcloud from a checkout of the repository")
    kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager", "mpcloud-install", "-f", str(path)])
    log("RuntimeClasses installed from manifests/runtimeclasses.yaml")


def _ready_nodes() -> int:
    res = kubectl(["get", "nodes", "-o", "json"], check=False)
    if res.returncode != 0:
        return 0
    items = json.loads(res.stdout)["items"]
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
        for n in items
    )


def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{_component_log_tail()}")


def _cluster_exists() -> bool:
    return (_workdir() / "clusters" / CLUSTER_NAME).exists()


def _pid_files() -> list[Path]:
    return sorted((_workdir() / "clusters" / CLUSTER_NAME / "pids").glob("*.pid"))


def _component_log_tail(lines: int = 15) -> str:
    out = []
    for log in sorted((_workdir() / "clusters" / CLUSTER_NAME / "logs").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {log.name} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(out)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def down(log: Callable[[str], None] = print) -> None:
    """Stop every process of the cluster (by pid) and remove its state."""
    pids = []
    for f in _pid_files():
        try:
            pids.append((f.stem, int(f.read_text().strip())))
        except ValueError:
            pass
    real = realnode.states(home())
    if real and is_running():
        for state in real:
            _drain(state.name)
            realnode.wait_idle(state)
    realnode.stop_all(home(), log)
    if _cluster_exists() and binaries.binary_path("kwokctl").exists():
        _kwokctl(["delete", "cluster"], timeout=120, check=False)
    for name, pid in pids:  # whatever kwokctl did not stop, we do
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            log(f"stopped {name} (pid {pid})")
    shutil.rmtree(_workdir(), ignore_errors=True)
    for f in (kubeconfig_path(), home() / "kwokctl.yaml"):
        f.unlink(missing_ok=True)
    log(f"cluster {CLUSTER_NAME!r} is down; state removed")


def status() -> list[tuple[str, str, str]]:
    """(component, state, detail) rows."""
    rows = []
    for f in _pid_files():
        try:
            pid = int(f.read_text().strip())
        except ValueError:
            continue
        rows.append((f.stem, "running" if _pid_alive(pid) else "stopped", f"pid {pid}"))
    if not rows:
        return [("cluster", "absent", "run `mpcloud cluster up`")]
    api = "ready" if is_running() else "not ready"
    rows.append(("api", api, str(kubeconfig_path())))
    for state in realnode.states(home()):
        for name, pid in state.pids.items():
            rows.append((f"{state.name}/{name}", "running" if realnode.pid_alive(pid) else "stopped", f"pid {pid}"))
    if api == "ready":
        rows.append(("nodes", f"{_ready_nodes()} Ready", ""))
    return rows
