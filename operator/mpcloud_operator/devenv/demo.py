"""`mpcloud demo`: the whole product on the local control plane in one command.

Exists so that one command shows what mpcloud does, end to end, on a laptop.

cluster up → install CRDs/RBAC/RuntimeClasses → Prometheus (Debian's binary) with a time-compressed traffic
replay (3 days of a daily pattern backfilled, then replayed 30× faster) → run the operator in the background
(as its own ServiceAccount, reading Prometheus) → apply examples/ into namespace `demo` (the invalid one
shows its error) → wait for the apps → watch the predictive app `shop` scale ahead of its daily ramp, with a
text chart of demand vs capacity → print `kubectl get` of the result.
`mpcloud demo --stop` stops the operator, Prometheus and the cluster.

The traffic pieces are usable alone:

    handles = start_traffic(kubeconfig, "demo", "shop")      # Prometheus up, history backfilled, replay on
    # run the operator with handles.operator_env (MPCLOUD_PROMETHEUS_URL, MPCLOUD_SCALING_TICK_SECONDS, ..)
    ...; print(chart(handles.samples, handles.capacity)); handles.stop()

By default the traffic is `traffic.daily_ramp()` (a 30-minute ramp at 10:00 every day, 3 days of
history), replayed 30x faster (1 trace minute = 2 s) from 12 minutes before the ramp: a predictive app
scales up ~2 trace minutes before the ramp. `start_traffic` creates the app (mode predictive) unless told not to.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mpcloud_operator.devenv import functions, postgres, prometheus
from mpcloud_operator.devenv.cluster import install, local
from mpcloud_operator.devenv.launcher import OperatorProcess, terminate
from mpcloud_operator.devenv.traffic import ReplayServer, daily_ramp, start_replay

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
    op = OperatorProcess(sa_config, local.home(), "operator", health_port=HEALTH_PORT, metrics_port=METRICS_PORT,
                         env=env, detach=True).start()
    _pid_file().write_text(str(op.pid))  # `mpcloud demo --stop` runs in another process: it finds it by pid
    op.wait_ready(60)
    log(f"operator running (pid {op.pid}, log {op.log_path}, metrics http://127.0.0.1:{METRICS_PORT}/metrics)")
    return op.pid


def stop_operator(log: Callable[[str], None]) -> None:
    """Stop the operator a demo started (the Lease allows one active operator per cluster)."""
    pid = _operator_pid()
    if pid and terminate(pid):
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
    started = time.monotonic()
    kubeconfig = local.up(log=log)
    install.install(kubeconfig)
    log("installed CRDs, namespace mpcloud-system, RBAC and RuntimeClasses")
    install.kubectl(kubeconfig, "create", "namespace", NAMESPACE, check=False)
    # Traffic first, so the operator's first tick already sees three days of history.
    handles = start_traffic(kubeconfig, NAMESPACE, "shop")
    log(f"Prometheus at {handles.prometheus_url}; replaying a daily ramp for demo/shop "
        f"(1 trace minute = {handles.tick_seconds:g}s)")
    platform = functions.start(kubeconfig, log)
    start_operator(kubeconfig, log, {**handles.operator_env, **platform.operator_env})
    _gateway_pid_file().write_text(str(platform.gateway.pid))
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
    if platform.image:
        todo_walkthrough(kubeconfig, platform.gateway_url, out)
    else:
        out("\n(no real node on this host: the todo functions are applied but cannot run code; see README)")
        install.kubectl(kubeconfig, "apply", "-k", str(root / "todo"))
    out("\ndemand vs provisioned capacity of demo/shop (replicas × capacity per replica):")
    out(chart(handles.samples, handles.capacity))
    out(f"\n$ kubectl get mpa -n {NAMESPACE} -o wide")
    out(install.kubectl(kubeconfig, "get", "mpa", "-n", NAMESPACE, "-o", "wide").rstrip())
    out(f"\ndemo ready in {time.monotonic() - started:.0f}s (the traffic replay has stopped; the operator and "
        f"Prometheus keep running). Try:\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        f"  mpcloud kubectl scale -n {NAMESPACE} mpa/hello --replicas=3\n"
        f"  mpcloud kubectl get mpa -n {NAMESPACE} -w\n"
        f"  curl -s {handles.prometheus_url}/api/v1/query --data-urlencode 'query=mpcloud_desired_replicas'\n"
        f"  curl -s -X POST -H 'Content-Type: application/json' -d '{{\"title\": \"try mpcloud\"}}' "
        f"{platform.gateway_url}/todo/add\n"
        f"  curl -s {platform.gateway_url}/todo/list\n"
        f"  mpcloud demo --stop")


def _gateway_pid_file() -> Path:
    return local.home() / "gateway.pid"


def todo_walkthrough(kubeconfig: Path, gateway_url: str, out: Callable[[str], None], timeout: float = 240) -> None:
    """examples/todo applied and called with curl, as the README shows it."""
    import shlex
    import subprocess

    out("\n$ kubectl apply -k examples/todo")
    out(install.kubectl(kubeconfig, "apply", "-k", str(install.REPO_ROOT / "examples" / "todo")).rstrip())
    names = ["add", "list", "toggle", "remove", "attach"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = json.loads(install.kubectl(kubeconfig, "get", "cf", "-n", "todo", "-o", "json"))["items"]
        serving = {i["metadata"]["name"] for i in items if (i.get("status") or {}).get("servingHash")
                   and i["status"]["servingHash"] == i["status"].get("codeHash")}
        if set(names) <= serving:
            break
        time.sleep(1)
    out("$ kubectl get cf -n todo")
    out(install.kubectl(kubeconfig, "get", "cf", "-n", "todo").rstrip())

    def curl(*args: str) -> dict:
        cmd = ["curl", "-sS", "--max-time", "60", *args]
        out(f"$ {' '.join(shlex.quote(a) for a in cmd)}")
        text = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
        out(text.strip())
        try:
            return json.loads(text)
        except ValueError:
            return {}

    json_header = ["-H", "Content-Type: application/json"]
    todo = curl("-X", "POST", *json_header, "-d", '{"title": "buy milk"}', f"{gateway_url}/todo/add")
    curl("-X", "POST", *json_header, "-d", '{"title": "call mom"}', f"{gateway_url}/todo/add")
    curl(f"{gateway_url}/todo/list")
    if todo.get("_id"):
        curl("-X", "POST", *json_header, "-d", json.dumps({"id": todo["_id"]}), f"{gateway_url}/todo/toggle")
        urls = curl("-X", "POST", *json_header, "-d", json.dumps({"id": todo["_id"]}), f"{gateway_url}/todo/attach")
        if urls.get("uploadUrl"):
            picture = install.REPO_ROOT / "docs" / "scaling-frontier.png"
            out(f"$ curl -sS -X PUT --data-binary @{picture.name} '<uploadUrl>'   # the mini-program uploads directly")
            subprocess.run(["curl", "-sS", "-X", "PUT", "--data-binary", f"@{picture}", urls["uploadUrl"]],
                           capture_output=True, check=False)
            got = subprocess.run(["curl", "-sS", urls["downloadUrl"]], capture_output=True, check=False).stdout
            out(f"$ curl -sS '<downloadUrl>' | wc -c\n{len(got)}   (uploaded {picture.stat().st_size} bytes)")
        curl(f"{gateway_url}/todo/list?done=true")
        curl("-X", "POST", *json_header, "-d", json.dumps({"id": todo["_id"]}), f"{gateway_url}/todo/remove")
    curl(f"{gateway_url}/todo/list")
    out("$ kubectl get cf -n todo -o wide")
    out(install.kubectl(kubeconfig, "get", "cf", "-n", "todo", "-o", "wide").rstrip())


def stop(log: Callable[[str], None] = print) -> None:
    stop_operator(log)
    try:
        pid = int(_gateway_pid_file().read_text())
        if terminate(pid):
            log(f"gateway stopped (pid {pid})")
    except (OSError, ValueError):
        pass
    _gateway_pid_file().unlink(missing_ok=True)
    prometheus.down()
    functions.stop_backing()
    local.down(log=log)


CAPACITY = 100.0  # requests/min per replica of the example app


def example_app(name: str, mode: str = "predictive") -> dict[str, Any]:
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp", "metadata": {"name": name},
            "spec": {"image": "nginxinc/nginx-unprivileged:1.27", "ports": [{"name": "http", "containerPort": 8080}],
                     "replicas": {"min": 1, "max": 20},
                     "scaling": {"mode": mode, "capacityPerReplica": CAPACITY, "targetUtilization": 1.0,
                                 "scaleUp": {"maxStepReplicas": 20}, "scaleDown": {"stabilizationWindowSeconds": 180}}}}


@dataclass
class DemoHandles:
    prometheus_url: str
    tick_seconds: float
    replay: ReplayServer
    namespace: str
    app: str
    capacity: float = CAPACITY
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (trace minute, demand, replicas)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def operator_env(self) -> dict[str, str]:
        return {"MPCLOUD_PROMETHEUS_URL": self.prometheus_url, "MPCLOUD_SCALING_TICK_SECONDS": f"{self.tick_seconds:g}",
                "MPCLOUD_SCALING_HISTORY_MINUTES": str(3 * 1440)}

    def stop(self) -> None:
        """Stop the replay and the sampler; Prometheus keeps running (`stop()` of the module stops it)."""
        self._stop.set()
        self.replay.stop()


def start_traffic(kubeconfig: str | Path, namespace: str, app: str, *, trace: np.ndarray | None = None,
          speedup: float = 30.0, start_minute: int | None = None, create_app: bool = True) -> DemoHandles:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    tick = 60.0 / speedup
    url = prometheus.up(scrape_interval=f"{int(tick * 250)}ms")
    counts = daily_ramp() if trace is None else np.asarray(trace, dtype=float)
    start_at = 3 * 1440 + 600 - 12 if start_minute is None else start_minute
    if create_app:
        custom = client.CustomObjectsApi(api)
        try:
            custom.create_namespaced_custom_object("mpcloud.io", "v1alpha1", namespace, "miniprogramapps",
                                                   example_app(app))
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    server = start_replay(counts, [(namespace, app)], tick_seconds=tick, start=start_at, history=3 * 1440)
    handles = DemoHandles(url, tick, server, namespace, app)
    apps = client.AppsV1Api(api)

    def sample() -> None:
        while not handles._stop.wait(tick - time.time() % tick + 0.75 * tick):
            try:
                reps = apps.read_namespaced_deployment(app, namespace).spec.replicas or 0
            except client.ApiException:
                continue
            now = time.time()
            handles.samples.append((server.replay.position(now), server.replay.demand(now), int(reps)))

    threading.Thread(target=sample, name="demo-sampler", daemon=True).start()
    return handles


def chart(samples: list[tuple[float, float, int]], capacity: float = CAPACITY, width: int = 60) -> str:
    """Plain-text chart, one line per sample: demand as '#', provisioned capacity (replicas x capacity)
    as '|' ('!' where demand exceeds it)."""
    if not samples:
        return "(no samples yet)"
    top = max(max(d, r * capacity) for _, d, r in samples) or 1.0
    lines = [f"{'minute':>8} {'demand':>8} {'replicas':>8}  # demand, | capacity (scale {top:.0f} req/min)"]
    for minute, demand, reps in samples:
        bar = ["#" if i < round(demand / top * width) else " " for i in range(width + 1)]
        cap = min(width, round(reps * capacity / top * width))
        bar[cap] = "!" if demand > reps * capacity else "|"
        lines.append(f"{minute:8.0f} {demand:8.0f} {reps:8d}  {''.join(bar).rstrip()}")
    return "\n".join(lines)
