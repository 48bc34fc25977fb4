"""Kubernetes Events, posted off the reconcile path (what client-go's EventBroadcaster does for Go operators).

A reconcile never waits on an Event: `EventRecorder.post` puts it on a bounded queue and one background thread
writes it. A burst of thousands of new objects therefore costs the workers nothing, and if the API server
is slow the queue overflows by dropping Events (counted in `mpcloud_events_dropped_total`), never by
blocking a worker. Repeats of the same Event (same object, type, reason and message) within
`correlate_seconds` bump the existing Event's `count` and `lastTimestamp` instead of creating another one,
as client-go's EventCorrelator does, so a flapping condition cannot flood the namespace with Events.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from prometheus_client import Counter

log = logging.getLogger("mpcloud.events")

EVENTS_POSTED = Counter("mpcloud_events_total", "Kubernetes Events written, by type and whether new or a repeat.",
                        ["type", "write"])
EVENTS_DROPPED = Counter("mpcloud_events_dropped_total", "Events dropped because the API server was too slow.")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(involved: dict[str, Any], reason: str, message: str, type_: str, component: str) -> dict[str, Any]:
    meta = involved["metadata"]
    now = _now()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "reason": reason, "message": message[:1024], "type": type_,
        "source": {"component": component}, "reportingComponent": "mpcloud.io/operator",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }


class EventRecorder:
    """Asynchronous, correlating Event writer over a KubeClient-like `request(method, path, body=...)`."""

    def __init__(self, request: Any, component: str = "mpcloud-operator", capacity: int = 10_000,
                 correlate_seconds: float = 600.0, remembered: int = 4096) -> None:
        self._request, self.component = request, component
        self.correlate_seconds, self.remembered = correlate_seconds, remembered
        self._queue: queue.Queue[tuple[dict[str, Any], str, str, str] | None] = queue.Queue(capacity)
        # (uid, type, reason, message) -> (event name, count, monotonic time first posted)
        self._recent: OrderedDict[tuple[str, str, str, str], tuple[str, int, float]] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def post(self, involved: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        self._ensure_started()
        try:
            self._queue.put_nowait((involved, reason, message, type_))
        except queue.Full:
            EVENTS_DROPPED.inc()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued Event was written (tests, and a clean shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="mpcloud-events", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is not None:
                    self.write(*item)
            except Exception as exc:  # noqa: BLE001 - Events are best effort: never let one stop the writer
                log.debug("event not recorded: %s", exc)
            finally:
                self._queue.task_done()

    def write(self, involved: dict[str, Any], reason: str, message: str, type_: str) -> None:
        """Create the Event, or count a repeat into the one created recently (synchronous)."""
        meta = involved["metadata"]
        key = (meta.get("uid") or f"{meta['namespace']}/{meta['name']}", type_, reason, message[:1024])
        seen = self._recent.get(key)
        if seen is not None and time.monotonic() - seen[2] < self.correlate_seconds:
            name, count, first = seen
            try:
                self._request("PATCH", f"/api/v1/namespaces/{meta['namespace']}/events/{name}",
                              body={"count": count + 1, "lastTimestamp": _now()},
                              content_type="application/merge-patch+json")
                self._recent[key] = (name, count + 1, first)
                self._recent.move_to_end(key)
                EVENTS_POSTED.labels(type_, "repeat").inc()
                return
            except Exception:  # noqa: BLE001 - the Event expired or was deleted: write a new one
                self._recent.pop(key, None)
        created = self._request("POST", f"/api/v1/namespaces/{meta['namespace']}/events",
                                body=event_body(involved, reason, message, type_, self.component))
        EVENTS_POSTED.labels(type_, "new").inc()
        self._recent[key] = (created["metadata"]["name"], 1, time.monotonic())
        while len(self._recent) > self.remembered:
            self._recent.popitem(last=False)
