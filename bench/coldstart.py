"""Cold start of a CloudFunction on the local cluster's real node: 0 instances -> first response, through the gateway.

    python bench/coldstart.py [--samples 20] [--runtime python3.11|nodejs20|both] [--pool]

Starts (or reuses) the local cluster, the function platform (devenv/functions.py: PostgreSQL, SeaweedFS, the
runtime image on the real node, the gateway) and an operator with a compressed keep-alive minute, then for each
sample waits until the function rests at zero and times one request. Reported per runtime: p50 / p99 / max of
the cold request, its parts (the operator's scale write after the gateway's push, pod scheduled -> container
started -> ready, from the pod's own timestamps), and a warm request through the gateway for comparison.
Prints a table and one JSON line. With `--pool` each runtime is measured twice in the same run, side by side:
without a pool (spec.scaling.warmPool.enabled false: a cold *pod* start) and with one (enabled true: the
request is served by a generic pool pod the gateway claims and specialises); before each pool sample the
bench waits until the previous claimed pod is retired and the pool has a ready pod again, and checks that
status.poolStarts counted the sample.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import requests
from kubernetes import client, config

from mpcloud_operator.devenv import functions
from mpcloud_operator.devenv.cluster import install, local
from mpcloud_operator.devenv.launcher import OperatorProcess

MINUTE_SECONDS = 2.0
CODE = {"python3.11": ("index.py", "def main(event, context):\n    return {'ok': True}\n"),
        "nodejs20": ("index.js", "exports.main = async () => ({ ok: true });\n")}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def wait(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _ts(value) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


def pod_phases(core: client.CoreV1Api, ns: str, name: str, after: float) -> dict[str, float] | None:
    """Seconds from the pod's creation to scheduled / container started / ready (the newest pod after `after`)."""
    pods = [p for p in core.list_namespaced_pod(ns, label_selector=f"mpcloud.io/function={name}").items
            if _ts(p.metadata.creation_timestamp) >= after - 1]
    if not pods:
        return None
    pod = max(pods, key=lambda p: _ts(p.metadata.creation_timestamp))
    created = _ts(pod.metadata.creation_timestamp)
    conds = {c.type: _ts(c.last_transition_time) for c in pod.status.conditions or []}
    started = [_ts(cs.state.running.started_at) for cs in pod.status.container_statuses or []
               if cs.state and cs.state.running]
    if "Ready" not in conds or not started:
        return None
    return {"scheduled": conds.get("PodScheduled", created) - created, "started": started[0] - created,
            "ready": conds["Ready"] - created}


def pool_ready(api, ns: str, runtime: str) -> bool:
    name = "cf-pool-" + runtime.replace(".", "") + "-none"
    try:
        dep = client.AppsV1Api(api).read_namespaced_deployment(name, ns)
    except client.ApiException:
        return False
    return (dep.status.ready_replicas or 0) >= 1


def measure(api, gateway: str, ns: str, runtime: str, samples: int, pool: bool = False) -> dict:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    name = ("pool-" if pool else "cold-") + runtime.replace(".", "").replace("nodejs", "js")
    filename, code = CODE[runtime]
    custom.create_namespaced_custom_object("mpcloud.io", "v1alpha1", ns, "cloudfunctions", {
        "apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction", "metadata": {"name": name},
        "spec": {"runtime": runtime, "source": {"inline": {"files": {filename: code}}},
                 "sandbox": {"runtimeClassName": "none", "allowUnsandboxed": True},
                 "scaling": {"keepAlive": {"policy": "fixed", "fixedMinutes": 1}, "warmPool": {"enabled": pool}}}})
    url = f"{gateway}/{ns}/{name}"

    def status() -> dict:
        return custom.get_namespaced_custom_object("mpcloud.io", "v1alpha1", ns, "cloudfunctions", name).get("status") or {}

    wait(lambda: status().get("servingHash"), 180, f"{name} to serve its code")
    cold, parts, warm = [], [], []
    for i in range(samples):
        # at zero: no pod of the function (a retired pool pod included) and, with a pool, a ready pool pod
        wait(lambda: status().get("desiredInstances") == 0 and not core.list_namespaced_pod(
            ns, label_selector=f"mpcloud.io/function={name}").items and (not pool or pool_ready(api, ns, runtime)),
            180, f"{name} at zero (sample {i})")
        pool_starts = status().get("poolStarts") or 0
        started_wall, started = time.time(), time.perf_counter()
        r = requests.post(url, json={}, timeout=60)
        cold.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
        t0 = time.perf_counter()
        requests.post(url, json={}, timeout=10)
        warm.append(time.perf_counter() - t0)
        if pool:
            wait(lambda: (status().get("poolStarts") or 0) > pool_starts, 30, "status.poolStarts to count the sample")
            print(f"  {runtime} pool sample {i + 1}/{samples}: cold {cold[-1] * 1000:.0f} ms, "
                  f"warm {warm[-1] * 1000:.1f} ms", flush=True)
            continue
        phases = wait(lambda: pod_phases(core, ns, name, started_wall), 30, "the pod's timestamps")
        parts.append(phases)
        print(f"  {runtime} sample {i + 1}/{samples}: cold {cold[-1]:.2f}s (pod ready {phases['ready']:.1f}s "
              f"after creation), warm {warm[-1] * 1000:.1f} ms", flush=True)
    return {
        "runtime": runtime, "pool": pool, "samples": samples,
        "cold_p50_s": statistics.median(cold), "cold_p99_s": percentile(cold, 99), "cold_max_s": max(cold),
        "warm_p50_ms": statistics.median(warm) * 1000,
        "pod_started_p50_s": statistics.median(p["started"] for p in parts) if parts else None,
        "pod_ready_p50_s": statistics.median(p["ready"] for p in parts) if parts else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--runtime", choices=["python3.11", "nodejs20", "both"], default="both")
    parser.add_argument("--pool", action="store_true", help="also measure with a warm pool, side by side")
    args = parser.parse_args()
    kubeconfig = local.up(log=lambda m: None)
    install.install(kubeconfig)
    logs = Path(tempfile.mkdtemp(prefix="bench-coldstart-"))
    platform = functions.start(kubeconfig, log=print, log_dir=logs, minute_seconds=MINUTE_SECONDS)
    if not platform.image:
        raise SystemExit("no real node on this host: a cold start needs pods that really run")
    operator = OperatorProcess(install.service_account_kubeconfig(kubeconfig, logs / "operator-kubeconfig"), logs,
                               env=platform.operator_env).start().wait_ready(120)
    api = config.new_client_from_config(config_file=str(kubeconfig))
    ns = f"bench-cold-{uuid.uuid4().hex[:5]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    # The pool's token Secret is written where a namespace lets the operator write Secrets (as for bindings).
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(ns, {
        "metadata": {"name": "mpcloud-operator-bindings"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mpcloud-operator-bindings"},
        "subjects": [{"kind": "ServiceAccount", "name": "mpcloud-operator", "namespace": "mpcloud-system"}]})
    load_before = os.getloadavg()
    try:
        runtimes = ["python3.11", "nodejs20"] if args.runtime == "both" else [args.runtime]
        rows = []
        for rt in runtimes:
            rows.append(measure(api, platform.gateway_url, ns, rt, args.samples))
            if args.pool:
                rows.append(measure(api, platform.gateway_url, ns, rt, args.samples, pool=True))
    finally:
        client.CoreV1Api(api).delete_namespace(ns)
        operator.stop()
        platform.stop()
    load = [round(x, 2) for x in os.getloadavg()]
    fmt = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
    print(f"\n{'runtime':<11} {'start':<5} {'n':>3} {'cold p50 s':>10} {'cold p99 s':>10} {'cold max s':>10} "
          f"{'pod started p50 s':>17} {'pod ready p50 s':>15} {'warm p50 ms':>11}")
    for r in rows:
        print(f"{r['runtime']:<11} {'pool' if r['pool'] else 'pod':<5} {r['samples']:>3} {r['cold_p50_s']:>10.3f} "
              f"{r['cold_p99_s']:>10.3f} {r['cold_max_s']:>10.3f} {fmt(r['pod_started_p50_s']):>17} "
              f"{fmt(r['pod_ready_p50_s']):>15} {r['warm_p50_ms']:>11.1f}")
    print(f"load average (1, 5, 15 min) before: {[round(x, 2) for x in load_before]}, after: {load}; "
          f"{os.cpu_count()} CPUs")
    print(json.dumps({"bench": "coldstart", "rows": rows, "load_before": [round(x, 2) for x in load_before],
                      "load_after": load, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
