"""A lean list-and-watch of one resource: paginated LIST, then WATCH with bookmarks, re-listing on 410 Gone.

The operator watches every child kind of every custom resource (Deployments, Services, ...). Keeping whole
objects (or one framework worker per object) for that costs tens of KiB per object; at 10,000 apps × 5
children it would be most of the operator's memory. Here each object is reduced by the caller's `on_event`
to what reconcile needs (the drift marker, the owner, a small status view) the moment it arrives, LIST
pages are bounded (`limit`), and one thread serves one resource.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mpcloud_operator.kube.client import ApiException, KubeClient

log = logging.getLogger("mpcloud.informer")

EventHandler = Callable[[str, dict[str, Any]], None]  # (ADDED | MODIFIED | DELETED | SYNCED, object)


_OWNER_FIELDS = ("apiVersion", "kind", "name", "uid")


def _identity(meta: dict[str, Any]) -> tuple[str, Any]:
    """(uid, controller owner as a tuple): the little a DELETED found by a re-LIST must report."""
    owner = next((tuple(r.get(k) for k in _OWNER_FIELDS) for r in meta.get("ownerReferences") or ()
                  if r.get("controller")), None)
    return meta.get("uid", ""), owner


class Informer:
    """Calls `on_event(type, object)` for every object of `path` (a collection URL) matching `label_selector`
    (and `field_selector`).

    After each (re-)LIST, objects that vanished while the watch was down are reported as DELETED (with the
    ownerReferences they had), and `on_synced()` runs once the first LIST is complete. `has(namespace, name)`
    answers from the cache whether an object exists (a lister, without a GET).
    """

    def __init__(self, kube: KubeClient, path: str, on_event: EventHandler, label_selector: str | None = None,
                 page_size: int = 500, watch_timeout: int = 270, name: str | None = None,
                 on_synced: Callable[[], None] | None = None, field_selector: str | None = None) -> None:
        self.kube, self.path, self.on_event = kube, path, on_event
        self.label_selector, self.page_size, self.watch_timeout = label_selector, page_size, watch_timeout
        self.field_selector = field_selector
        self.name = name or path.rsplit("/", 1)[-1]
        self.on_synced = on_synced
        self.synced = threading.Event()
        # (namespace, name) -> (uid, ownerReferences): what a DELETED found by a re-LIST must report
        self._known: dict[tuple[str, str], tuple[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _selector(self) -> list[tuple[str, str]]:
        return ([("labelSelector", self.label_selector)] if self.label_selector else []) + (
            [("fieldSelector", self.field_selector)] if self.field_selector else [])

    def _list(self) -> str:
        seen: dict[tuple[str, str], tuple[str, Any]] = {}
        cont = ""
        while True:
            query = [*self._selector(), ("limit", str(self.page_size))] + ([("continue", cont)] if cont else [])
            page = self.kube.request("GET", self.path, query=query, timeout=60)
            kind = page.get("kind", "").removesuffix("List")
            api_version = page.get("apiVersion", "")
            for obj in page.get("items") or []:
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", api_version)
                meta = obj["metadata"]
                seen[(meta.get("namespace", ""), meta["name"])] = _identity(meta)
                self.on_event("ADDED", obj)
            cont = (page.get("metadata") or {}).get("continue") or ""
            if not cont:
                rv = page["metadata"]["resourceVersion"]
                break
        for (ns, name), (uid, owner) in self._known.items():
            if (ns, name) not in seen:
                owners = [{**dict(zip(_OWNER_FIELDS, owner)), "controller": True}] if owner else []
                self.on_event("DELETED", {"kind": kind, "apiVersion": api_version, "metadata": {
                    "namespace": ns, "name": name, "uid": uid, "ownerReferences": owners}})
        self._known = seen
        return rv

    def _watch(self, rv: str) -> str | None:
        """Watch from `rv`; the resourceVersion to continue from, or None when a re-LIST is needed."""
        query = [*self._selector(), ("watch", "true"), ("allowWatchBookmarks", "true"), ("resourceVersion", rv),
                 ("timeoutSeconds", str(self.watch_timeout))]
        for event in self.kube.stream(self.path, query, timeout=self.watch_timeout + 30):
            type_, obj = event.get("type"), event.get("object") or {}
            if type_ == "ERROR":
                if obj.get("code") == 410:  # our resourceVersion is too old: list again
                    return None
                raise ApiException(status=obj.get("code"), reason=obj.get("message"))
            meta = obj.get("metadata") or {}
            rv = meta.get("resourceVersion", rv)
            if type_ == "BOOKMARK":
                continue
            key = (meta.get("namespace", ""), meta.get("name", ""))
            if type_ == "DELETED":
                self._known.pop(key, None)
            else:
                self._known[key] = _identity(meta)
            self.on_event(type_, obj)
            if self._stop.is_set():
                break
        return rv

    def has(self, namespace: str, name: str) -> bool | None:
        """Whether the object exists, or None before the first LIST completed."""
        if not self.synced.is_set():
            return None
        return (namespace, name) in self._known

    def __len__(self) -> int:
        return len(self._known)

    def run(self) -> None:
        rv: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._list()
                    if not self.synced.is_set():
                        self.synced.set()
                        if self.on_synced:
                            self.on_synced()
                rv = self._watch(rv)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the watch must survive API hiccups
                failures += 1
                log.warning("watch %s failed (%s); retrying", self.name, exc)
                rv = None if isinstance(exc, ApiException) and exc.status == 410 else rv
                if failures > 3:
                    rv = None  # something is off with the stream: start from a fresh LIST
                self._stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return self.synced.wait(max(0.0, deadline - time.monotonic()))
