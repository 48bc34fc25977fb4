"""Live keep-alive: an Azure Functions trace slice replayed through the real gateway, compared with the simulator.

    python bench/keepalive_live.py [--functions 4] [--minutes 90] [--start 120] [--minute-seconds 3]
                                   [--policies mpcloud,hybrid,fixed-10]

Starts (or reuses) the local cluster with its real node, the function platform (devenv/functions.py) and an
operator whose keep-alive minute lasts `--minute-seconds` (MPCLOUD_FUNCTION_MINUTE_SECONDS). Picks functions
of `azure2019_fn250_shared_min480-959` that are invoked now and then in the slice (the keep-alive question:
3..40 invoked minutes of `--minutes`), deploys each once per policy (`spec.scaling.keepAlive`), waits until all
rest at zero, and replays the slice minute by minute in step with the scaler's clock: one request per invoked
minute (the simulator's unit: an invoked minute is cold or warm as a whole), sent 70 % into the minute.

Observed, per policy: cold starts = requests the gateway had to hold for a first instance
(`mpcloud_function_cold_start_seconds_count`), idle instance-minutes = ready-instance time (pods polled every
0.25 s) during minutes without a request, in minutes of the scaler's clock. Predicted: `simulate()` of
`predictors.keepalive` (what `mpcloud keepalive` runs) on the same counts, cold starts including each
function's first invocation (cold everywhere) and wasted (idle loaded) minutes. Prints a table and a JSON line.
Needs the real node: run under the lock with `nice -n 10` (see /work/helpers/common.md of the session).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from predictors.keepalive import make_policy  # noqa: E402
from predictors.keepalive.report import load_workload  # noqa: E402
from predictors.keepalive.simulator import simulate  # noqa: E402

TRACES = Path(os.environ.get("MPCLOUD_TRACES", ROOT.parent / "shared" / "traces"))
TRACE = TRACES / "azure2019_fn250_shared_min480-959.csv.gz"
CODE = "def main(event, context):\n    return {'ok': True}\n"
SHORT = {"mpcloud": "mp", "hybrid": "hy"}


def pick(counts: np.ndarray, ids: list[str], k: int, lo: int = 3, hi: int = 40) -> list[int]:
    """`k` functions with lo..hi invoked minutes in the slice, in a fixed pseudo-random order (sha256 of id)."""
    invoked = (counts > 0).sum(axis=1)
    order = sorted(range(len(ids)), key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())
    return [i for i in order if lo <= invoked[i] <= hi][:k]


def keep_alive(policy: str) -> dict:
    if policy.startswith("fixed-"):
        return {"policy": "fixed", "fixedMinutes": int(policy.split("-", 1)[1])}
    return {"policy": policy}


def fn_name(policy: str, i: int) -> str:
    return f"{SHORT.get(policy, policy.replace('fixed-', 'fx'))}-{i}"


def gateway_cold_counts(gateway: str, ns: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in requests.get(f"{gateway}/_/metrics", timeout=10).text.splitlines():
        if line.startswith("mpcloud_function_cold_start_seconds_count{") and f'namespace="{ns}"' in line:
            labels, _, value = line.rpartition(" ")
            fn = labels.split('function="', 1)[1].split('"', 1)[0]
            out[fn] = float(value)
    return out


class InstanceSampler(threading.Thread):
    """Ready pods per function, every `period` s: ready-instance seconds per (function, scaler minute)."""

    def __init__(self, core, ns: str, minute_seconds: float, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.core, self.ns, self.m, self.period = core, ns, minute_seconds, period
        self.seconds: dict[tuple[str, int], float] = defaultdict(float)
        self.stop_event = threading.Event()

    def run(self) -> None:
        last = time.time()
        while not self.stop_event.wait(self.period):
            now = time.time()
            try:
                pods = self.core.list_namespaced_pod(self.ns, label_selector="mpcloud.io/function").items
            except Exception:  # noqa: BLE001 - one missed sample
                continue
            dt, last = now - last, now
            minute = int(now // self.m)
            for p in pods:
                ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                if ready and p.metadata.deletion_timestamp is None:
                    self.seconds[(p.metadata.labels["mpcloud.io/function"], minute)] += dt


def replay(args: argparse.Namespace, counts: np.ndarray, policies: list[str]) -> dict:
    from kubernetes import client, config

    from mpcloud_operator.devenv import functions
    from mpcloud_operator.devenv.cluster import install, local
    from mpcloud_operator.devenv.launcher import OperatorProcess

    kubeconfig = local.up(log=lambda m: None)
    install.install(kubeconfig)
    logs = Path(tempfile.mkdtemp(prefix="bench-keepalive-live-"))
    platform = functions.start(kubeconfig, log=print, log_dir=logs, minute_seconds=args.minute_seconds)
    if not platform.image:
        raise SystemExit("no real node on this host: the live replay needs pods that really run")
    operator = OperatorProcess(install.service_account_kubeconfig(kubeconfig, logs / "operator-kubeconfig"), logs,
                               env=platform.operator_env).start().wait_ready(120)
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-ka-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": ns}})
    names = {(p, i): fn_name(p, i) for p in policies for i in range(len(counts))}
    try:
        for (p, i), name in names.items():
            custom.create_namespaced_custom_object("mpcloud.io", "v1alpha1", ns, "cloudfunctions", {
                "apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction", "metadata": {"name": name},
                "spec": {"runtime": "python3.11", "source": {"inline": {"files": {"index.py": CODE}}},
                         "sandbox": {"runtimeClassName": "none", "allowUnsandboxed": True},
                         "scaling": {"maxInstances": 2, "keepAlive": keep_alive(p)}}})

        def all_at_zero() -> bool:
            items = custom.list_namespaced_custom_object("mpcloud.io", "v1alpha1", ns, "cloudfunctions")["items"]
            ok = [f for f in items if (f.get("status") or {}).get("servingHash")
                  and f["status"].get("desiredInstances") == 0]
            return len(ok) == len(names) and not core.list_namespaced_pod(ns, label_selector="mpcloud.io/function").items

        deadline = time.monotonic() + 300
        while not all_at_zero():
            if time.monotonic() > deadline:
                raise RuntimeError("the functions did not all come to rest at zero")
            time.sleep(1)
        print(f"{len(names)} functions deployed and at zero; replaying {args.minutes} minutes "
              f"({args.minute_seconds:g} s each)", flush=True)
        cold_before = gateway_cold_counts(platform.gateway_url, ns)
        sampler = InstanceSampler(core, ns, args.minute_seconds)
        m = args.minute_seconds
        m0 = int(time.time() // m) + 2
        sampler.start()
        latencies: list[tuple[str, int, float, int]] = []
        threads = []

        def call(name: str, minute: int) -> None:
            t0 = time.perf_counter()
            try:
                code = requests.post(f"{platform.gateway_url}/{ns}/{name}", json={}, timeout=60).status_code
            except requests.RequestException:
                code = 0
            latencies.append((name, minute, time.perf_counter() - t0, code))

        for t in range(args.minutes):
            at = (m0 + t) * m + 0.7 * m
            time.sleep(max(0.0, at - time.time()))
            for (p, i), name in names.items():
                if counts[i, t] > 0:
                    th = threading.Thread(target=call, args=(name, t), daemon=True)
                    th.start()
                    threads.append(th)
        for th in threads:
            th.join(70)
        time.sleep(m)
        sampler.stop_event.set()
        sampler.join(5)
        cold_after = gateway_cold_counts(platform.gateway_url, ns)
        observed = {}
        for p in policies:
            cold = idle = 0.0
            for i in range(len(counts)):
                name = names[(p, i)]
                cold += cold_after.get(name, 0.0) - cold_before.get(name, 0.0)
                idle += sum(sampler.seconds.get((name, m0 + t), 0.0) / m
                            for t in range(args.minutes) if counts[i, t] == 0)
            lat = sorted(x[2] for x in latencies if x[0] in {names[(p, i)] for i in range(len(counts))})
            observed[p] = {"cold_starts": int(round(cold)), "idle_instance_minutes": round(idle, 1),
                           "requests": len(lat), "errors": sum(1 for x in latencies if x[3] != 200 and
                                                               x[0] in {names[(p, i)] for i in range(len(counts))}),
                           "latency_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
                           "latency_max_s": round(lat[-1], 3) if lat else None}
        return observed
    finally:
        try:
            core.delete_namespace(ns)
        except Exception:  # noqa: BLE001
            pass
        operator.stop()
        platform.stop()
        functions.stop_backing()
        local.down(log=lambda m: None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=TRACE)
    ap.add_argument("--functions", type=int, default=4)
    ap.add_argument("--start", type=int, default=120, help="first trace minute of the slice (offset in the file)")
    ap.add_argument("--minutes", type=int, default=90)
    ap.add_argument("--minute-seconds", type=float, default=3.0)
    ap.add_argument("--policies", default="mpcloud,hybrid,fixed-10")
    ap.add_argument("--predict-only", action="store_true", help="only the simulator's figures (no cluster)")
    args = ap.parse_args()
    work = load_workload(args.trace)
    window = work.counts[:, args.start:args.start + args.minutes]
    rows = pick(window, work.series_ids, args.functions)
    counts = window[rows]
    policies = [p for p in args.policies.split(",") if p]
    predicted = {}
    for p in policies:
        res = simulate(counts, make_policy(p))
        predicted[p] = {"cold_starts": int(res.cold_starts.sum() + res.first_invocations.sum()),
                        "idle_minutes": int(res.wasted_minutes.sum())}
    invoked = int((counts > 0).sum())
    print(f"trace {args.trace.name}, minutes {args.start}..{args.start + args.minutes - 1}, functions "
          f"{[work.series_ids[r] for r in rows]} ({invoked} invoked minutes)")
    observed = {} if args.predict_only else replay(args, counts, policies)
    print(f"\n{'policy':<10} {'cold pred':>9} {'cold obs':>8} {'idle pred':>9} {'idle obs':>8} "
          f"{'requests':>8} {'errors':>6} {'p50 s':>6} {'max s':>6}")
    for p in policies:
        o = observed.get(p, {})
        print(f"{p:<10} {predicted[p]['cold_starts']:>9} {o.get('cold_starts', '-'):>8} "
              f"{predicted[p]['idle_minutes']:>9} {o.get('idle_instance_minutes', '-'):>8} "
              f"{o.get('requests', '-'):>8} {o.get('errors', '-'):>6} {o.get('latency_p50_s', '-'):>6} "
              f"{o.get('latency_max_s', '-'):>6}")
    print(json.dumps({"bench": "keepalive_live", "trace": args.trace.name, "start": args.start,
                      "minutes": args.minutes, "minute_seconds": args.minute_seconds,
                      "functions": [work.series_ids[r] for r in rows], "invoked_minutes": invoked,
                      "predicted": predicted, "observed": observed}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
