"""Prometheus metrics of the operator, served on /metrics (prometheus-client's default registry).

Generic series are labelled by kind, so every kind registered in `kinds.py` gets them without a line here;
kind-specific gauges (an app's replicas) live with their kind.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_TOTAL = Counter("mpcloud_reconcile_total", "Reconciles run, by kind and result.", ["kind", "result"])
RECONCILE_ERRORS = Counter("mpcloud_reconcile_errors_total", "Reconciles that failed, by kind and reason.",
                           ["kind", "reason"])
RECONCILE_DURATION = Histogram(
    "mpcloud_reconcile_duration_seconds", "Time to reconcile one object, by kind.", ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OBJECTS_BY_READY = Gauge("mpcloud_objects", "Custom resources by kind and Ready condition status.", ["kind", "ready"])
QUEUE_DEPTH = Gauge("mpcloud_workqueue_depth", "Objects waiting for a reconcile (queued or delayed).")
WATCHED = Gauge("mpcloud_watched_objects", "Objects in the operator's watch caches, by kind.", ["kind"])
LEADER = Gauge("mpcloud_leader", "1 when this operator process holds the leader Lease.")


class ReadyCounts:
    """mpcloud_objects{kind,ready}: counts kept incrementally (O(1) per change, also at 10,000 objects)."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def set_ready(self, kind: str, namespace: str, name: str, ready: str) -> None:
        with self._lock:
            old = self._state.get((kind, namespace, name))
            if old == ready:
                return
            if old is not None:
                OBJECTS_BY_READY.labels(kind, old).dec()
            OBJECTS_BY_READY.labels(kind, ready).inc()
            self._state[(kind, namespace, name)] = ready

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            old = self._state.pop((kind, namespace, name), None)
            if old is not None:
                OBJECTS_BY_READY.labels(kind, old).dec()


READY = ReadyCounts()
