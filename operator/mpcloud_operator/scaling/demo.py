"""Pieces for `mpcloud demo`: Prometheus + a time-compressed traffic replay for one app, and a text chart.

    handles = demo.start(kubeconfig, "demo", "shop")      # Prometheus up, history backfilled, replay on
    # run the operator with handles.operator_env (MPCLOUD_PROMETHEUS_URL, MPCLOUD_SCALING_TICK_SECONDS, ..)
    ...; print(demo.chart(handles.samples, handles.capacity)); handles.stop()

By default the traffic is `traffic.daily_ramp()` (a 30-minute ramp at 10:00 every day, 3 days of
history), replayed 30x faster (1 trace minute = 2 s) from 12 minutes before the ramp: a predictive app
scales up ~2 trace minutes before the ramp. `start` creates the app (mode predictive) unless told not to.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpcloud_operator.scaling import promserver
from mpcloud_operator.scaling.traffic import ReplayServer, daily_ramp, start_replay

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

    def stop(self, prometheus: bool = False) -> None:
        """Stop the replay and the sampler (and Prometheus with prometheus=True)."""
        self._stop.set()
        self.replay.stop()
        if prometheus:
            promserver.down()


def start(kubeconfig: str | Path, namespace: str, app: str, *, trace: np.ndarray | None = None,
          speedup: float = 30.0, start_minute: int | None = None, create_app: bool = True) -> DemoHandles:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    tick = 60.0 / speedup
    url = promserver.up(scrape_interval=f"{int(tick * 250)}ms")
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
