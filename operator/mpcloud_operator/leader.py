"""Leader election on a coordination.k8s.io/v1 Lease, so that two operator replicas never both act.

kopf's peering is not leader election (a lower-priority peer pauses; equal priorities freeze), so the
process takes a Lease before kopf starts, renews it in a thread, and exits if it ever loses it — the
controller-runtime / client-go leaderelection behaviour. Updates use the Lease's resourceVersion, so two
candidates racing for an expired Lease cannot both win (the API server rejects the stale write with 409).

Timing follows client-go's defaults: a 15 s lease, renewed every 5 s; a failed renewal is retried every 2 s until
the renew deadline (10 s after the last success), and every request carries a timeout shorter than that, so a
hung connection can never keep a holder acting after its lease has expired.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("mpcloud.leader")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class LeaderElector:
    def __init__(self, api: client.ApiClient, name: str, namespace: str, identity: str | None = None,
                 lease_seconds: int = 15, renew_seconds: float = 5.0, retry_seconds: float = 2.0,
                 renew_deadline_seconds: float = 10.0) -> None:
        self.coord = client.CoordinationV1Api(api)
        self.name, self.namespace = name, namespace
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.lease_seconds, self.renew_seconds, self.retry_seconds = lease_seconds, renew_seconds, retry_seconds
        self.renew_deadline_seconds = renew_deadline_seconds
        # Each call must give up well before the renew deadline, so that one more attempt still fits in it.
        self.request_timeout = max(1.0, min(retry_seconds * 2, renew_deadline_seconds / 3))
        self._stop = threading.Event()

    def _try_acquire_or_renew(self) -> bool:
        now = _now()
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=self.lease_seconds,
                                        acquire_time=now, renew_time=now, lease_transitions=0))
            try:
                self.coord.create_namespaced_lease(self.namespace, body, _request_timeout=self.request_timeout)
                return True
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
        spec = lease.spec
        held_by_other = spec.holder_identity and spec.holder_identity != self.identity
        if held_by_other and spec.renew_time is not None:
            expires = spec.renew_time.timestamp() + (spec.lease_duration_seconds or self.lease_seconds)
            if now.timestamp() < expires:
                return False
        if spec.holder_identity != self.identity:
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.acquire_time = now
            spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = self.lease_seconds
        try:
            # carries resourceVersion: a concurrent writer makes this a 409, never a silent double hold
            self.coord.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self.request_timeout)
            return True
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote first
                return False
            raise

    def acquire(self, on_wait: Callable[[], None] | None = None) -> None:
        """Block until this process holds the Lease."""
        log.info("waiting for lease %s/%s as %s", self.namespace, self.name, self.identity)
        while not self._stop.is_set():
            try:
                if self._try_acquire_or_renew():
                    log.info("acquired lease %s/%s", self.namespace, self.name)
                    return
            except ApiException as exc:
                log.warning("lease acquire failed: %s", exc.reason)
            if on_wait:
                on_wait()
            self._stop.wait(self.retry_seconds)

    def keep_renewing(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in a daemon thread; call `on_lost` once if the Lease is taken or cannot be renewed in time."""

        def loop() -> None:
            last_ok = time.monotonic()
            wait = self.renew_seconds
            while not self._stop.wait(wait):
                try:
                    if self._try_acquire_or_renew():
                        last_ok, wait = time.monotonic(), self.renew_seconds
                        continue
                    log.error("lease %s/%s taken by another holder", self.namespace, self.name)
                except Exception as exc:  # noqa: BLE001 - network errors and timeouts: retry until the deadline
                    since = time.monotonic() - last_ok
                    if since + self.retry_seconds < self.renew_deadline_seconds:
                        log.warning("lease renew failed (%.1fs since last renewal), retrying: %s", since, exc)
                        wait = self.retry_seconds
                        continue
                    log.error("lease not renewed for %.1fs (deadline %.0fs): %s", since,
                              self.renew_deadline_seconds, exc)
                on_lost()
                return

        thread = threading.Thread(target=loop, name="lease-renewer", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up on clean shutdown so a successor need not wait for expiry."""
        self._stop.set()
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.request_timeout)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.coord.replace_namespaced_lease(self.name, self.namespace, lease,
                                                    _request_timeout=self.request_timeout)
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.warning("lease release failed: %s", exc)
