"""Objects kinds read but do not create (`Kind.observed`, e.g. a function's pods), routed to their owner.

One lean informer per observed kind (label-selected, leader only). Each event is reduced at once to the
kind's small view, kept per owner in `runtime.observed_views`; when an owner's views change, its status is
refreshed from them (the work queue's STATUS need, at the front: the object already exists). An object whose
view is None (nothing the status needs, e.g. a pod whose init container succeeded) is not kept.
"""

from __future__ import annotations

from typing import Any

from mpcloud_operator.reconcile.kind import Kind, Observed
from mpcloud_operator.reconcile.queue import STATUS
from mpcloud_operator.runtime import Runtime


def on_event(runtime: Runtime, kind: Kind, observed: Observed, event_type: str, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    owner = observed.owner(obj)
    if not owner:
        return
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    key = (observed.kind, namespace, owner)
    views = runtime.observed_views.get(key, {})
    view = None if event_type == "DELETED" else observed.view(obj)
    if views.get(name) == view:
        return
    views = {**views, name: view} if view is not None else {k: v for k, v in views.items() if k != name}
    if views:
        runtime.observed_views[key] = views
    else:
        runtime.observed_views.pop(key, None)
    primary = (kind.kind, namespace, owner)
    if runtime.primaries.get(primary) is not None:
        runtime.queue.add(primary, STATUS, front=True)


def views_for(runtime: Runtime, kind: Kind, namespace: str, name: str) -> dict[str, list[dict[str, Any]]]:
    """What `StatusInput.observed` holds for one object: observed kind -> its objects' views (name order)."""
    out = {}
    for observed in kind.observed:
        views = runtime.observed_views.get((observed.kind, namespace, name)) or {}
        out[observed.kind] = [views[k] for k in sorted(views)]
    return out


def forget(runtime: Runtime, kind: Kind, namespace: str, name: str) -> None:
    for observed in kind.observed:
        runtime.observed_views.pop((observed.kind, namespace, name), None)
