"""One router for the watch events of every child kind of every custom resource kind.

A child event wakes its owner (the controller ownerReference of a registered kind) only when it matters:
- someone else changed or deleted the child (drift: not the version our last write left) → full reconcile,
  which restores it;
- the child's status view changed (e.g. a Deployment's ready replicas) → status refresh of the owner, or a full
  reconcile where that status decides which children come next (`ChildKind.status_drives_apply`: a run's Jobs);
- anything else (the echo of our own apply, a resync, a status change the owner does not read) → nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from mpcloud_operator.kube import tracking
from mpcloud_operator.reconcile.queue import FULL, STATUS
from mpcloud_operator.runtime import Runtime

log = logging.getLogger("mpcloud.children")


def owner_of(runtime: Runtime, obj: dict[str, Any]) -> tuple[str, str, str] | None:
    """(kind, name, uid) of the object's controller owner when that is a registered kind."""
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") in runtime.kinds:
            return ref["kind"], ref["name"], ref.get("uid", "")
    return None


def on_child_event(runtime: Runtime, event_type: str, obj: dict[str, Any]) -> None:
    owner = owner_of(runtime, obj)
    if owner is None:
        return
    owner_kind, owner_name, owner_uid = owner
    key = tracking.key(obj)
    kind = runtime.kinds[owner_kind]
    child = kind.child(obj["kind"])
    drifted = runtime.tracker.is_drift(event_type, obj)
    status_moved = False
    if child is not None and child.status_view is not None:
        if event_type == "DELETED":
            status_moved = runtime.child_views.pop(key, None) is not None
        else:
            view = child.status_view(obj)
            status_moved = runtime.child_views.get(key) != view
            runtime.child_views[key] = view
    if not (drifted or status_moved):
        return
    owner_key = (owner_kind, key[1], owner_name)
    body = runtime.primaries.get(owner_key)
    if body is None or body["metadata"].get("uid") != owner_uid or body["metadata"].get("deletionTimestamp"):
        return  # the owner is gone (or going): the garbage collector takes the child
    if drifted:
        log.info("%s %s/%s changed outside mpcloud (%s): re-applying", key[0], key[1], key[2], event_type)
    full = drifted or (status_moved and child is not None and child.status_drives_apply)
    runtime.queue.add(owner_key, FULL if full else STATUS, front=True)
