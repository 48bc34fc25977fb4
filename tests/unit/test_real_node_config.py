"""Pure parts of the real node and the local images: configs, OCI archives, the in-cluster operator Deployment."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from mpcloud_operator.devenv.cluster import images, install, local, realnode


def _state(tmp_path: Path) -> realnode.NodeState:
    return realnode.NodeState(name="real-node-0", dir=str(tmp_path), bridge="mpcabcdef-0", subnet="10.89.7.0/24",
                              gateway="10.89.7.1", cgroup_root="/mpcloud-abcdef-0", kubelet_port=40001,
                              kubelet_healthz_port=40002)


def test_kubelet_config_fits_this_host_and_taints_the_node(tmp_path):
    cfg = realnode.kubelet_config(_state(tmp_path), tmp_path / "ca.crt")
    assert cfg["failCgroupV1"] is False and cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["registerWithTaints"] == [{"key": "mpcloud.io/node", "value": "real", "effect": "NoSchedule"}]
    assert cfg["oomScoreAdj"] >= 0  # never lower than root here may set
    assert cfg["address"] == "10.89.7.1" and cfg["readOnlyPort"] == 0 and cfg["authorization"]["mode"] == "Webhook"
    assert cfg["clusterDNS"] == ["10.89.7.1"]  # the node's CoreDNS, bound to its bridge address
    state = _state(tmp_path)
    corefile = realnode.corefile(state, tmp_path / "kc")
    assert "bind 10.89.7.1" in corefile and f"kubernetes {realnode.CLUSTER_DOMAIN}" in corefile
    # Nothing under /var/lib/kubelet or /var/log/pods: state stays in the node's directory.
    assert cfg["podLogsDir"].startswith(str(tmp_path)) and cfg["containerRuntimeEndpoint"] == f"unix://{_state(tmp_path).socket}"


def test_cni_config_keeps_forwarding_and_ipam_state_local(tmp_path):
    cni = realnode.cni_config(_state(tmp_path))
    bridge = cni["plugins"][0]
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False  # no host-wide ip_forward, no NAT rules
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.89.7.0/24", "gateway": "10.89.7.1"}]]


def test_containerd_config_restricts_oom_score_and_uses_its_own_roots(tmp_path):
    text = realnode.containerd_config(_state(tmp_path), "mpcloud.local/pause:abc")
    assert "restrict_oom_score_adj = true" in text and 'sandbox_image = "mpcloud.local/pause:abc"' in text
    for key in ("root", "state"):
        assert f'{key} = "{tmp_path}/containerd/' in text
    assert f'Root = "{tmp_path}/containerd/runc"' in text and "SystemdCgroup = false" in text


def test_subnet_is_stable_per_home_and_skips_used_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(realnode, "_subnets_in_use", lambda: [])
    first = realnode._pick_subnet(tmp_path, 0)
    assert first == realnode._pick_subnet(tmp_path, 0) and first.subnet_of(realnode.POD_NETWORK)
    monkeypatch.setattr(realnode, "_subnets_in_use", lambda: [first])
    assert realnode._pick_subnet(tmp_path, 0) != first


def test_oci_archive_is_tagged_with_its_manifest_digest(tmp_path):
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("hello")
        tar.addfile(info)
    a = images.write_archive(images.Image("x", [layer], ["/hello"]), tmp_path / "a")
    b = images.write_archive(images.Image("x", [layer], ["/hello"]), tmp_path / "b")
    assert a.ref == b.ref and a.ref.startswith("mpcloud.local/x:")  # same content, same tag
    with tarfile.open(a.archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        entry = index["manifests"][0]
        manifest = tar.extractfile(f"blobs/sha256/{entry['digest'][7:]}").read()
        assert hashlib.sha256(manifest).hexdigest()[:12] == a.ref.rsplit(":", 1)[1]
        assert entry["annotations"]["io.containerd.image.name"] == a.ref
        config_digest = json.loads(manifest)["config"]["digest"][7:]
        config = json.load(tar.extractfile(f"blobs/sha256/{config_digest}"))
        assert config["config"]["Entrypoint"] == ["/hello"]
    c = images.write_archive(images.Image("x", [layer], ["/other"]), tmp_path / "c")
    assert c.ref != a.ref


def test_function_runtime_image_is_the_operator_layers_with_pinned_nodejs(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "images_dir", lambda: tmp_path)
    bases: list[tuple[str, ...]] = []

    def fake_layer(name):
        path = tmp_path / f"{name}.tar"
        with tarfile.open(path, "w") as tar:
            tar.addfile(tarfile.TarInfo(name))
        return path

    def fake_base(log, packages=images.BASE_PACKAGES, name="debian-python"):
        bases.append(packages)
        return fake_layer(name)

    monkeypatch.setattr(images, "base_layer", fake_base)
    monkeypatch.setattr(images, "python_deps_layer", lambda log: fake_layer("deps"))
    monkeypatch.setattr(images, "operator_source_layer", lambda log: fake_layer("src"))
    monkeypatch.setattr(images, "node_layer", lambda log: fake_layer("node"))
    built = images.build(lambda m: None, names=["operator", "function-runtime"])
    runtime, operator = built["function-runtime"], built["operator"]
    assert "libstdc++6" in bases[-1] and "python3" in bases[-1]
    assert [p.name for p in runtime.layers] == ["debian-python-libstdcxx.tar", "node.tar", "deps.tar", "src.tar"]
    assert runtime.layers == operator.layers  # the same blobs; only the entrypoint differs
    assert f"MPCLOUD_NODE={images.NODE_PATH}" in runtime.env and images.NODE_VERSION.startswith("20.")
    assert runtime.entrypoint == ["/usr/bin/python3", "-m", "mpcloud_operator.functions.host"]
    assert runtime.user == operator.user and f"MPCLOUD_NODE={images.NODE_PATH}" in runtime.env
    assert runtime.ref.startswith("mpcloud.local/function-runtime:") and "function-runtime" in images.NAMES


def test_operator_deployment_is_the_manifest_with_local_image_and_placement():
    toleration = {"key": "mpcloud.io/node", "operator": "Equal", "value": "real", "effect": "NoSchedule"}
    docs = install.operator_deployment("mpcloud.local/operator:abc", toleration, {"mpcloud.io/node": "real"})
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["tolerations"] == [toleration] and pod["nodeSelector"] == {"mpcloud.io/node": "real"}
    assert [(c["image"], c["imagePullPolicy"]) for c in pod["containers"]] == [("mpcloud.local/operator:abc", "Never")]
    assert pod["securityContext"]["runAsUser"] == images.NONROOT_UID  # the image's nonroot user
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "NetworkPolicy"}


def test_kwok_manages_only_its_own_nodes_and_the_api_server_reaches_kubelets():
    cfg = local._kwokctl_config(12345, real_nodes=1)
    patches = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]} for p in cfg["componentsPatches"]}
    assert patches["kwok-controller"]["manage-all-nodes"] == "false"
    assert patches["kube-apiserver"]["kubelet-preferred-address-types"].startswith("InternalIP")
    assert patches["kube-apiserver"]["bind-address"] == "0.0.0.0"
    assert "bind-address" not in {a["key"] for p in local._kwokctl_config(1, real_nodes=0)["componentsPatches"]
                                  for a in p["extraArgs"]}
    assert "10.96.0.1" in cfg["options"]["kubeApiserverCertSANs"]


def test_host_problems_name_the_missing_packages(monkeypatch):
    monkeypatch.setattr(realnode.shutil, "which", lambda tool: None)
    problems = "; ".join(realnode.host_problems())
    assert "containerd" in problems and "runc" in problems and "make node-packages" in problems


def test_asking_for_a_real_node_on_a_host_that_cannot_is_a_clear_error(monkeypatch):
    import pytest

    monkeypatch.setattr(realnode, "host_problems", lambda: ["not root: containerd, the kubelet and the CNI bridge need root"])
    monkeypatch.setattr(local.binaries, "ensure_binaries", lambda *a, **k: pytest.fail("must fail before building"))
    with pytest.raises(local.ClusterError, match="cannot run a real node: not root"):
        local.up(real_nodes=1, log=lambda _m: None)


def test_sockets_of_a_node_in_a_long_directory_go_to_a_short_one(tmp_path):
    short = _state(tmp_path)
    short.dir = "/work/homes/ci/nodes/real-node-0"
    assert short.socket == Path(short.dir) / "containerd" / "containerd.sock"
    assert short.kubelet_root == Path(short.dir) / "kubelet"
    deep = _state(tmp_path)
    deep.dir = "/tmp/pytest-of-root/pytest-12/test_real_node_up_status_down_0/nodes/real-node-0"
    assert deep.runtime_dir.parent == realnode.SHORT_RUNTIME_ROOT
    assert deep.runtime_dir == realnode.NodeState(**deep.__dict__).runtime_dir  # the same on `down`
    # containerd allows 104 bytes; the kubelet's plugin registry socket is the longest under its root dir.
    for path in (f"{deep.socket}.ttrpc", f"{deep.kubelet_root}/plugins_registry/some-csi-driver-reg.sock"):
        assert len(path) <= 104, path
