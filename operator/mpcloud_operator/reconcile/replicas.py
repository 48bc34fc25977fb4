"""A Deployment's spec.replicas written by a scaler, not by the reconciler's apply (any kind that autoscales).

The reconciler applies such a Deployment without spec.replicas (as under an HPA) and the scaler sets it through
the scale subresource with its own field manager (`mpcloud-scaler`). Dropping a field from an apply resets it
to the default (1) unless another manager owns it, so a kind makes the scaler an owner first (`claim`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mpcloud_operator.config import SCALER_FIELD_MANAGER


def replicas_owners(deployment: dict[str, Any]) -> set[str]:
    return {mf.get("manager", "") for mf in deployment["metadata"].get("managedFields") or []
            if "f:replicas" in ((mf.get("fieldsV1") or {}).get("f:spec") or {})}


def set_replicas(runtime: Any, namespace: str, name: str, replicas: int) -> dict[str, Any]:
    """Server-side apply the Deployment's spec.replicas as the scaler."""
    result = runtime.kube.apply_scale("Deployment", namespace, name, replicas, SCALER_FIELD_MANAGER)
    # The Deployment's generation moves: its next watch event is our own write, not drift.
    runtime.tracker.expect_change(("Deployment", namespace, name))
    return result


def claim(runtime: Any, namespace: str, name: str, live: dict[str, Any] | None, start: int,
          clamp: Callable[[int], int] = lambda n: n) -> None:
    """Make the scaler an owner of Deployment `name`'s spec.replicas. `start` is used when nobody but the
    API default set it; a value another manager set is kept, clamped (switching owners never moves it)."""
    live = live or runtime.kube.get("Deployment", namespace, name)
    if live is None:
        return
    owners = replicas_owners(live)
    if SCALER_FIELD_MANAGER in owners:
        return
    replicas = int(live["spec"].get("replicas", 1)) if owners - {"kube-controller-manager"} else start
    set_replicas(runtime, namespace, name, clamp(replicas))
