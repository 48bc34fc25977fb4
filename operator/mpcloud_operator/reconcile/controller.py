"""Wires the registry to the cluster: primary events in, child watches, the work queue and its workers.

kopf delivers the events of every registered custom resource kind (`observe_primary`, called from the
`@kopf.on.event` handlers registered in `handlers.py`); one lean `Informer` per child kind watches the
children (label `app.kubernetes.io/managed-by=mpcloud`); both only *enqueue* keys. A fixed pool of worker
threads takes keys off the queue and runs `runner.reconcile`, so at most `workers` objects are in flight
whatever the number of objects, a burst of events for one object costs one reconcile, and failures come
back with backoff.

An object is fully reconciled (children applied) once per generation it is seen at — every object once
after a start, then on each spec change — again after a failure (with backoff) and when a child drifts. Events
that change only its status (our own status writes, the scaler's) cost nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from mpcloud_operator import metrics
from mpcloud_operator.reconcile import children, observed, references, runner
from mpcloud_operator.reconcile.informer import Informer
from mpcloud_operator.reconcile.queue import FULL
from mpcloud_operator.runtime import Runtime

log = logging.getLogger("mpcloud.controller")
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=mpcloud"


def observe_primary(runtime: Runtime, event_type: str | None, body: dict[str, Any]) -> None:
    """A custom resource's watch event: keep the latest version, enqueue work if there is any."""
    meta = body["metadata"]
    key = (body["kind"], meta["namespace"], meta["name"])
    if event_type == "DELETED":
        runtime.primaries.pop(key)
        runtime.queued_generation.pop(meta.get("uid", ""), None)
        runtime.queue.forget(key)
        kind = runtime.kinds[body["kind"]]
        metrics.READY.forget(kind.kind, meta["namespace"], meta["name"])
        observed.forget(runtime, kind, meta["namespace"], meta["name"])
        runtime.references.forget(key)
        if kind.hooks:
            kind.hooks.forget(meta["namespace"], meta["name"])
        return
    runtime.primaries.put(key, body)
    if meta.get("deletionTimestamp"):
        return
    generation = meta.get("generation") or 0
    if runtime.queued_generation.get(meta.get("uid", "")) != generation:
        # Once per generation: retries after a failure come from the queue's backoff, not from the echo
        # of our own status write.
        runtime.queued_generation[meta.get("uid", "")] = generation
        runtime.queue.add(key, FULL)


class _AnyOf:
    """One kind watched per namespace (MPCLOUD_NAMESPACES): exists if any namespace's watch has it."""

    def __init__(self, watches: list[Informer]) -> None:
        self.watches = watches

    def has(self, namespace: str, name: str) -> bool | None:
        answers = [w.has(namespace, name) for w in self.watches]
        return True if True in answers else None if None in answers else False


class Controller:
    """Child informers + reconcile workers for every registered kind (leader only)."""

    def __init__(self, runtime: Runtime, workers: int = 8) -> None:
        self.runtime, self.workers = runtime, workers
        self.informers: list[Informer] = []
        self.threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def child_informers(self) -> list[Informer]:
        rt = self.runtime
        seen: set[str] = set()
        out = []
        namespaces = rt.config.namespaces or [None]
        for kind in rt.kinds.values():
            for child in kind.children:
                if child.kind in seen:
                    continue
                seen.add(child.kind)
                watches = [Informer(rt.kube, rt.kube.paths.collection(child.kind, ns),
                                    lambda type_, obj: children.on_child_event(rt, type_, obj),
                                    label_selector=MANAGED_SELECTOR, name=f"{child.plural}{'@' + ns if ns else ''}")
                           for ns in namespaces]
                rt.child_watches[child.kind] = watches[0] if len(watches) == 1 else _AnyOf(watches)
                out += watches
        return out

    def observed_informers(self) -> list[Informer]:
        """One informer per kind's observed kind (and namespace), events routed to the owner's status."""
        rt = self.runtime
        out = []
        for kind in rt.kinds.values():
            for obs in kind.observed:
                for ns in rt.config.namespaces or [None]:
                    def on_event(type_: str, obj: dict[str, Any], kind=kind, obs=obs) -> None:
                        observed.on_event(rt, kind, obs, type_, obj)
                    out.append(Informer(rt.kube, rt.kube.paths.collection(obs.kind, ns), on_event,
                                        label_selector=obs.label_selector,
                                        name=f"{obs.plural}-of-{kind.plural}{'@' + ns if ns else ''}"))
        return out

    def reference_informers(self) -> list[Informer]:
        """Referenced objects the operator may watch (all of them: they carry no label of ours); an event
        re-reconciles only the objects pointing at that one (references.ReferenceIndex)."""
        rt = self.runtime
        out = []
        for ref_kind in rt.watched_references:
            _, plural, namespaced = rt.kube.paths.kinds[ref_kind]
            for ns in (rt.config.namespaces or [None]) if namespaced else [None]:
                out.append(Informer(rt.kube, rt.kube.paths.collection(ref_kind, ns),
                                    lambda type_, obj: references.on_referenced_event(rt, type_, obj),
                                    name=f"referenced-{plural}{'@' + ns if ns else ''}"))
        return out

    def start(self) -> Controller:
        self.informers = [i.start() for i in (*self.child_informers(), *self.observed_informers(),
                                              *self.reference_informers())]
        for n in range(self.workers):
            t = threading.Thread(target=self._work, name=f"reconcile-{n}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def _work(self) -> None:
        rt = self.runtime
        while not self._stop.is_set():
            item = rt.queue.get(timeout=1.0)
            if item is None:
                continue
            key, need = item
            kind_name, namespace, name = key
            try:
                result = runner.reconcile(rt, rt.kinds[kind_name], namespace, name, need)
                if result.retry:
                    delay = rt.queue.retry(key, need)
                    log.info("%s %s/%s: %s; retrying in %.0fs", kind_name, namespace, name, result.message, delay)
                else:
                    rt.queue.forget(key)
                    if result.after is not None:  # a deadline, or inputs not observable yet
                        rt.queue.add_after(key, result.after, FULL)
            finally:
                rt.queue.done(key)
                metrics.QUEUE_DEPTH.set(len(rt.queue))

    def stop(self) -> None:
        self._stop.set()
        self.runtime.queue.shutdown()
        for informer in self.informers:
            informer.stop()
