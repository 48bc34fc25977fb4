"""The hand-off of a Deployment's spec.replicas between the reconciler and the scaling loop.

In predictive and scheduled modes the scaling loop (field manager `mpcloud-scaler`) owns the Deployment's
spec.replicas, through its scale subresource, and the reconciler applies the Deployment without that field
(as under an HPA). Dropping a field from an apply resets it to the default (1) unless another manager owns
it, so before the reconciler stops sending it, `claim_replicas` makes the scaler an owner at the current
value: switching an app to predictive mode never dips its replicas.
"""

from __future__ import annotations

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


def claim_replicas(runtime: Any, app: Any, live: dict[str, Any] | None = None) -> None:
    """Make `mpcloud-scaler` an owner of the Deployment's spec.replicas, keeping the current value.

    Called before a Deployment without spec.replicas is applied, and right after creating one (then the
    app's own count, clamped, is the start value)."""
    ns, name = app.metadata.namespace, app.metadata.name
    live = live or runtime.kube.get("Deployment", ns, name)
    if live is None:
        return
    owners = replicas_owners(live)
    if SCALER_FIELD_MANAGER in owners:
        return
    if owners - {"kube-controller-manager"}:
        replicas = int(live["spec"].get("replicas", 1))
    else:  # nobody set it: the API default of 1
        st = app.status
        replicas = st.desired_replicas if st and st.desired_replicas is not None else app.spec.replicas.effective
    set_replicas(runtime, ns, name, app.spec.replicas.clamp(replicas))
