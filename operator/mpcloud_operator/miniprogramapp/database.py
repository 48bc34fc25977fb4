"""A MiniProgramApp's managed database (`spec.bindings.database.managed: true`): the app's own PostgreSQL database.

The tenant is `<namespace>/<app name>`, the same database the app's CloudFunctions (`spec.app: <app name>`) keep
their collections in, so the app's service and its functions share data while no other app can connect. The app
logs in as its own role with the owner's rights (`backing.postgres.Provisioner.ensure_app`); the password is
derived from the operator's binding key and the app's identity (`backing.credentials.derive`), never stored by
the operator, and written to Secret `<app>-mpcloud-database`, whose keys the pods get as DATABASE_<KEY>.
A missing or unreachable PostgreSQL refuses the reconcile with Ready=False/BackingServiceUnavailable (retried);
running pods keep their credentials. Deleting the app drops its role; the data stays (as for functions).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mpcloud_operator.backing.credentials import TTLMemo, derive, first_line
from mpcloud_operator.reconcile.references import ReferenceProblem

log = logging.getLogger("mpcloud.miniprogramapp")
UNAVAILABLE = "BackingServiceUnavailable"
PROVISIONED_TTL_S = 300.0
KEYS = ("DSN", "HOST", "PORT", "DATABASE", "USER", "PASSWORD", "SCHEMA")


def secret_name(app_name: str) -> str:
    return f"{app_name}-mpcloud-database"


def managed(app: Any) -> bool:
    b = app.spec.bindings
    return bool(b and b.database and b.database.managed)


def _refuse(message: str) -> ReferenceProblem:
    return ReferenceProblem(UNAVAILABLE, [message])


def provision(runtime: Any, app: Any) -> dict[str, str]:
    """The app's database and role, provisioned; the Secret's data (plain values)."""
    cfg = runtime.config
    if not cfg.postgres_admin_dsn:
        raise _refuse("spec.bindings.database.managed: this operator has no PostgreSQL (MPCLOUD_POSTGRES_ADMIN_DSN "
                      "unset)")
    if not cfg.binding_key:
        raise _refuse("spec.bindings.database.managed: this operator has no binding key (MPCLOUD_BINDING_KEY unset)")
    from mpcloud_operator.backing.postgres import Provisioner

    prov = runtime.service("postgres", lambda: Provisioner(cfg.postgres_admin_dsn))
    ns, name, uid = app.metadata.namespace or "", app.metadata.name, app.metadata.uid or ""
    password = derive(cfg.binding_key, "postgres-app", ns, name, uid)

    async def ensure() -> tuple[Any, str]:
        tenant = await prov.ensure_tenant(ns, name)
        return tenant, await prov.ensure_app(tenant, password, owner={"namespace": ns, "app": name})

    memo = runtime.service("postgres-app-provisioned", lambda: TTLMemo(PROVISIONED_TTL_S))
    key = (ns, name, password)
    done = memo.get(key)
    if done is None:
        try:
            done = asyncio.run(ensure())  # the reconcile runs in a worker thread: its own short event loop
        except Exception as exc:  # noqa: BLE001 - any provisioning failure: report it, keep the pods
            raise _refuse(f"PostgreSQL: {first_line(exc)}") from exc
        memo.put(key, done)
    tenant, role = done
    host, _, port = (cfg.postgres_function_host or "").rpartition(":")
    dsn = prov.dsn(tenant, role, password, host or None, int(port) if port else None)
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(dsn)
    return {"DSN": dsn, "HOST": str(info["host"]), "PORT": str(info["port"]), "DATABASE": tenant.database,
            "USER": role, "PASSWORD": password, "SCHEMA": tenant.schema}


def placeholders() -> dict[str, str]:
    """`mpcloud render`'s stand-in: the keys the operator would write."""
    return dict.fromkeys(KEYS, "<provisioned at reconcile>")


def drop(runtime: Any, namespace: str, name: str) -> None:
    """The app is gone: drop its role at once (best effort, logged); its data stays."""
    cfg = runtime.config
    if not cfg.postgres_admin_dsn:
        return
    from mpcloud_operator.backing.postgres import Provisioner, tenant_for

    try:
        prov = runtime.service("postgres", lambda: Provisioner(cfg.postgres_admin_dsn))
        asyncio.run(prov.drop_app(tenant_for(namespace, name)))
        memo = runtime.services.get("postgres-app-provisioned")
        if memo is not None:
            memo.drop(lambda k: k[:2] == (namespace, name))
    except Exception as exc:  # noqa: BLE001
        log.warning("MiniProgramApp %s/%s: dropping its database role failed: %s", namespace, name, exc)
