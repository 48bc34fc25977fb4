"""The hand-off of an app Deployment's spec.replicas between the reconciler and the scaling loop.

In predictive and scheduled modes the scaling loop owns the Deployment's spec.replicas (see
`reconcile.replicas`); before the reconciler stops sending it, `claim_replicas` makes the scaler an owner at
the current value: switching an app to predictive mode never dips its replicas.
"""

from __future__ import annotations

from typing import Any

from mpcloud_operator.reconcile import replicas


def claim_replicas(runtime: Any, app: Any, live: dict[str, Any] | None = None) -> None:
    """Called before a Deployment without spec.replicas is applied, and right after creating one (then the
    app's own count, clamped, is the start value)."""
    st = app.status
    start = st.desired_replicas if st and st.desired_replicas is not None else app.spec.replicas.effective
    replicas.claim(runtime, app.metadata.namespace, app.metadata.name, live, start, app.spec.replicas.clamp)
