"""Admission latency: the API server's create latency of mixed mpcloud objects with vs without the RiskPolicy
webhooks, and the webhooks' own latency, on the local control plane.

Phases, A-B-C-A in one run (same cluster, same machine; the repeated `none` shows drift in the machine's load):
  none     — no ValidatingWebhookConfiguration (the operator stopped, its configuration deleted);
  audit    — the operator's webhooks, an Audit RiskPolicy in the namespace (the audit webhook answers with
             warnings: every object is given an image with the latest tag);
  enforce  — an Enforce RiskPolicy (both webhooks called: the fail-closed one checks, the audit one has no rules
             in Audit mode); objects are clean, so all are admitted;
  none     — again.
Each phase creates --objects objects (MiniProgramApp, CloudFunction, Pipeline in turn) at --rate requests/s from
--threads client threads (open loop: each request has its scheduled start; latency is measured from it, so a
backlog counts), then deletes the namespace. Reported per phase: achieved rate, p50/p99/max of the create latency
and the ratio to the mean of the two `none` phases; the webhook's latency as the API server measured it
(apiserver_admission_webhook_admission_duration_seconds, interpolated in its buckets) and the operator's own
evaluation time (mpcloud_admission_review_seconds). One JSON line at the end.

    python bench/admission.py [--objects 2000] [--rate 200] [--threads 16]

Uses the local cluster ($MPCLOUD_KUBECONFIG, or `mpcloud cluster up`'s); take the real-node lock around it.
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

from mpcloud_operator.devenv.cluster import install, local  # noqa: E402
from mpcloud_operator.devenv.launcher import OperatorProcess, free_port  # noqa: E402

GROUP, VERSION = "mpcloud.io", "v1alpha1"
CONFIGURATION = "mpcloud-risk"


def body(i: int, image: str) -> tuple[str, dict]:
    name = f"o{i}"
    kind = ("MiniProgramApp", "CloudFunction", "Pipeline")[i % 3]
    if kind == "MiniProgramApp":
        spec = {"image": image, "ports": [{"name": "http", "containerPort": 8080}]}
        plural = "miniprogramapps"
    elif kind == "CloudFunction":
        spec = {"runtime": "python3.11", "source": {"inline": {"files": {"index.py": "def main(e, c):\n  return 1\n"}}}}
        plural = "cloudfunctions"
    else:
        spec = {"tasks": [{"name": "build", "taskSpec": {"steps": [{"name": "s", "image": image, "script": "true"}]}}]}
        plural = "pipelines"
    return plural, {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def histogram_quantile(text: str, metric: str, q: float, label: str = "") -> float | None:
    """Quantile of a Prometheus histogram (summed over series matching `label`), linear within buckets."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(metric + "_bucket") and label in line:
            le = re.search(r'le="([^"]+)"', line).group(1)
            buckets[float("inf") if le == "+Inf" else float(le)] = buckets.get(
                float("inf") if le == "+Inf" else float(le), 0.0) + float(line.rsplit(" ", 1)[1])
    if not buckets or max(buckets.values()) == 0:
        return None
    edges = sorted(buckets)
    total = buckets[edges[-1]]
    rank, prev_edge, prev_count = q * total, 0.0, 0.0
    for edge in edges:
        if buckets[edge] >= rank:
            if edge == float("inf"):
                return prev_edge
            return prev_edge + (edge - prev_edge) * (rank - prev_count) / max(buckets[edge] - prev_count, 1e-9)
        prev_edge, prev_count = edge, buckets[edge]
    return prev_edge


def diff_hist(after: str, before: str, metric: str) -> str:
    """after − before of a histogram's bucket lines (so each phase is measured alone)."""
    def parse(text: str) -> dict[str, float]:
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(metric + "_bucket")}
    a, b = parse(after), parse(before)
    return "\n".join(f"{k} {v - b.get(k, 0.0)}" for k, v in a.items())


def apiserver_metrics(api: client.ApiClient) -> str:
    method, url, headers, _, _ = api.param_serialize(method="GET", resource_path="/metrics",
                                                     auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers, _request_timeout=30)
    response.read()
    return response.data.decode()


def run_phase(api: client.ApiClient, custom: client.CustomObjectsApi, core: client.CoreV1Api, phase: str,
              policy: dict | None, objects: int, rate: float, threads: int, image: str,
              operator: OperatorProcess | None) -> dict:
    ns = f"bench-adm-{phase}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": ns, "labels": {"mpcloud.io/bench": "true"}}})
    if policy is not None:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "riskpolicies", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": "risk"}, "spec": policy})
        # until the policy is in force (an enforce policy refuses a latest tag; an audit one warns)
        probe_plural, probe = body(0, "nginx")
        probe["metadata"]["name"] = "probe"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                _, _, headers = custom.create_namespaced_custom_object_with_http_info(GROUP, VERSION, ns,
                                                                                      probe_plural, probe)
                if policy["admission"]["mode"] == "Audit" and headers.get("Warning"):
                    break
                custom.delete_namespaced_custom_object(GROUP, VERSION, ns, probe_plural, "probe")
            except client.ApiException as exc:
                if exc.status == 403 or "refused by risk policy" in str(exc.body):
                    break
            time.sleep(0.5)
        time.sleep(3)  # the namespace label (enforce webhook's selector) lands a moment after the cache
    before_api = apiserver_metrics(api)
    before_op = operator.metrics() if operator else ""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.5

    def one(i: int) -> None:
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        plural, obj = body(i, image)
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, obj)
            with lock:
                latencies.append(time.monotonic() - scheduled)
        except client.ApiException as exc:
            with lock:
                errors.append(f"{exc.status} {str(exc.body)[:200]}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(objects)))
    wall = time.monotonic() - start
    after_api = apiserver_metrics(api)
    after_op = operator.metrics() if operator else ""
    webhook = diff_hist(after_api, before_api, "apiserver_admission_webhook_admission_duration_seconds")
    own = diff_hist(after_op, before_op, "mpcloud_admission_review_seconds") if operator else ""
    core.delete_namespace(ns, propagation_policy="Background")
    return {
        "phase": phase, "objects": objects, "errors": len(errors), "first_error": errors[0] if errors else None,
        "rate": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * pct(latencies, 0.5), 2), "p99_ms": round(1000 * pct(latencies, 0.99), 2),
        "max_ms": round(1000 * max(latencies), 2) if latencies else None,
        "webhook_p50_ms": _ms(histogram_quantile(webhook, "apiserver_admission_webhook_admission_duration_seconds",
                                                 0.5, 'name="')),
        "webhook_p99_ms": _ms(histogram_quantile(webhook, "apiserver_admission_webhook_admission_duration_seconds",
                                                 0.99, 'name="')),
        "eval_p50_ms": _ms(histogram_quantile(own, "mpcloud_admission_review_seconds", 0.5)),
        "eval_p99_ms": _ms(histogram_quantile(own, "mpcloud_admission_review_seconds", 0.99)),
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(1000 * v, 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--threads", type=int, default=16)
    args = ap.parse_args()

    kubeconfig = Path(os.environ["MPCLOUD_KUBECONFIG"]) if os.environ.get("MPCLOUD_KUBECONFIG") else local.up(
        log=lambda m: print(f"[cluster] {m}", file=sys.stderr))
    install.install(kubeconfig)
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = args.threads * 2
    api = client.ApiClient(cfg)
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    admission = client.AdmissionregistrationV1Api(api)
    sa_kubeconfig = install.service_account_kubeconfig(kubeconfig, Path(tempfile.mkdtemp()) / "kubeconfig")
    port = free_port()
    operator = OperatorProcess(sa_kubeconfig, Path(tempfile.mkdtemp()), "bench-admission", env={
        "MPCLOUD_ADMISSION_PORT": str(port), "MPCLOUD_ADMISSION_URL": f"https://127.0.0.1:{port}"})

    def no_webhooks() -> None:
        try:
            admission.delete_validating_webhook_configuration(CONFIGURATION)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    clean, latest = "nginxinc/nginx-unprivileged:1.27", "nginx:latest"
    results = []
    try:
        no_webhooks()
        results.append(run_phase(api, custom, core, "none", None, args.objects, args.rate, args.threads, clean, None))
        operator.start().wait_ready()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                admission.read_validating_webhook_configuration(CONFIGURATION)
                break
            except client.ApiException:
                time.sleep(0.5)
        results.append(run_phase(api, custom, core, "audit", {"admission": {"mode": "Audit"}}, args.objects,
                                 args.rate, args.threads, latest, operator))
        results.append(run_phase(api, custom, core, "enforce", {"admission": {"mode": "Enforce"}}, args.objects,
                                 args.rate, args.threads, clean, operator))
        operator.stop()
        no_webhooks()
        results.append(run_phase(api, custom, core, "none", None, args.objects, args.rate, args.threads, clean, None))
    finally:
        operator.stop()
        no_webhooks()

    base_p50 = statistics.mean(r["p50_ms"] for r in results if r["phase"] == "none")
    base_p99 = statistics.mean(r["p99_ms"] for r in results if r["phase"] == "none")
    load = os.getloadavg()[0]
    print(f"\nAdmission latency, {args.objects} mixed creates per phase (MiniProgramApp/CloudFunction/Pipeline) at "
          f"{args.rate:g}/s target, {args.threads} threads, load {load:.1f}")
    print(f"{'phase':9} {'rate/s':>7} {'err':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p50 x':>6} {'p99 x':>6}"
          f" {'webhook p50':>11} {'webhook p99':>11} {'eval p99':>9}")
    for r in results:
        print(f"{r['phase']:9} {r['rate']:7.1f} {r['errors']:4d} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['max_ms'] or 0:8.2f} {r['p50_ms'] / base_p50:6.2f} {r['p99_ms'] / base_p99:6.2f} "
              f"{_fmt(r['webhook_p50_ms']):>11} {_fmt(r['webhook_p99_ms']):>11} {_fmt(r['eval_p99_ms']):>9}")
    print(json.dumps({"bench": "admission", "objects": args.objects, "rate": args.rate, "load": round(load, 2),
                      "phases": results}))
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


if __name__ == "__main__":
    sys.exit(main())
