"""Tenant isolation and per-function permissions, enforced by PostgreSQL itself (raw SQL gets no further)."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg import errors as pgerr

from mpcloud_operator.functions.docdb import PermissionDenied
from tests.integration.docdb.conftest import TenantEnv

pytestmark = pytest.mark.integration


def test_a_function_of_tenant_a_cannot_reach_tenant_b(tenant, pg):
    other = TenantEnv(pg, f"ns-{uuid.uuid4().hex[:8]}")

    async def body():
        await tenant.setup({"todos": []})
        b = await other.setup({"todos": []})
        _, dsn_a = await tenant.function("fa", {"todos": "readWrite"})
        _, dsn_b = await other.function("fb", {"todos": "readWrite"})
        await (await other.database(dsn_b)).collection("todos").add({"_id": "secret", "pin": 1234})

        role_a = psycopg.conninfo.conninfo_to_dict(dsn_a)["user"]
        a_on_b = psycopg.conninfo.make_conninfo(dsn_a, dbname=b.database)
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            await psycopg.AsyncConnection.connect(a_on_b)
        async with await psycopg.AsyncConnection.connect(dsn_a, autocommit=True) as conn:
            for stmt in ("CREATE TABLE docs.mine (x int)", "CREATE TABLE public.mine (x int)",
                         "CREATE TEMP TABLE mine (x int)", "CREATE EXTENSION dblink",
                         f"SET ROLE {b.owner}", "CREATE SCHEMA mine"):
                with pytest.raises(pgerr.InsufficientPrivilege):
                    await conn.execute(stmt)
            cur = await conn.execute("SELECT current_user, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                                     "WHERE rolname = current_user")
            assert await cur.fetchone() == (role_a, False, False, False)
        await other.close()

    try:
        tenant.run(body)
    finally:
        asyncio.run(other.provisioner.drop_tenant(other.tenant)) if other.tenant else None


def test_read_only_undeclared_and_revoked_collections_are_denied(tenant):
    async def body():
        t = await tenant.setup({"todos": [], "secrets": []})
        _, writer_dsn = await tenant.function("writer", {"todos": "readWrite", "secrets": "readWrite"})
        writer = (await tenant.database(writer_dsn)).collection("todos")
        await writer.add({"_id": "a", "n": 1})
        await (await tenant.database(writer_dsn)).collection("secrets").add({"_id": "s", "pin": 1})

        _, reader_dsn = await tenant.function("reader", {"todos": "read"})
        reader_db = await tenant.database(reader_dsn)
        todos = reader_db.collection("todos")
        assert await todos.get("a") == {"_id": "a", "n": 1}
        for call in (todos.add({"n": 2}), todos.update("a", {"$set": {"n": 3}}), todos.delete("a")):
            with pytest.raises(PermissionDenied, match="'todos': it is bound read-only"):
                await call
        with pytest.raises(PermissionDenied, match="'secrets': it is not bound"):
            await reader_db.collection("secrets").query()
        with pytest.raises(PermissionDenied, match="'nothere': it is not bound"):
            await reader_db.collection("nothere").get("x")
        async with await psycopg.AsyncConnection.connect(reader_dsn) as conn:  # raw SQL: the same walls
            with pytest.raises(pgerr.InsufficientPrivilege):
                await conn.execute("SELECT data FROM secrets")  # search_path is the tenant's schema
            await conn.rollback()
            with pytest.raises(pgerr.InsufficientPrivilege):
                await conn.execute("UPDATE todos SET data = '{}'")

        # re-provisioning with fewer grants revokes the rest; a new password replaces the old
        role, new_dsn = await tenant.function("writer", {"todos": "read"})
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            await psycopg.AsyncConnection.connect(writer_dsn)
        db = await tenant.database(new_dsn)
        assert await db.collection("todos").count() == 1
        with pytest.raises(PermissionDenied):
            await db.collection("todos").add({"n": 9})
        with pytest.raises(PermissionDenied):
            await db.collection("secrets").count()

        # dropping the function ends its sessions and its role; the data stays
        async with await psycopg.AsyncConnection.connect(new_dsn) as live:
            await tenant.provisioner.drop_function(t, "writer")
            with pytest.raises(psycopg.OperationalError):
                await live.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            await psycopg.AsyncConnection.connect(new_dsn)
        await tenant.provisioner.drop_function(t, "writer")  # idempotent
        assert await todos.count() == 1

    tenant.run(body)


def test_provisioning_is_idempotent_under_concurrent_calls(tenant):
    async def body():
        prov = tenant.provisioner
        tenants = await asyncio.gather(*(prov.ensure_tenant(tenant.namespace) for _ in range(4)))
        assert len(set(tenants)) == 1
        tenant.tenant = t = tenants[0]
        await asyncio.gather(*(prov.ensure_collection(t, "todos", ["n"]) for _ in range(4)))
        roles = await asyncio.gather(*(prov.ensure_function(t, "f", {"todos": "readWrite"}, "pw-1")
                                       for _ in range(4)))
        assert len(set(roles)) == 1
        await prov.ensure_tenant(tenant.namespace)  # again, sequentially: nothing changes, nothing fails
        await prov.ensure_collection(t, "todos", ["n", "done"])
        db = await tenant.database(prov.dsn(t, roles[0], "pw-1"))
        assert await db.collection("todos").add({"_id": "x"}) == "x"

        await prov.drop_tenant(t)
        async with await prov._connect() as admin:
            cur = await admin.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                                      (t.database.replace("_", r"\_") + "%",))
            assert (await cur.fetchone())[0] == 0
            cur = await admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (t.database,))
            assert (await cur.fetchone())[0] == 0
        await prov.drop_tenant(t)  # idempotent
        tenant.tenant = None

    tenant.run(body)
