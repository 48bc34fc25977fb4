"""A function's bindings: its app's collections and bucket provisioned, and the credentials its pods get.

Each function gets a PostgreSQL login role granted only its declared collections, and an S3 key limited to its
app's bucket. The secrets are derived from the function's identity (`backing.credentials.derive`), not stored.
Nothing here runs without a configured backing service: a binding to one that is missing or down refuses the
reconcile with Ready=False/BackingServiceUnavailable and a retry, and the running instances keep their
current credentials.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mpcloud_operator.backing.credentials import TTLMemo, derive, first_line
from mpcloud_operator.cloudfunction.model import CloudFunction
from mpcloud_operator.reconcile.references import ReferenceProblem

log = logging.getLogger("mpcloud.cloudfunction")
UNAVAILABLE = "BackingServiceUnavailable"
PROVISIONED_TTL_S = 300.0


def _identity(fn: CloudFunction) -> tuple[str, str, str, str]:
    m = fn.metadata
    return m.namespace or "", fn.spec.app, m.name, m.uid or ""


def _refuse(message: str) -> ReferenceProblem:
    return ReferenceProblem(UNAVAILABLE, [message])


def _database(runtime: Any, fn: CloudFunction, key: str) -> dict[str, str]:
    cfg = runtime.config
    if not cfg.postgres_admin_dsn:
        raise _refuse("spec.bindings.database: this operator has no PostgreSQL (MPCLOUD_POSTGRES_ADMIN_DSN unset)")
    from mpcloud_operator.backing.postgres import Provisioner

    prov = runtime.service("postgres", lambda: Provisioner(cfg.postgres_admin_dsn))
    ns, app, name, uid = _identity(fn)
    password = derive(key, "postgres", ns, app, name, uid)
    binding = fn.spec.bindings.database
    assert binding is not None
    grants = {c.name: c.access for c in binding.collections}

    async def provision() -> tuple[Any, str]:
        tenant = await prov.ensure_tenant(ns, app)
        for c in binding.collections:
            await prov.ensure_collection(tenant, c.name, list(c.indexes))
        return tenant, await prov.ensure_function(tenant, name, grants, password,
                                                  owner={"namespace": ns, "app": app, "function": name})

    memo = runtime.service("postgres-provisioned", lambda: TTLMemo(PROVISIONED_TTL_S))
    key = (ns, app, name, password, tuple((c.name, c.access, tuple(c.indexes)) for c in binding.collections))
    done = memo.get(key)
    if done is None:
        try:
            done = asyncio.run(provision())  # the reconcile runs in a worker thread: its own short event loop
        except Exception as exc:  # noqa: BLE001 - any provisioning failure: report it, keep the old instances
            raise _refuse(f"PostgreSQL: {first_line(exc)}") from exc
        memo.put(key, done)
    tenant, role = done
    host, _, port = (cfg.postgres_function_host or "").rpartition(":")
    return {"MPCLOUD_DB_DSN": prov.dsn(tenant, role, password, host or None, int(port) if port else None),
            "MPCLOUD_DB_SCHEMA": tenant.schema}


def _storage(runtime: Any, fn: CloudFunction, key: str) -> dict[str, str]:
    cfg = runtime.config
    if not (cfg.s3_endpoint and cfg.s3_admin_access_key and cfg.s3_admin_secret_key):
        raise _refuse("spec.bindings.storage: this operator has no S3 server (MPCLOUD_S3_ENDPOINT and admin keys unset)")
    from mpcloud_operator.backing.s3 import FileProvisioner

    prov = runtime.service("s3", lambda: FileProvisioner(cfg.s3_endpoint, cfg.s3_admin_access_key,
                                                         cfg.s3_admin_secret_key))
    ns, app, name, uid = _identity(fn)
    access_key = "MP" + derive(key, "s3-id", ns, app, name, uid, length=18).upper()
    secret_key = derive(key, "s3-secret", ns, app, name, uid, length=40)
    binding = fn.spec.bindings.storage
    assert binding is not None
    tenant = f"{ns}/{app}"
    memo = runtime.service("s3-provisioned", lambda: TTLMemo(PROVISIONED_TTL_S))
    key = (ns, app, name, access_key, secret_key, binding.access)
    bucket = memo.get(key)
    if bucket is None:
        try:
            bucket = prov.ensure_bucket(tenant)
            prov.ensure_identity(tenant, name, binding.access, access_key, secret_key)
        except Exception as exc:  # noqa: BLE001
            raise _refuse(f"S3: {first_line(exc)}") from exc
        memo.put(key, bucket)
    return {"MPCLOUD_S3_ENDPOINT": cfg.s3_function_endpoint or cfg.s3_endpoint,
            "MPCLOUD_S3_PUBLIC_ENDPOINT": cfg.s3_public_endpoint or cfg.s3_endpoint,
            "MPCLOUD_S3_REGION": "us-east-1", "MPCLOUD_S3_BUCKET": bucket,
            "MPCLOUD_S3_ACCESS_KEY": access_key, "MPCLOUD_S3_SECRET_KEY": secret_key}


def bind(runtime: Any, fn: CloudFunction) -> dict[str, str]:
    """Provision what the function is bound to; its pods' environment (empty: no bindings)."""
    b = fn.spec.bindings
    if b.database is None and b.storage is None:
        return {}
    key = runtime.config.binding_key
    if not key:
        raise _refuse("spec.bindings: this operator has no binding key (MPCLOUD_BINDING_KEY unset)")
    env: dict[str, str] = {}
    if b.database is not None:
        env.update(_database(runtime, fn, key))
    if b.storage is not None:
        env.update(_storage(runtime, fn, key))
    return env


def revoke(runtime: Any, namespace: str, app: str, name: str, database: bool, storage: bool) -> None:
    """Drop the function's role and/or key (the app's data stays; see README "Deleting a function"). Raises
    when a backing service cannot be reached: the caller retries."""
    cfg = runtime.config
    if database and cfg.postgres_admin_dsn:
        from mpcloud_operator.backing.postgres import Provisioner, tenant_for

        prov = runtime.service("postgres", lambda: Provisioner(cfg.postgres_admin_dsn))
        asyncio.run(prov.drop_function(tenant_for(namespace, app), name))
        _forget_provisioned(runtime, "postgres-provisioned", namespace, app, name)
    if storage and cfg.s3_endpoint:
        from mpcloud_operator.backing.s3 import FileProvisioner

        prov = runtime.service("s3", lambda: FileProvisioner(cfg.s3_endpoint, cfg.s3_admin_access_key,
                                                             cfg.s3_admin_secret_key))
        prov.drop_identity(f"{namespace}/{app}", name)
        _forget_provisioned(runtime, "s3-provisioned", namespace, app, name)


def _forget_provisioned(runtime: Any, memo_name: str, namespace: str, app: str, name: str) -> None:
    memo = runtime.services.get(memo_name)
    if memo is not None:
        memo.drop(lambda k: k[:3] == (namespace, app, name))


def revoke_removed(runtime: Any, fn: CloudFunction) -> None:
    """Bindings the last applied spec had (status.bindings) and this one has not: revoke them now. A service
    that is down refuses the reconcile (BackingServiceUnavailable, retried); the sweep is the backstop."""
    had = set(fn.status.bindings) if fn.status and fn.status.bindings else set()
    b = fn.spec.bindings
    gone = had - {k for k, v in (("database", b.database), ("storage", b.storage)) if v is not None}
    if not gone:
        return
    try:
        revoke(runtime, fn.metadata.namespace or "", fn.spec.app, fn.metadata.name, "database" in gone,
               "storage" in gone)
    except Exception as exc:  # noqa: BLE001
        raise _refuse(f"revoking the removed {' and '.join(sorted(gone))} binding: {first_line(exc)}") from exc
    log.info("CloudFunction %s/%s: revoked its %s credentials (binding removed)", fn.metadata.namespace,
             fn.metadata.name, " and ".join(sorted(gone)))


def unbind(runtime: Any, namespace: str, app: str, name: str, database: bool, storage: bool) -> None:
    """The function is gone: drop its role and key at once (best effort: the sweep retries what fails)."""
    try:
        revoke(runtime, namespace, app, name, database, storage)
    except Exception as exc:  # noqa: BLE001 - logged; cleanup.CredentialSweep drops it on its next pass
        log.warning("CloudFunction %s/%s: dropping its credentials failed (the sweep retries): %s", namespace, name, exc)
