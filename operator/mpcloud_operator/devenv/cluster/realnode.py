"""Real nodes for the local cluster: containerd + runc + a CNI bridge + kubelet on this host, and kube-proxy.

kwok's nodes only simulate pods. A real node runs them: its own containerd (Debian's, runc only — this host
can run neither Kata, whose KVM device is a nested PVM stock guest kernels do not boot on, nor gVisor, whose
shim needs CAP_SYS_RESOURCE), a kubelet built from the control plane's own module graph (`binaries.py`), and
a Linux bridge the CNI `bridge` plugin plugs pods into, and a CoreDNS on the bridge address as the pods'
cluster DNS (`<svc>.<ns>.svc.cluster.local`; anything else forwarded to the host's resolvers). One kube-proxy
(nftables mode, table `kube-proxy`) routes Services for pods and for processes on the host.

Every node is tainted and labelled `mpcloud.io/node=real` (NoSchedule), with no Kata label: only pods that
tolerate the taint land there, so workloads written for the simulated nodes never do.

State lives under `$MPCLOUD_HOME/nodes/<node>/` (containerd root and state, runc root, CNI config and IPAM,
kubelet root, pod logs, certificates, logs) plus `node.json`, which records what was created on the host:
pids, the bridge, cgroup roots, the kernel tunables the kubelet rewrites (restored on `down`). What cannot
live there — netns mounts under /run/netns, libcni's result cache, containerd's shim sockets, kubelet's
/var/log/containers symlinks, kube-proxy's nftables table — is found by name and removed on `down`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from mpcloud_operator.devenv.cluster import binaries, images
from mpcloud_operator.devenv.ports import free_port

NODE_LABEL = "mpcloud.io/node"
NODE_LABEL_VALUE = "real"
TAINT = {"key": NODE_LABEL, "value": NODE_LABEL_VALUE, "effect": "NoSchedule"}
# Pods plug into a /24 of this range; each cluster home hashes to its own /24s, skipping ones in use.
POD_NETWORK = ipaddress.ip_network("10.89.0.0/16")
CNI_BIN_DIR = Path("/usr/lib/cni")
# The longest socket path under a node's runtime dir is ~60 bytes more than the dir (the kubelet's plugin
# registry); containerd refuses paths over 104 bytes. Longer node dirs put their sockets under a short root.
NODE_DIR_MAX = 44
SHORT_RUNTIME_ROOT = Path("/var/lib/mpcloud-nodes")
CLUSTER_DOMAIN = "cluster.local"
DNS_USER = "mpcloud:dns"
# What CoreDNS's kubernetes plugin reads (its upstream ClusterRole `system:coredns`), for its client certificate.
DNS_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": DNS_USER},
     "rules": [{"apiGroups": [""], "resources": ["services", "namespaces", "pods"], "verbs": ["list", "watch"]},
               {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": DNS_USER},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": DNS_USER},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": DNS_USER}]},
]
HOST_TOOLS = {"containerd": "containerd", "containerd-shim-runc-v2": "containerd", "runc": "runc", "ctr": "containerd",
              "nft": "nftables", "ip": "iproute2", "openssl": "openssl"}
CNI_PLUGINS = ("bridge", "host-local", "loopback")
# The kubelet sets these when protectKernelDefaults is off (pkg/kubelet/cm/container_manager_linux.go);
# they are host-global, so their values from before are restored on `down`.
KUBELET_TUNABLES = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
# The kubelet's own iptables chains (pkg/kubelet/kubelet_network_linux.go): (table, chain, built-in chains
# that jump to it). Removed on `down` with the tables they created, when nothing else is left in them.
KUBELET_CHAINS = (("filter", "KUBE-FIREWALL", ("INPUT", "OUTPUT")), ("filter", "KUBE-KUBELET-CANARY", ()),
                  ("nat", "KUBE-KUBELET-CANARY", ()), ("mangle", "KUBE-KUBELET-CANARY", ()),
                  ("mangle", "KUBE-IPTABLES-HINT", ()))


# Host paths the kubelet and containerd create whatever their configured roots (the device-plugin socket
# path is fixed, netns mounts, libcni's cache, shim sockets, log symlinks). Those that did not exist
# before a node started are removed on `down` once empty (a socket only when nothing listens on it).
HOST_PATHS = ("/var/lib/kubelet/device-plugins/kubelet.sock", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet",
              "/var/log/containers", "/run/netns", "/var/lib/cni/results", "/var/lib/cni", "/run/containerd/s",
              "/run/containerd")


class RealNodeError(RuntimeError):
    """This host cannot run a real node, or one failed to start; the message says why."""


def host_problems() -> list[str]:
    """Why this host cannot run a real node (empty: it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root: containerd, the kubelet and the CNI bridge need root")
    if not Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        problems.append("no cgroup memory controller mounted under /sys/fs/cgroup")
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None}
                     | {"containernetworking-plugins" for p in CNI_PLUGINS if not (CNI_BIN_DIR / p).is_file()})
    if missing:
        problems.append(f"missing Debian packages: {' '.join(missing)} (`make node-packages` installs them)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        problems.append("the kernel has no overlay filesystem (containerd's snapshotter)")
    return problems


def _cgroup_v2() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


@dataclass
class NodeState:
    """What one real node created on the host; persisted as node.json so `down` can undo exactly that."""

    name: str
    dir: str
    bridge: str
    subnet: str
    gateway: str
    cgroup_root: str
    kubelet_port: int
    kubelet_healthz_port: int
    dns_health_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    tunables: dict[str, str] = field(default_factory=dict)  # kernel tunables before the kubelet ran
    nft_tables: list[str] = field(default_factory=list)  # "family name" of the nftables tables before it ran
    host_paths: list[str] = field(default_factory=list)  # which of HOST_PATHS existed before it ran

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def runtime_dir(self) -> Path:
        """Where the node's unix sockets live (containerd's, and the kubelet's root dir with its pod-resources and
        plugin sockets): the node's own directory, or — when that is too long for socket paths (sockaddr_un holds
        108 bytes, containerd allows 104; pytest's tmp dirs get there) — a short directory named by a hash of
        the node's directory, removed on `down`."""
        if len(self.dir.encode()) <= NODE_DIR_MAX:
            return self.path
        return SHORT_RUNTIME_ROOT / hashlib.sha256(self.dir.encode()).hexdigest()[:16]

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.runtime_dir / "kubelet"

    @property
    def network_name(self) -> str:
        return self.bridge  # unique per cluster home and node: names libcni's cache files too

    def save(self) -> None:
        (self.path / "node.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, node_dir: Path) -> NodeState | None:
        try:
            return cls(**json.loads((node_dir / "node.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None


def nodes_dir(home: Path) -> Path:
    return home / "nodes"


def node_name(index: int) -> str:
    return f"real-node-{index}"


def _home_hash(home: Path) -> str:
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()


def _subnets_in_use() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    return nets


def _pick_subnet(home: Path, index: int) -> ipaddress.IPv4Network:
    subnets = list(POD_NETWORK.subnets(new_prefix=24))
    start = int(_home_hash(home)[:8], 16) + index
    used = _subnets_in_use()
    for k in range(len(subnets)):
        candidate = subnets[(start + k) % len(subnets)]
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RealNodeError(f"every /24 of {POD_NETWORK} is in use on this host")


def _run(cmd: list[str], check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise RealNodeError(f"`{' '.join(cmd)}` failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-1500:]}")
    return res


# ---------------------------------------------------------------------------------------------- configuration


def containerd_config(state: NodeState, pause_ref: str) -> str:
    d = state.path / "containerd"
    return f"""version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{state.socket}"

[ttrpc]
  address = "{state.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_ref}"
  # Root here lacks CAP_SYS_RESOURCE: the -998 OOM score CRI asks for would be refused.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d / 'runc'}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{state.path / 'cni' / 'net.d'}"
    max_conf_num = 1
"""


def cni_config(state: NodeState) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": state.network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": state.bridge,
                # isGateway would make the plugin switch on host-wide ip_forward; the gateway address is put
                # on the bridge by us instead, and forwarding enabled for this bridge only.
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(state.path / "cni" / "ipam"),
                    "ranges": [[{"subnet": state.subnet, "gateway": state.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0", "gw": state.gateway}],
                },
            },
            {"type": "loopback"},
        ],
    }


def kubelet_config(state: NodeState, ca_file: Path) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": state.gateway,
        "port": state.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": state.kubelet_healthz_port,
        "containerRuntimeEndpoint": f"unix://{state.socket}",
        "cgroupDriver": "cgroupfs",
        # This host runs cgroup v1, which kubelet ≥ 1.35 refuses unless told otherwise.
        "failCgroupV1": False,
        "cgroupRoot": state.cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        # Root here may not lower an OOM score below its own: keep the kubelet at the value it already has.
        "oomScoreAdj": int(Path("/proc/self/oom_score_adj").read_text().strip()),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca_file)}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(state.path / "pki" / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(state.path / "pki" / "kubelet-serving.key"),
        "registerWithTaints": [TAINT],
        "podLogsDir": str(state.path / "pod-logs"),
        "failSwapOn": False,
        "maxPods": 110,
        "serializeImagePulls": False,
        # A shared dev machine's disk is not this node's to police: evict only when it is really full.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%",
                         "nodefs.inodesFree": "2%"},
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        # Fast feedback for tests: status and pod lifecycle events sooner than the production defaults.
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "resolvConf": "/etc/resolv.conf",
        # The node's own CoreDNS on its bridge address: Service names resolve in pods, the rest is forwarded.
        "clusterDNS": [state.gateway],
        "clusterDomain": CLUSTER_DOMAIN,
        "protectKernelDefaults": False,
        "shutdownGracePeriod": "0s",
        "localStorageCapacityIsolation": True,
    }


def _kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
    }


def _issue_cert(pki: Path, ca_crt: Path, ca_key: Path, name: str, subject: str, san: str | None = None) -> tuple[Path, Path]:
    """A client (or serving, with `san`) certificate signed by the cluster's CA."""
    key, csr, crt = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.crt"
    _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", str(key), "-out", str(csr), "-subj", subject])
    ext = pki / f"{name}.ext"
    usage = "serverAuth" if san else "clientAuth"
    ext.write_text(f"keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
                   + (f"subjectAltName={san}\n" if san else ""))
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
          "-CAserial", str(pki / "ca.srl"), "-days", "30", "-sha256", "-extfile", str(ext), "-out", str(crt)])
    key.chmod(0o600)
    return crt, key


# ---------------------------------------------------------------------------------------------- processes


def _start(state: NodeState, name: str, cmd: list[str]) -> int:
    log = open(state.path / "logs" / f"{name}.log", "ab")
    # Own session: a Ctrl-C in the terminal that ran `cluster up` does not reach it; `down` stops it by pid.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    state.pids[name] = proc.pid
    state.save()
    return proc.pid


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negatives name process groups, never one of ours
        return False
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (ProcessLookupError, OSError):
        return False


def _stop_pid(pid: int, grace: float = 10) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds; True if it was running."""
    if not pid_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.1)
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    return True


def _log_tail(state: NodeState, name: str, lines: int = 25) -> str:
    path = state.path / "logs" / f"{name}.log"
    if not path.exists():
        return ""
    return f"--- {path} (last lines)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait(cond: Callable[[], bool], timeout: float, what: str, state: NodeState, log_name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if log_name in state.pids and not pid_alive(state.pids[log_name]):
            raise RealNodeError(f"{log_name} exited while waiting for {what}\n{_log_tail(state, log_name)}")
        time.sleep(0.2)
    raise RealNodeError(f"timed out after {timeout:.0f}s waiting for {what}\n{_log_tail(state, log_name)}")


def ctr(state: NodeState, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return _run(["ctr", "--address", str(state.socket), "-n", "k8s.io", *args], check=check, timeout=timeout)


# ---------------------------------------------------------------------------------------------- up


def _create_bridge(state: NodeState) -> None:
    if subprocess.run(["ip", "link", "show", state.bridge], capture_output=True).returncode != 0:
        _run(["ip", "link", "add", "name", state.bridge, "type", "bridge"])
    _run(["ip", "addr", "replace", f"{state.gateway}/{ipaddress.ip_network(state.subnet).prefixlen}", "dev", state.bridge])
    _run(["ip", "link", "set", state.bridge, "up"])
    # Pod → Service → pod on this bridge is routed back out of it: forwarding for packets that arrive on this
    # bridge only (IPv4 decides by the input device), never the host-wide switch.
    Path(f"/proc/sys/net/ipv4/conf/{state.bridge}/forwarding").write_text("1")


def _nft_tables() -> list[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return sorted(line.removeprefix("table ").strip() for line in out.splitlines() if line.startswith("table "))


def _remove_kubelet_iptables(tables_before: list[str]) -> None:
    """The kubelet's chains, then any iptables table that did not exist before and is now empty."""
    for tool, family in (("iptables", "ip"), ("ip6tables", "ip6")):
        if shutil.which(tool) is None:
            continue
        for table, chain, parents in KUBELET_CHAINS:
            for parent in parents:
                while subprocess.run([tool, "-w", "-t", table, "-D", parent, "-j", chain], capture_output=True).returncode == 0:
                    pass
            subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True)
            subprocess.run([tool, "-w", "-t", table, "-X", chain], capture_output=True)
        for table in ("filter", "nat", "mangle"):
            if f"{family} {table}" in tables_before:
                continue
            listing = subprocess.run(["nft", "-j", "list", "table", family, table], capture_output=True, text=True)
            if listing.returncode == 0:
                objects = json.loads(listing.stdout).get("nftables", [])
                user_chains = [o for o in objects if "chain" in o and "hook" not in o["chain"]]
                if not any("rule" in o for o in objects) and not user_chains:
                    subprocess.run(["nft", "delete", "table", family, table], capture_output=True)


def wait_idle(state: NodeState, timeout: float = 20) -> None:
    """After the node's pods were deleted: until its kubelet has stopped every container (CNI teardown
    included), so `stop_node` has nothing left to kill."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(state.pids.get("kubelet", 0)):
        res = ctr(state, "tasks", "list", check=False)
        if res.returncode != 0 or " RUNNING" not in res.stdout:
            return
        time.sleep(0.3)


def _read_tunables() -> dict[str, str]:
    return {t: Path("/proc/sys", t).read_text().strip() for t in KUBELET_TUNABLES if Path("/proc/sys", t).exists()}


def start_node(home: Path, index: int, server: str, pki: Path, log: Callable[[str], None],
               timeout: float = 120) -> NodeState:
    """Bring up containerd and the kubelet of real node `index`; return once the kubelet serves."""
    name = node_name(index)
    node_dir = nodes_dir(home) / name
    existing = NodeState.load(node_dir)
    if existing and all(pid_alive(p) for p in existing.pids.values()) and {"containerd", "kubelet"} <= set(existing.pids):
        return existing
    if existing:
        stop_node(existing, log=lambda _m: None)
    for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "pki", "logs"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    subnet = _pick_subnet(home, index)
    short = _home_hash(home)[:6]
    state = NodeState(
        name=name, dir=str(node_dir), bridge=f"mpc{short}-{index}", subnet=str(subnet),
        gateway=str(next(subnet.hosts())), cgroup_root=f"/mpcloud-{short}-{index}",
        kubelet_port=free_port(), kubelet_healthz_port=free_port(), dns_health_port=free_port(),
        tunables=_read_tunables(),
        nft_tables=_nft_tables(), host_paths=[p for p in HOST_PATHS if os.path.lexists(p)])
    # The host as it was before this cluster's first node: a sibling already running has changed it.
    for sibling in _siblings(state):
        state.tunables, state.nft_tables, state.host_paths = sibling.tunables, sibling.nft_tables, sibling.host_paths
        break
    state.save()
    try:
        return _start_node(state, server, pki, log, timeout)
    except BaseException:
        stop_node(state, log=lambda _m: None)
        raise


def _start_node(state: NodeState, server: str, pki: Path, log: Callable[[str], None], timeout: float) -> NodeState:
    name, node_dir = state.name, state.path
    started = time.monotonic()
    _create_bridge(state)
    _create_cgroups(state.cgroup_root)
    (node_dir / "cni" / "net.d" / "10-mpcloud.conflist").write_text(json.dumps(cni_config(state), indent=2))

    pause = images.build(log, names=["pause"])["pause"]
    (node_dir / "containerd" / "config.toml").write_text(containerd_config(state, pause.ref))
    state.socket.parent.mkdir(parents=True, exist_ok=True)
    _start(state, "containerd", ["containerd", "--config", str(node_dir / "containerd" / "config.toml")])
    _wait(lambda: state.socket.exists() and ctr(state, "version", check=False).returncode == 0, 30,
          "containerd to answer", state, "containerd")
    # Only the sandbox image: others are imported by `mpcloud image build` (or a test that needs them).
    images.import_into(state.socket, [pause])

    ca_crt, ca_key = pki / "ca.crt", pki / "ca.key"
    own = node_dir / "pki"
    crt, key = _issue_cert(own, ca_crt, ca_key, "kubelet-client", f"/O=system:nodes/CN=system:node:{name}")
    _issue_cert(own, ca_crt, ca_key, "kubelet-serving", f"/O=system:nodes/CN=system:node:{name}",
                san=f"IP:{state.gateway},DNS:{name}")
    kubeconfig = own / "kubelet.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server, ca_crt, crt, key, f"system:node:{name}")))
    _start_dns(state, server, pki)
    config = node_dir / "kubelet" / "config.yaml"
    config.write_text(yaml.safe_dump(kubelet_config(state, ca_crt), sort_keys=False))
    _start(state, "kubelet", [
        str(binaries.binary_path("kubelet")), "--config", str(config), "--kubeconfig", str(kubeconfig),
        "--root-dir", str(state.kubelet_root), "--cert-dir", str(own), "--hostname-override", name,
        "--node-ip", state.gateway, "--node-labels", f"{NODE_LABEL}={NODE_LABEL_VALUE}", "--v", "1"])
    _wait(lambda: _healthz(state.kubelet_healthz_port), timeout, "the kubelet's /healthz", state, "kubelet")
    _wait(lambda: _healthz(state.dns_health_port, "/health"), 30, "CoreDNS's /health", state, "coredns")
    log(f"real node {name}: containerd, CoreDNS, kubelet up in {time.monotonic() - started:.1f}s "
        f"(bridge {state.bridge}, pods on {state.subnet})")
    return state


def corefile(state: NodeState, kubeconfig: Path) -> str:
    return f""".:53 {{
    bind {state.gateway}
    errors
    health 127.0.0.1:{state.dns_health_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    forward . /etc/resolv.conf
    cache 5
}}
"""


def _start_dns(state: NodeState, server: str, pki: Path) -> None:
    """CoreDNS for the node's pods, on its bridge address (port 53 there is ours: the address is)."""
    own = state.path / "pki"
    crt, key = _issue_cert(own, pki / "ca.crt", pki / "ca.key", "coredns", f"/CN={DNS_USER}")
    kubeconfig = own / "coredns.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server, pki / "ca.crt", crt, key, DNS_USER)))
    path = state.path / "Corefile"
    path.write_text(corefile(state, kubeconfig))
    _start(state, "coredns", [str(binaries.binary_path("coredns")), "-conf", str(path)])


def _healthz(port: int, path: str = "/healthz") -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def kube_proxy_problem() -> str | None:
    """kube-proxy's nftables table is host-global: a second cluster's kube-proxy would fight over it."""
    res = subprocess.run(["nft", "list", "table", "ip", "kube-proxy"], capture_output=True, text=True)
    return "an nftables table `ip kube-proxy` already exists (another cluster's kube-proxy?)" if res.returncode == 0 else None


def start_kube_proxy(state: NodeState, server: str, pki: Path, cluster_cidr: str, log: Callable[[str], None]) -> None:
    """One kube-proxy (nftables) for the host, registered as `state`'s node."""
    if "kube-proxy" in state.pids and pid_alive(state.pids["kube-proxy"]):
        return
    own = state.path / "pki"
    crt, key = _issue_cert(own, pki / "ca.crt", pki / "ca.key", "kube-proxy", "/CN=system:kube-proxy")
    kubeconfig = own / "kube-proxy.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server, pki / "ca.crt", crt, key, "system:kube-proxy")))
    healthz, metrics = free_port(), free_port()
    config = state.path / "kube-proxy.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": state.name,
        "bindAddress": state.gateway,
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "clusterCIDR": cluster_cidr,
        # Leave the host's conntrack table sizes and timeouts alone (0 = do not change).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "nodePortAddresses": [state.subnet],
    }, sort_keys=False))
    _start(state, "kube-proxy", [str(binaries.binary_path("kube-proxy")), "--config", str(config), "--v", "1"])
    _wait(lambda: _healthz(healthz), 60, "kube-proxy's /healthz", state, "kube-proxy")
    log(f"kube-proxy (nftables) routes Services on the host and for pods on {state.bridge}")


# ---------------------------------------------------------------------------------------------- down


def _mounts_under(prefixes: list[str]) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _shim_pids(state: NodeState) -> list[int]:
    """containerd-shim-runc-v2 processes of this node's containerd (they outlive it by design)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(state.socket).encode() in argv:
            pids.append(int(proc.name))
    return pids


def _sandbox_netns(state: NodeState) -> list[str]:
    """Network namespace paths of this node's pod sandboxes (from the containers' OCI specs)."""
    res = ctr(state, "containers", "list", "-q", check=False)
    paths = []
    for cid in res.stdout.split():
        info = ctr(state, "containers", "info", cid, check=False)
        try:
            spec = json.loads(info.stdout).get("Spec") or {}
        except ValueError:
            continue
        for ns in (spec.get("linux") or {}).get("namespaces") or []:
            if ns.get("type") == "network" and ns.get("path", "").startswith(("/var/run/netns/", "/run/netns/")):
                paths.append(ns["path"])
    return sorted(set(paths))


def stop_node(state: NodeState, log: Callable[[str], None] = print) -> None:
    """Stop the node's processes by pid and undo what it created on the host (see the module docstring)."""
    for name in ("kube-proxy", "kubelet", "coredns"):
        if name in state.pids and _stop_pid(state.pids[name]):
            log(f"stopped {name} of {state.name} (pid {state.pids[name]})")
    netns: list[str] = []
    containers: list[str] = []
    if "containerd" in state.pids and pid_alive(state.pids["containerd"]):
        netns = _sandbox_netns(state)
        containers = ctr(state, "containers", "list", "-q", check=False).stdout.split()
        # Whatever the kubelet did not stop: kill the containers, then remove them (and their snapshots).
        tasks = ctr(state, "tasks", "list", "-q", check=False).stdout.split()
        for task in tasks:
            ctr(state, "tasks", "kill", "--signal", "SIGKILL", task, check=False)
        for task in tasks:
            for _ in range(50):
                if ctr(state, "tasks", "delete", task, check=False).returncode == 0:
                    break
                time.sleep(0.1)
        for cid in ctr(state, "containers", "list", "-q", check=False).stdout.split():
            ctr(state, "containers", "delete", cid, check=False)
        if tasks:
            log(f"killed {len(tasks)} leftover containers of {state.name}")
    for pid in _shim_pids(state):
        _stop_pid(pid, grace=3)
    if "containerd" in state.pids and _stop_pid(state.pids["containerd"]):
        log(f"stopped containerd of {state.name} (pid {state.pids['containerd']})")
    for path in netns:
        if Path(path).exists():
            subprocess.run(["umount", path], capture_output=True)
            Path(path).unlink(missing_ok=True)
    for point in _mounts_under(sorted({state.dir, str(state.runtime_dir)})):
        subprocess.run(["umount", "-l", point], capture_output=True)
    if subprocess.run(["ip", "link", "show", state.bridge], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "delete", state.bridge], capture_output=True)
        log(f"removed bridge {state.bridge}")
    if "kube-proxy" in state.pids:
        for family, table in KUBE_PROXY_TABLES:
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True)
    # libcni's result cache (/var/lib/cni/results/<network>-<sandbox id>-<interface>): ours by network name, and
    # containerd's built-in `cni-loopback` entries of our sandboxes by id (left when a sandbox was never torn down).
    for cache in Path("/var/lib/cni/results").glob("*"):
        if cache.name.startswith(f"{state.network_name}-") or any(f"-{cid}-" in cache.name for cid in containers):
            cache.unlink(missing_ok=True)
    _remove_cgroups(state.cgroup_root)
    # Host-wide leftovers only once the cluster's last node is gone (its siblings' kubelets recreate them).
    if not _siblings(state):
        _restore_host(state)
    shutil.rmtree(state.path, ignore_errors=True)
    if state.runtime_dir != state.path:
        shutil.rmtree(state.runtime_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            SHORT_RUNTIME_ROOT.rmdir()  # only when no other node's runtime dir is in it


def _siblings(state: NodeState) -> list[NodeState]:
    """The other real nodes of the same cluster home that still run."""
    others = [NodeState.load(d) for d in sorted(state.path.parent.glob("*")) if d != state.path]
    return [o for o in others if o and any(pid_alive(p) for p in o.pids.values())]


def _restore_host(state: NodeState) -> None:
    _remove_kubelet_iptables(state.nft_tables)
    for link in Path("/var/log/containers").glob("*.log"):
        if link.is_symlink() and os.readlink(link).startswith(state.dir):
            link.unlink()
    _remove_host_paths(state.host_paths)
    for tunable, value in state.tunables.items():
        path = Path("/proc/sys", tunable)
        if path.exists() and path.read_text().strip() != value:
            path.write_text(value)


def _cgroup_v1_hierarchies() -> list[Path]:
    """Mount points of the cgroup v1 hierarchies (mountinfo: field 5 the point, after " - " the type)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup":
            points.append(Path(left.split()[4]))
    return sorted(set(points))


def _create_cgroups(root: str) -> None:
    """The kubelet's cgroupRoot must exist in every hierarchy; a new cpuset needs its parent's cpus and mems."""
    base = Path("/sys/fs/cgroup")
    if _cgroup_v2():
        (base / root.lstrip("/")).mkdir(exist_ok=True)
        return
    for hierarchy in _cgroup_v1_hierarchies():
        target = hierarchy / root.lstrip("/")
        target.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / name).exists() and not (target / name).read_text().strip():
                (target / name).write_text((hierarchy / name).read_text())


def _remove_host_paths(existed: list[str]) -> None:
    import socket

    for path in HOST_PATHS:  # deepest first
        p = Path(path)
        if path in existed or not os.path.lexists(p):
            continue
        if p.is_socket():
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(path)
                    continue  # someone serves it
                except OSError:
                    p.unlink(missing_ok=True)
        elif p.is_dir():
            try:
                p.rmdir()
            except OSError:
                pass


def _remove_cgroups(root: str) -> None:
    base = Path("/sys/fs/cgroup")
    tops = [base / root.lstrip("/")] if _cgroup_v2() else [h / root.lstrip("/") for h in _cgroup_v1_hierarchies()]
    # On a v1 host, runc's cgroupfs manager also makes the path under an unmounted /sys/fs/cgroup/unified.
    tops += [base / "unified" / root.lstrip("/")] if not _cgroup_v2() else []
    for top in tops:
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def stop_all(home: Path, log: Callable[[str], None] = print) -> None:
    for node_dir in sorted(nodes_dir(home).glob("*")):
        state = NodeState.load(node_dir)
        if state:
            stop_node(state, log)
        else:
            shutil.rmtree(node_dir, ignore_errors=True)
    shutil.rmtree(nodes_dir(home), ignore_errors=True)


def states(home: Path) -> list[NodeState]:
    return [s for d in sorted(nodes_dir(home).glob("*")) if (s := NodeState.load(d))]
