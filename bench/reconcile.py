"""Reconcile throughput: N MiniProgramApps applied at once on the local control plane until all are Ready.

Side by side in one run (same cluster, same machine):
  raw   — the "raw-write bound": one client process (8 threads, like the operator's 8 workers) server-side
          applies the same child objects the operator would create (from the same pure builders), then waits
          until every Deployment has its replicas available — once before and once after the operator phase
          (A-B-A: a drift in the machine's load shows as two different raw totals; the ratio uses their mean);
  mpcloud — the operator (a real `mpcloud operator run` process with its own ServiceAccount) reconciles N
          MiniProgramApps created by 8 client threads; done when every app reports Ready for its generation.
Reported: total time, apps/s, p50/p95 time-to-Ready (per app: Ready seen − create returned), API requests per
app made by the operator (API server's APF counter for the `service-accounts` flow schema, which only the
operator uses here, and the operator's own per-call counter), operator peak RSS (VmHWM) and CPU, and the ratio
mpcloud / raw. Then, with all N apps Ready and the operator quiet (no write for 5 s; the time it took to get
there is reported): the operator's writes during an idle window (--idle-seconds; 300 s
spans a relist of every watch, kopf's server timeout being 270 s), the time to repair a hand edit of one
Deployment while idle, and the same during a burst of --burst new apps. Extra kwok nodes are added so every
pod fits. The raw phase's namespace is deleted, and waited for, before the operator phase starts, so both
phases start from the same cluster (ClusterIP allocation and the controllers' work grow with the number of
objects); the burst's Services come on top of the operator phase's: the table says how many existed.

    python bench/reconcile.py [--apps 1000] [--replicas 1] [--skip-raw | --raw-once] [--reuse-cluster]
                              [--idle-seconds 30] [--burst 1000]

By default it brings up a fresh local cluster of its own (a temporary MPCLOUD_HOME) and removes it at the end,
so earlier runs' objects (and their deletion) cannot skew the numbers; --reuse-cluster uses $MPCLOUD_HOME's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mpcloud_operator.devenv import demo  # noqa: E402
from mpcloud_operator.devenv.cluster import install, local  # noqa: E402
from mpcloud_operator.devenv.launcher import OperatorProcess  # noqa: E402
from mpcloud_operator.kinds import paths  # noqa: E402
from mpcloud_operator.kube.client import KubeClient  # noqa: E402
from mpcloud_operator.reconcile.informer import Informer  # noqa: E402
from mpcloud_operator.miniprogramapp import resources  # noqa: E402
from mpcloud_operator.miniprogramapp.model import MiniProgramApp  # noqa: E402

GROUP, VERSION, PLURAL = "mpcloud.io", "v1alpha1", "miniprogramapps"
THREADS = 8


def app_body(name: str, replicas: int) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MiniProgramApp", "metadata": {"name": name},
            "spec": {"image": "nginxinc/nginx-unprivileged:1.27", "ports": [{"name": "http", "containerPort": 8080}],
                     "replicas": {"min": min(replicas, 1), "max": max(replicas, 1), "desired": replicas},
                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}}


def ensure_capacity(core: client.CoreV1Api, pods: int) -> int:
    """Add big kata-capable kwok nodes so that `pods` more pods fit (110 pods per node)."""
    have = len(core.list_node(label_selector="mpcloud.io/bench=true").items)
    need = pods // 100 + 1
    for i in range(have, need):
        node = local.node_manifest(f"bench-node-{i}", kata=True, cpu="256", memory="1Ti", pods="110")
        node["metadata"]["labels"]["mpcloud.io/bench"] = "true"
        core.create_node(node)
    return need


def apiserver_sa_requests(api: client.ApiClient) -> float:
    text = _raw_metrics(api)
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_flowcontrol_dispatched_requests_total") and 'flow_schema="service-accounts"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _raw_metrics(api: client.ApiClient) -> str:
    method, url, headers, _, _ = api.param_serialize(method="GET", resource_path="/metrics",
                                                      auth_settings=["BearerToken"])
    resp = api.call_api(method, url, header_params=headers)
    resp.read()
    return resp.data.decode()


def operator_requests(metrics_text: str) -> dict[str, float]:
    """The operator's own count of its API requests (mpcloud_kube_requests_total), by "METHOD resource"."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        m = re.match(r'mpcloud_kube_requests_total\{code="[^"]*",method="([A-Z]+)",resource="([^"]+)"\} (\S+)', line)
        if m:
            key = f"{m.group(1)} {m.group(2)}"
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return dict(sorted(out.items()))


def wait_all(kube: KubeClient, path: str, done, n: int, timeout: float) -> dict[str, float]:
    """Watch `path` with the operator's own Informer (LIST, then WATCH, re-LIST on 410); return {name: first time
    done(object) held} once n names are done. A watch, not a poll of LISTs: a 1,000-item LIST every half second
    costs the API server (and this process) enough CPU on 2 cores to slow the phase it measures."""
    seen: dict[str, float] = {}
    all_done = threading.Event()

    def on_event(type_: str, obj: dict) -> None:  # the informer's one thread
        if type_ in ("ADDED", "MODIFIED") and done(obj):
            seen.setdefault(obj["metadata"]["name"], time.monotonic())
            if len(seen) >= n:
                all_done.set()

    informer = Informer(kube, path, on_event, watch_timeout=60, name="bench-wait").start()
    try:
        if not all_done.wait(timeout):
            raise RuntimeError(f"only {len(seen)}/{n} done after {timeout:.0f}s")
    finally:
        informer.stop()
    return dict(seen)


WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def operator_writes(op: OperatorProcess) -> dict[str, float]:
    """The operator's writes so far, by "METHOD resource"."""
    return {k: v for k, v in operator_requests(op.metrics()).items() if k.split()[0] in WRITE_METHODS}


def drift_repair_s(api: client.ApiClient, ns: str, name: str, timeout: float = 120) -> float:
    """Change one Deployment's image by hand (another field manager) and time until the operator restores it."""
    apps_api = client.AppsV1Api(api)
    want = apps_api.read_namespaced_deployment(name, ns).spec.template.spec.containers[0].image
    patch = {"spec": {"template": {"spec": {"containers": [{"name": resources.CONTAINER,
                                                             "image": f"drifted.example/{uuid.uuid4().hex[:6]}:1"}]}}}}
    start = time.monotonic()
    apps_api.patch_namespaced_deployment(name, ns, patch, field_manager="bench-drift")
    while time.monotonic() - start < timeout:
        if apps_api.read_namespaced_deployment(name, ns).spec.template.spec.containers[0].image == want:
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"drift on {ns}/{name} not repaired after {timeout}s")


def steady_state(api: client.ApiClient, ns: str, n: int, replicas: int, op: OperatorProcess, idle_s: float,
                 burst: int) -> dict:
    """With all n apps Ready: writes while idle, drift repair while idle and during a burst of new apps."""
    custom = client.CustomObjectsApi(api)
    # Ready is not the end of an app's writes: a Deployment the controller-manager observes late moves the
    # app's Progressing condition once more. Idle starts when the operator has written nothing for 5 s.
    started, quiet_since, before = time.monotonic(), time.monotonic(), operator_writes(op)
    while time.monotonic() - quiet_since < 5 and time.monotonic() - started < 300:
        time.sleep(1)
        now_writes = operator_writes(op)
        if now_writes != before:
            quiet_since, before = time.monotonic(), now_writes
    settle_s = quiet_since - started
    time.sleep(idle_s)
    after = operator_writes(op)
    idle_by_call = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
    idle_repairs = [drift_repair_s(api, ns, f"app-{i}") for i in (0, n // 2, n - 1)]
    out = {"settle_s": settle_s, "idle_seconds": idle_s, "idle_writes": sum(idle_by_call.values()), "idle_writes_by_call": idle_by_call,
           "drift_repair_idle_s": idle_repairs}
    if burst:
        def create(i: int) -> None:
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, app_body(f"burst-{i}", replicas))
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(create, i) for i in range(burst)]
            time.sleep(3)  # the burst is in full flow: its apps fill the work queue
            out["drift_repair_burst_s"] = [drift_repair_s(api, ns, f"app-{i}") for i in (1, n // 3)]
            out["burst_created_before_repair"] = sum(f.done() for f in futures)
            for f in futures:
                f.result()
    return out


def run_raw(api: client.ApiClient, ns: str, n: int, replicas: int) -> dict:
    objs = []
    for i in range(n):
        body = app_body(f"app-{i}", replicas)
        body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), generation=1)
        app = MiniProgramApp.from_body(body)
        for obj in resources.desired_objects(app):
            obj["metadata"].pop("ownerReferences", None)  # no owner: these are written without the operator
            # Not labelled managed-by=mpcloud, so the operator (which watches that label) ignores them.
            for labels in (obj["metadata"]["labels"], obj.get("spec", {}).get("template", {}).get("metadata", {})
                           .get("labels", {})):
                if resources.MANAGED_BY_LABEL in labels:
                    labels[resources.MANAGED_BY_LABEL] = "bench-raw"
            objs.append(obj)
    start = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        kube = KubeClient(api, paths())
        list(pool.map(kube.apply, objs))
    written = time.monotonic() - start

    def available(d: dict) -> bool:  # with 0 replicas: as soon as it exists (the written-objects bound)
        return (d.get("status") or {}).get("availableReplicas", 0) >= replicas
    wait_all(kube, f"/apis/apps/v1/namespaces/{ns}/deployments", available, n, timeout=max(300, n))
    total = time.monotonic() - start
    return {"total_s": total, "write_s": written, "objects": len(objs), "apps_per_s": n / total}


def delete_namespace(core: client.CoreV1Api, ns: str, timeout: float = 600) -> None:
    """Delete `ns` and wait until the namespace controller has removed it and everything in it."""
    core.delete_namespace(ns)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(1)
    raise RuntimeError(f"namespace {ns} still exists after {timeout:.0f}s")


def run_operator(api: client.ApiClient, ns: str, n: int, replicas: int, op: OperatorProcess) -> dict:
    custom = client.CustomObjectsApi(api)
    created: dict[str, float] = {}
    before = apiserver_sa_requests(api)

    def create(i: int) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, app_body(f"app-{i}", replicas))
        created[f"app-{i}"] = time.monotonic()

    start = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create, range(n)))
    create_s = time.monotonic() - start  # the API server's own cost for the CRs (schema + CEL validation)

    def ready(item: dict) -> bool:
        conds = (item.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" and c.get("observedGeneration") ==
                   item["metadata"]["generation"] for c in conds)
    seen = wait_all(KubeClient(api, paths()), f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}", ready, n,
                    timeout=max(300, 2 * n))
    total = max(seen.values()) - start
    lat = sorted(seen[k] - created[k] for k in seen)
    time.sleep(2)
    requests = apiserver_sa_requests(api) - before
    status = Path(f"/proc/{op.proc.pid}/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    fields = Path(f"/proc/{op.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    breakdown = {k: v / n for k, v in operator_requests(op.metrics()).items()}
    return {"requests_per_app_by_call": breakdown, "total_s": total, "create_s": create_s, "apps_per_s": n / total, "p50_ready_s": statistics.median(lat),
            "p95_ready_s": lat[int(0.95 * (len(lat) - 1))], "api_requests_per_app": requests / n,
            "operator_peak_rss_mb": hwm, "operator_rss_mb": rss, "operator_cpu_s": cpu_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=1000)
    ap.add_argument("--replicas", type=int, default=1, help="replicas per app (0: no pods, for RSS at 10,000 CRs)")
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--raw-once", action="store_true", help="no second raw phase (saves its time at 10,000 apps)")
    ap.add_argument("--reuse-cluster", action="store_true")
    ap.add_argument("--idle-seconds", type=float, default=30, help="idle window for counting writes (300: a relist)")
    ap.add_argument("--burst", type=int, default=None, help="new apps during the drift test (default min(1000, apps))")
    args = ap.parse_args()
    if args.reuse_cluster:
        return run(args)
    with tempfile.TemporaryDirectory(prefix="mpcloud-bench-") as home:
        os.environ["MPCLOUD_HOME"] = home
        try:
            run(args)
        finally:
            local.down(log=lambda m: print(f"[cluster] {m}", file=sys.stderr))


def run(args: argparse.Namespace) -> None:

    # kwok nodes only: a real node's kube-proxy and kubelet would spend the machine's CPU on the thousands of
    # Services and pods the bench creates, and no pod here needs to run.
    kubeconfig = local.up(real_nodes=0, log=lambda m: print(f"[cluster] {m}", file=sys.stderr))
    install.install(kubeconfig)
    demo.stop_operator(lambda m: print(f"[bench] {m}", file=sys.stderr))  # the Lease allows one operator
    api = config.new_client_from_config(config_file=str(kubeconfig))
    api.configuration.connection_pool_maxsize = 32
    core = client.CoreV1Api(api)
    nodes = ensure_capacity(core, 2 * args.apps * args.replicas)
    suffix = uuid.uuid4().hex[:5]
    results = {}
    services_before = len(core.list_service_for_all_namespaces().items)
    if not args.skip_raw:
        ns = f"bench-raw-{suffix}"
        core.create_namespace({"metadata": {"name": ns}})
        print(f"raw: applying children of {args.apps} apps …", file=sys.stderr)
        results["raw"] = run_raw(api, ns, args.apps, args.replicas)
        # Both phases start from the same cluster: the raw phase's objects are removed first (ClusterIP
        # allocation and the controllers' work grow with the number of objects in the cluster).
        delete_namespace(core, ns)
    ns = f"bench-op-{suffix}"
    core.create_namespace({"metadata": {"name": ns}})
    with tempfile.TemporaryDirectory() as tmp:
        sa = install.service_account_kubeconfig(kubeconfig, Path(tmp) / "kubeconfig")
        op = OperatorProcess(sa, Path(tmp), "bench").start().wait_ready()
        try:
            print(f"mpcloud: creating {args.apps} MiniProgramApps …", file=sys.stderr)
            results["mpcloud"] = run_operator(api, ns, args.apps, args.replicas, op)
            burst = min(1000, args.apps) if args.burst is None else args.burst
            print(f"steady state: idle {args.idle_seconds:.0f}s, drift repairs, burst of {burst} …", file=sys.stderr)
            results["steady"] = steady_state(api, ns, args.apps, args.replicas, op, args.idle_seconds, burst)
        finally:
            op.stop()
    services_after = len(core.list_service_for_all_namespaces().items)
    if not args.skip_raw and not args.raw_once:
        # The bound once more after the operator phase, from the same empty cluster: a machine whose load
        # drifts during the run (other jobs, thermal limits) shows up as two different raw totals, and the
        # ratio is taken to their mean (A-B-A).
        delete_namespace(core, ns)
        ns = f"bench-raw2-{suffix}"
        core.create_namespace({"metadata": {"name": ns}})
        print(f"raw again: applying children of {args.apps} apps …", file=sys.stderr)
        results["raw again"] = run_raw(api, ns, args.apps, args.replicas)
        delete_namespace(core, ns)

    print(f"\nreconcile benchmark: {args.apps} apps × {args.replicas} replica(s), {nodes} bench nodes, "
          f"Services in cluster {services_before} → {services_after}")
    print(f"{'phase':<10}{'total s':>10}{'apps/s':>10}{'p50 s':>9}{'p95 s':>9}{'req/app':>10}{'peak RSS MB':>13}")
    for phase, r in ((p, results[p]) for p in ("raw", "mpcloud", "raw again") if p in results):
        print(f"{phase:<10}{r['total_s']:>10.1f}{r['apps_per_s']:>10.1f}{r.get('p50_ready_s', float('nan')):>9.2f}"
              f"{r.get('p95_ready_s', float('nan')):>9.2f}{r.get('api_requests_per_app', float('nan')):>10.1f}"
              f"{r.get('operator_peak_rss_mb', float('nan')):>13.0f}")
    calls = results["mpcloud"]["requests_per_app_by_call"]
    print("operator requests per app: " + ", ".join(f"{k} {v:.2f}" for k, v in calls.items()))
    st = results["steady"]
    idle_calls = ", ".join(f"{k} {v:.0f}" for k, v in st["idle_writes_by_call"].items())
    print(f"settled {st['settle_s']:.1f} s after the last Ready; idle {st['idle_seconds']:.0f}s: {st['idle_writes']:.0f} operator writes{f' ({idle_calls})' if idle_calls else ''}; drift repaired in "
          f"{', '.join(f'{x:.2f}' for x in st['drift_repair_idle_s'])} s idle (target ≤ 2 s)"
          + (f", {', '.join(f'{x:.2f}' for x in st['drift_repair_burst_s'])} s during the burst (target ≤ 10 s)"
             if "drift_repair_burst_s" in st else ""))
    m = results["mpcloud"]
    print(f"operator CPU {m['operator_cpu_s']:.1f} s, RSS {m['operator_rss_mb']:.0f} MB, CR creates {m['create_s']:.1f} s")
    if "raw" in results:
        raws = [results[p]["total_s"] for p in ("raw", "raw again") if p in results]
        results["ratio_mpcloud_to_raw"] = results["mpcloud"]["total_s"] / statistics.mean(raws)
        each = ", ".join(f"{results['mpcloud']['total_s'] / r:.2f}×" for r in raws)
        print(f"mpcloud / raw-write bound (mean of {len(raws)} raw run(s)): {results['ratio_mpcloud_to_raw']:.2f}× "
              f"(target ≤ 1.5×; to each: {each})")
    print(json.dumps({"bench": "reconcile", "apps": args.apps, "replicas": args.replicas,
                      "services_before": services_before, "services_after": services_after, **results}))
    if args.skip_raw:
        core.delete_namespace(ns)


if __name__ == "__main__":
    main()
