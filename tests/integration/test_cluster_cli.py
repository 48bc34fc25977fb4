"""`mpcloud cluster up|status|down` on a second, throw-away cluster (its own MPCLOUD_HOME)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration


def mpcloud(home, *args, timeout=180):
    env = dict(os.environ, MPCLOUD_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "mpcloud_operator", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_port_taken_is_a_clear_error(kubeconfig, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = mpcloud(tmp_path, "cluster", "up", "--port", str(port), "--real-nodes", "0")
    assert res.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in res.stderr


def test_up_is_idempotent_status_reports_and_down_stops_every_process(kubeconfig, tmp_path):
    started = time.monotonic()
    first = mpcloud(tmp_path, "cluster", "up", "--real-nodes", "0")
    assert first.returncode == 0, first.stderr
    cold = time.monotonic() - started
    started = time.monotonic()
    again = mpcloud(tmp_path, "cluster", "up", "--real-nodes", "0")
    assert again.returncode == 0 and "already running" in again.stderr
    warm = time.monotonic() - started
    print(f"cluster up (binaries cached): {cold:.1f}s, again: {warm:.1f}s")
    assert cold < 60 and warm < cold

    status = mpcloud(tmp_path, "cluster", "status")
    assert status.returncode == 0
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller"):
        assert any(line.split()[:2] == [component, "running"] for line in status.stdout.splitlines()), status.stdout
    assert "3 Ready" in status.stdout
    pids = [int(line.split("pid")[1]) for line in status.stdout.splitlines() if "pid" in line]
    kubeconfig_path = mpcloud(tmp_path, "cluster", "kubeconfig").stdout.strip()
    assert kubeconfig_path.endswith("kubeconfig") and os.path.exists(kubeconfig_path)

    down = mpcloud(tmp_path, "cluster", "down")
    assert down.returncode == 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not (tmp_path / "kwok").exists() and not (tmp_path / "kubeconfig").exists()
    assert mpcloud(tmp_path, "cluster", "status").returncode == 1
    # Deleting this cluster must not touch the session cluster's kubeconfig (same cluster name in kwokctl).
    from kubernetes import client, config

    fresh = config.new_client_from_config(config_file=str(kubeconfig))
    assert client.CoreV1Api(fresh).list_node().items


def _host_snapshot() -> dict:
    """What a real node could leave behind on the host: links, mounts, nftables tables, netns, cgroups."""
    def run(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True).stdout

    return {
        "links": sorted(line.split(":")[1].strip() for line in run("ip", "-o", "link").splitlines()),
        "mounts": sorted(line.split()[4] for line in open("/proc/self/mountinfo")),
        "nft": run("nft", "list", "tables"),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "cgroups": sorted(f"{d}/{c}" for d in os.listdir("/sys/fs/cgroup") if os.path.isdir(f"/sys/fs/cgroup/{d}")
                          for c in os.listdir(f"/sys/fs/cgroup/{d}") if os.path.isdir(f"/sys/fs/cgroup/{d}/{c}")),
    }


def test_real_node_up_status_down_leaves_the_host_as_it_was(kubeconfig, tmp_path):
    from mpcloud_operator.devenv.cluster import realnode

    if realnode.host_problems():
        pytest.skip("; ".join(realnode.host_problems()))
    before = _host_snapshot()
    try:
        up = mpcloud(tmp_path, "cluster", "up", "--real-nodes", "1")
        assert up.returncode == 0, up.stderr
        status = mpcloud(tmp_path, "cluster", "status").stdout
        for component in ("real-node-0/containerd", "real-node-0/kubelet"):
            assert any(line.split()[:2] == [component, "running"] for line in status.splitlines()), status
        assert "4 Ready" in status
        pids = [int(line.split("pid")[1]) for line in status.splitlines() if "pid" in line]
        during = _host_snapshot()
        assert set(during["links"]) - set(before["links"])  # its bridge
    except BaseException:
        mpcloud(tmp_path, "cluster", "down")  # a failed start must not leave a control plane running
        raise

    down = mpcloud(tmp_path, "cluster", "down")
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    after = _host_snapshot()
    assert after == before
    assert not (tmp_path / "nodes").exists()
