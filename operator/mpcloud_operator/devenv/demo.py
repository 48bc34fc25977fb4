"""`mpcloud demo`: the whole product on the local control plane in one command.

cluster up → install CRDs/RBAC/RuntimeClasses → Prometheus (Debian's binary) with a time-compressed traffic
replay (3 days of a daily pattern backfilled, then replayed 30× faster) → run the operator in the background
(as its own ServiceAccount, reading Prometheus) → apply examples/ into namespace `demo` (the invalid one
shows its error) → wait for the apps → watch the predictive app `shop` scale ahead of its daily ramp, with a
text chart of demand vs capacity → print `kubectl get` of the result.
`mpcloud demo --stop` stops the operator, Prometheus and the cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from mpcloud_operator.cluster import install, local
from mpcloud_operator.waiting import wait_http_ready

NAMESPACE = "demo"
HEALTH_PORT, METRICS_PORT = 18081, 18080


def _pid_file() -> Path:
    return local.home() / "operator.pid"


def _operator_pid() -> int | None:
    try:
        pid = int(_pid_file().read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start_operator(kubeconfig: Path, log: Callable[[str], None], env: dict[str, str] | None = None) -> int:
    """Start `mpcloud operator run` detached with `env` added (restarting one this demo started); return its pid."""
    stop_operator(log)
    sa_config = install.service_account_kubeconfig(kubeconfig, local.home() / "operator-kubeconfig")
    logfile = open(local.home() / "operator.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpcloud_operator", "operator", "run", "--kubeconfig", str(sa_config),
         "--health-port", str(HEALTH_PORT), "--metrics-port", str(METRICS_PORT), "--bind-address", "127.0.0.1"],
        stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    _pid_file().write_text(str(proc.pid))
    wait_http_ready(f"http://127.0.0.1:{HEALTH_PORT}/readyz", proc, 60, "the operator", local.home() / "operator.log")
    log(f"operator running (pid {proc.pid}, log {local.home() / 'operator.log'}, "
        f"metrics http://127.0.0.1:{METRICS_PORT}/metrics)")
    return proc.pid


def stop_operator(log: Callable[[str], None]) -> None:
    pid = _operator_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.2)
        log(f"operator stopped (pid {pid})")
    _pid_file().unlink(missing_ok=True)


def _wait_apps_ready(kubeconfig: Path, names: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = json.loads(install.kubectl(kubeconfig, "get", "mpa", "-n", NAMESPACE, "-o", "json"))["items"]
        ready = {i["metadata"]["name"] for i in items
                 if any(c["type"] == "Ready" and c["status"] == "True"
                        for c in (i.get("status") or {}).get("conditions", []))}
        if set(names) <= ready:
            return
        time.sleep(1)
    raise RuntimeError(f"apps not Ready after {timeout:.0f}s: see `mpcloud kubectl get mpa -n {NAMESPACE}`")


def run(log: Callable[[str], None] = print, out: Callable[[str], None] = print, watch_minutes: int = 36) -> None:
    from mpcloud_operator.scaling import demo as scaling_demo

    started = time.monotonic()
    kubeconfig = local.up(log=log)
    install.install(kubeconfig)
    log("installed CRDs, namespace mpcloud-system, RBAC and RuntimeClasses")
    install.kubectl(kubeconfig, "create", "namespace", NAMESPACE, check=False)
    # Traffic first, so the operator's first tick already sees three days of history.
    handles = scaling_demo.start(kubeconfig, NAMESPACE, "shop")
    log(f"Prometheus at {handles.prometheus_url}; replaying a daily ramp for demo/shop "
        f"(1 trace minute = {handles.tick_seconds:g}s)")
    start_operator(kubeconfig, log, handles.operator_env)
    root = install.REPO_ROOT / "examples"
    valid = [p for p in sorted(root.glob("app-*.yaml")) if "invalid" not in p.name]
    for path in valid:
        out(install.kubectl(kubeconfig, "apply", "-n", NAMESPACE, "-f", str(path)).strip())
    invalid = install.kubectl(kubeconfig, "apply", "-n", NAMESPACE, "-f", str(root / "app-invalid.yaml"), check=False)
    out(f"examples/app-invalid.yaml is refused by the API server, as intended:\n  {invalid.strip()}")
    import yaml

    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in valid] + ["shop"]
    _wait_apps_ready(kubeconfig, names)
    for args in (["get", "nodes", "-L", local.KATA_LABEL],
                 ["get", "runtimeclasses"],
                 ["get", "deployments,services,poddisruptionbudgets,networkpolicies", "-n", NAMESPACE],
                 ["get", "pods", "-n", NAMESPACE, "-o", "wide"]):
        out(f"\n$ kubectl {' '.join(args)}")
        out(install.kubectl(kubeconfig, *args).rstrip())

    out(f"\nPredictive scaling: demo/shop's traffic ramps up every day at trace minute 600 of the day; watching "
        f"{watch_minutes} trace minutes ({watch_minutes * handles.tick_seconds:.0f}s):")
    deadline = time.monotonic() + watch_minutes * handles.tick_seconds
    while time.monotonic() < deadline:
        time.sleep(min(8 * handles.tick_seconds, max(0.0, deadline - time.monotonic())))
        out(f"$ kubectl get mpa -n {NAMESPACE}   (trace minute "
            f"{handles.replay.replay.position(time.time()) % 1440:.0f} of the day)")
        out(install.kubectl(kubeconfig, "get", "mpa", "-n", NAMESPACE).rstrip())
    handles.stop()
    out("\ndemand vs provisioned capacity of demo/shop (replicas × capacity per replica):")
    out(scaling_demo.chart(handles.samples, handles.capacity))
    out(f"\n$ kubectl get mpa -n {NAMESPACE} -o wide")
    out(install.kubectl(kubeconfig, "get", "mpa", "-n", NAMESPACE, "-o", "wide").rstrip())
    out(f"\ndemo ready in {time.monotonic() - started:.0f}s (the traffic replay has stopped; the operator and "
        f"Prometheus keep running). Try:\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        f"  mpcloud kubectl scale -n {NAMESPACE} mpa/hello --replicas=3\n"
        f"  mpcloud kubectl get mpa -n {NAMESPACE} -w\n"
        f"  curl -s {handles.prometheus_url}/api/v1/query --data-urlencode 'query=mpcloud_desired_replicas'\n"
        f"  mpcloud demo --stop")


def stop(log: Callable[[str], None] = print) -> None:
    from mpcloud_operator.scaling import promserver

    stop_operator(log)
    promserver.down()
    local.down(log=log)
