"""Real node timings: `cluster up` with a real node (first and second start), pod start on it, image build.

    python bench/realnode.py [--pods 20] [--burst 10]

Runs its own cluster in a throw-away MPCLOUD_HOME (binaries and image layers come from the shared cache;
build them first: `make binaries images`). Pod start = client-side wall time from `create` to the pod's
Ready condition (kubelet → containerd sandbox + CNI → runc → readiness), for pods created one at a time
and for a burst created together. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20, help="pods started one after another")
    ap.add_argument("--burst", type=int, default=10, help="pods created at once")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mpcloud-bench-realnode-"))
    os.environ["MPCLOUD_HOME"] = str(home)

    from kubernetes import client, config, watch

    from mpcloud_operator.devenv.cluster import images, local, realnode

    quiet = lambda _m: None  # noqa: E731
    rows: dict[str, float] = {}
    try:
        t = time.monotonic()
        built = images.build(quiet, names=["pause", "debian-python"])
        rows["image build (cached layers), s"] = time.monotonic() - t
        t = time.monotonic()
        local.up(real_nodes=1, log=quiet)
        rows["cluster up with a real node (first), s"] = time.monotonic() - t
        local.down(log=quiet)
        t = time.monotonic()
        local.up(real_nodes=1, log=quiet)
        rows["cluster up with a real node (again), s"] = time.monotonic() - t
        t = time.monotonic()
        local.build_images(["debian-python"], log=quiet)
        rows["import debian-python into the node, s"] = time.monotonic() - t

        api = config.new_client_from_config(config_file=str(local.kubeconfig_path()))
        core = client.CoreV1Api(api)
        ns = "bench-realnode"
        core.create_namespace({"metadata": {"name": ns}})
        while not core.list_namespaced_service_account(ns, field_selector="metadata.name=default").items:
            time.sleep(0.2)
        image = built["debian-python"].ref

        def pod(name: str) -> dict:
            return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "start"}},
                    "spec": {"nodeSelector": {realnode.NODE_LABEL: realnode.NODE_LABEL_VALUE},
                             "tolerations": [{"key": realnode.NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
                             "terminationGracePeriodSeconds": 0,
                             "containers": [{"name": "c", "image": image, "imagePullPolicy": "Never",
                                             "command": ["sleep", "3600"]}]}}

        def start(name: str) -> float:
            t0 = time.monotonic()
            core.create_namespaced_pod(ns, pod(name))
            w = watch.Watch()
            for ev in w.stream(core.list_namespaced_pod, ns, field_selector=f"metadata.name={name}", timeout_seconds=120):
                conds = {c.type: c.status for c in ev["object"].status.conditions or []}
                if conds.get("Ready") == "True":
                    w.stop()
                    return time.monotonic() - t0
            raise RuntimeError(f"{name} not Ready within 120 s")

        sequential = [start(f"seq-{i}") for i in range(args.pods)]
        with ThreadPoolExecutor(args.burst) as pool:
            burst = list(pool.map(start, [f"burst-{i}" for i in range(args.burst)]))
        t = time.monotonic()
        core.delete_namespace(ns)
        while core.list_namespace(field_selector=f"metadata.name={ns}").items:
            time.sleep(0.2)
        rows[f"delete namespace with {args.pods + args.burst} pods, s"] = time.monotonic() - t
    finally:
        local.down(log=quiet)
        shutil.rmtree(home, ignore_errors=True)

    sizes = {n: i.size / 2**20 for n, i in built.items()}
    print(f"{'measure':<48} {'value':>8}")
    for k, v in rows.items():
        print(f"{k:<48} {v:8.1f}")
    for label, xs in ((f"pod start, one at a time (n={len(sequential)})", sequential),
                      (f"pod start, burst of {len(burst)}", burst)):
        print(f"{label + ', p50 / p95 / max, s':<48} {percentile(xs, 50):8.2f} {percentile(xs, 95):6.2f} {max(xs):6.2f}")
    for n, mib in sizes.items():
        print(f"{'image ' + n + ', MiB':<48} {mib:8.1f}")
    print(json.dumps({"bench": "realnode", **{k: round(v, 2) for k, v in rows.items()},
                      "pod_start_seq_p50_s": round(percentile(sequential, 50), 3),
                      "pod_start_seq_p95_s": round(percentile(sequential, 95), 3),
                      "pod_start_burst_p50_s": round(percentile(burst, 50), 3),
                      "pod_start_burst_p95_s": round(percentile(burst, 95), 3),
                      "image_mib": {n: round(v, 1) for n, v in sizes.items()}}))


if __name__ == "__main__":
    main()
