"""Prometheus metrics of the operator, served on /metrics (prometheus-client's default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_TOTAL = Counter("mpcloud_reconcile_total", "Reconciles run, by kind and result.", ["kind", "result"])
RECONCILE_ERRORS = Counter("mpcloud_reconcile_errors_total", "Reconciles that failed, by kind and reason.", ["kind", "reason"])
RECONCILE_DURATION = Histogram(
    "mpcloud_reconcile_duration_seconds", "Time to reconcile one object, by kind.", ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
APPS_BY_READY = Gauge("mpcloud_apps", "MiniProgramApps by Ready condition status.", ["ready"])
DESIRED_REPLICAS = Gauge("mpcloud_desired_replicas", "Replicas mpcloud wants for an app.", ["namespace", "name"])
ACTUAL_REPLICAS = Gauge("mpcloud_ready_replicas", "Ready replicas of an app's Deployment.", ["namespace", "name"])
LEADER = Gauge("mpcloud_leader", "1 when this operator process holds the leader Lease.")


class _ReadyCounts:
    """mpcloud_apps{ready}: counts kept incrementally (O(1) per change, also at 10,000 apps)."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], str] = {}

    def set_ready(self, namespace: str, name: str, ready: str) -> None:
        old = self._state.get((namespace, name))
        if old == ready:
            return
        if old is not None:
            APPS_BY_READY.labels(old).dec()
        APPS_BY_READY.labels(ready).inc()
        self._state[(namespace, name)] = ready

    def forget(self, namespace: str, name: str) -> None:
        old = self._state.pop((namespace, name), None)
        if old is not None:
            APPS_BY_READY.labels(old).dec()


APP_READY = _ReadyCounts()


def forget_app(namespace: str, name: str) -> None:
    APP_READY.forget(namespace, name)
    for gauge in (DESIRED_REPLICAS, ACTUAL_REPLICAS):
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass
