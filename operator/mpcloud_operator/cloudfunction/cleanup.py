"""The credential sweep: level-triggered cleanup of function roles and S3 keys, like Kubernetes' garbage collector.

A function's PostgreSQL role and S3 identity are dropped at once when its delete event arrives
(`handlers.FunctionHooks.forget`) and when a binding leaves its spec (`bindings.revoke_removed`). Both are
edge-triggered: an operator that was down, a backing service that was down at that moment, or an app renamed
would leave credentials behind. So the leader also sweeps, every `period` seconds:

1. list what is provisioned: function roles (identified by their comment) and function identities (by their
   tags) — first, so that anything created after this point cannot be mistaken for an orphan;
2. list the CloudFunctions (from the API server, not the watch cache, which may not have synced yet);
3. drop every role or identity whose function no longer exists, or exists but no longer binds that service
   in that app — after one more GET of that function right before the drop (a function re-created meanwhile
   keeps its credentials).

Only namespaces this operator manages are considered (MPCLOUD_NAMESPACES), and only credentials that name
their function: nothing else on the servers is ever touched. The app's data (database, bucket) is never
dropped. A backing service that cannot be reached is retried with backoff (30 s doubling, up to the period);
`mpcloud_function_credential_sweeps_total{service,outcome}` and the log say what happened, and
`mpcloud_function_credentials_dropped_total{service}` counts what it dropped. Deletion is never blocked (no
finalizer): a namespace can always go, even with the operator or a backing service down.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from mpcloud_operator.cloudfunction.model import KIND

log = logging.getLogger("mpcloud.cloudfunction.cleanup")
SWEEPS = Counter("mpcloud_function_credential_sweeps_total", "Passes of the credential sweep per backing service.",
                 ["service", "outcome"])
DROPPED = Counter("mpcloud_function_credentials_dropped_total",
                  "Function credentials the sweep dropped (function gone or binding removed).", ["service"])
FIRST_RETRY_S = 30.0

Owner = dict[str, str]  # {namespace, app, function}


def _binds(fn: dict[str, Any], service: str) -> bool:
    return bool(((fn.get("spec") or {}).get("bindings") or {}).get(service))


def expected(functions: list[dict[str, Any]], service: str) -> set[tuple[str, str, str]]:
    """(namespace, app, function) of every function binding `service` (pure)."""
    return {(f["metadata"]["namespace"], (f.get("spec") or {}).get("app") or "default", f["metadata"]["name"])
            for f in functions if _binds(f, service)}


def orphans(provisioned: list[tuple[str, Owner]], wanted: set[tuple[str, str, str]],
            namespaces: list[str]) -> list[tuple[str, Owner]]:
    """Provisioned credentials no function asks for, in the namespaces managed (pure)."""
    return [(name, o) for name, o in provisioned
            if (not namespaces or o["namespace"] in namespaces)
            and (o["namespace"], o["app"], o["function"]) not in wanted]


class CredentialSweep:
    """The leader's loop; `sweep()` is one pass (tests call it directly)."""

    def __init__(self, runtime: Any, period: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime, self.period, self.clock = runtime, period, clock
        self.failures = 0
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    # ---------------------------------------------------------------- what exists
    def _functions(self) -> list[dict[str, Any]]:
        out = []
        for ns in self.runtime.config.namespaces or [None]:
            cont = ""
            while True:
                query = [("limit", "500")] + ([("continue", cont)] if cont else [])
                page = self.runtime.kube.list(KIND, ns, query=query)
                out += page.get("items") or []
                cont = (page.get("metadata") or {}).get("continue") or ""
                if not cont:
                    break
        return out

    def _still_unbound(self, owner: Owner, service: str) -> bool:
        """Right before a drop: the function is gone, or it no longer binds `service` in that app."""
        fn = self.runtime.kube.get(KIND, owner["namespace"], owner["function"])
        return fn is None or not _binds(fn, service) or ((fn.get("spec") or {}).get("app") or "default") != owner["app"]

    def _provisioned(self) -> dict[str, list[tuple[str, Owner]]]:
        cfg, out = self.runtime.config, {}
        if cfg.postgres_admin_dsn:
            from mpcloud_operator.backing.postgres import Provisioner

            prov = self.runtime.service("postgres", lambda: Provisioner(cfg.postgres_admin_dsn))
            out["database"] = self._guard("database", lambda: asyncio.run(prov.function_roles()))
        if cfg.s3_endpoint and cfg.s3_admin_access_key and cfg.s3_admin_secret_key:
            from mpcloud_operator.backing.s3 import FileProvisioner

            prov3 = self.runtime.service("s3", lambda: FileProvisioner(cfg.s3_endpoint, cfg.s3_admin_access_key,
                                                                       cfg.s3_admin_secret_key))
            out["storage"] = self._guard("storage", prov3.function_identities)
        return {k: v for k, v in out.items() if v is not None}

    def _guard(self, service: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - a service down: the others are still swept; retried
            log.warning("credential sweep: %s unavailable, retrying with backoff: %s", service,
                        str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
            SWEEPS.labels(service, "unavailable").inc()
            self._failed = True
            return None

    # ---------------------------------------------------------------- one pass
    def sweep(self) -> dict[str, list[str]]:
        """Drop orphaned credentials; returns {service: [dropped names]}. Raises only if the API is down."""
        from mpcloud_operator.cloudfunction import bindings

        self._failed = False
        provisioned = self._provisioned()  # first: what appears after this is never an orphan of this pass
        if not provisioned:
            return {}
        functions = self._functions()
        dropped: dict[str, list[str]] = {}
        for service, items in provisioned.items():
            for name, owner in orphans(items, expected(functions, service), self.runtime.config.namespaces):
                if not self._still_unbound(owner, service):
                    continue
                ok = self._guard(service, lambda owner=owner, service=service: bindings.revoke(
                    self.runtime, owner["namespace"], owner["app"], owner["function"],
                    service == "database", service == "storage") or True)
                if ok:
                    log.info("credential sweep: dropped %s %s of %s/%s (app %s)", service, name, owner["namespace"],
                             owner["function"], owner["app"])
                    DROPPED.labels(service).inc()
                    dropped.setdefault(service, []).append(name)
            if not self._failed:
                SWEEPS.labels(service, "ok").inc()
        return dropped

    # ---------------------------------------------------------------- the loop
    def next_delay(self) -> float:
        return self.period if not self.failures else min(self.period, FIRST_RETRY_S * 2 ** (self.failures - 1))

    def run(self) -> None:
        # The first pass soon after taking over (what was deleted while no operator ran), after the start-up
        # reconciles have had a moment.
        delay = min(self.period, FIRST_RETRY_S)
        while not self._stop.wait(delay):
            try:
                self.sweep()
                self.failures = self.failures + 1 if self._failed else 0
            except Exception as exc:  # noqa: BLE001 - the API server down: try again later
                self.failures += 1
                log.warning("credential sweep failed: %s", exc)
            delay = self.next_delay()

    def start(self) -> CredentialSweep:
        self.thread = threading.Thread(target=self.run, name="cf-credential-sweep", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
