"""PostgreSQL provisioning for the document API: a database per tenant, a login role per function.

Isolation is PostgreSQL's own, so code that bypasses the document API (raw SQL with the function's DSN) gets
no further:
- each tenant (`<namespace>/<app>`) has its own database, owned by a NOLOGIN owner role, with CONNECT and TEMP
  revoked from PUBLIC: a role of tenant A cannot even connect to tenant B's database;
- collections are tables in the tenant's schema `docs`, owned by the owner role;
- each function logs in as its own role (NOINHERIT, no attributes) with CONNECT on its tenant's database, USAGE
  on the schema and, per declared collection, SELECT (`read`) or SELECT/INSERT/UPDATE/DELETE (`readWrite`);
  a grant no longer declared is revoked on the next call.

Every call is idempotent (the reconciler calls it on every pass) and serialised per tenant by an advisory lock
held on the admin's connection to the maintenance database, so concurrent reconciles cannot race CREATE
against CREATE. The admin DSN needs a superuser, or a role with CREATEDB and CREATEROLE.
Each function role carries a comment naming its function (`ROLE_COMMENT_PREFIX` + JSON {namespace, app,
function}): `function_roles()` lists them for the operator's garbage sweep, which drops roles whose function is
gone or no longer binds the database (roles without that comment are never touched).
Names: `mpc_<readable slug>_<8 hex of sha256("<namespace>/<app>")>` (≤ 41 chars), owner `<database>_owner`,
function role `<database>_<function slug>_<6 hex>` (≤ 61): unique, readable in `\\l` and `\\du`, within
PostgreSQL's 63.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Literal, Mapping
from urllib.parse import quote

import psycopg
from psycopg import errors as pgerr
from psycopg import sql
from psycopg.conninfo import make_conninfo

from mpcloud_operator.functions.docquery import check_collection, field_expr, field_path

SCHEMA = "docs"
ROLE_COMMENT_PREFIX = "mpcloud cloudfunction "
APP_COMMENT_PREFIX = "mpcloud miniprogramapp "
Access = Literal["read", "readWrite"]
PRIVILEGES: dict[str, tuple[str, ...]] = {"read": ("SELECT",), "readWrite": ("SELECT", "INSERT", "UPDATE", "DELETE")}


class ProvisionError(RuntimeError):
    """A request the provisioner refuses (bad name or access); PostgreSQL's own errors pass through."""


@dataclass(frozen=True)
class Tenant:
    database: str
    schema: str
    owner: str


def _slug(text: str, size: int) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", text.lower())).strip("_")[:size].rstrip("_") or "x"


def _hash(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def tenant_for(namespace: str, app: str = "default") -> Tenant:
    """The names of a tenant's database objects (pure: the same every time, no server)."""
    key = f"{namespace}/{app}"
    database = f"mpc_{_slug(f'{namespace}_{app}', 28)}_{_hash(key, 8)}"
    return Tenant(database=database, schema=SCHEMA, owner=f"{database}_owner")


def function_role(tenant: Tenant, function: str) -> str:
    return f"{tenant.database}_{_slug(function, 12)}_{_hash(f'{tenant.database}/{function}', 6)}"


def app_role(tenant: Tenant) -> str:
    """The login role of the tenant's MiniProgramApp (no function role ends in `_app`: theirs end in 6 hex)."""
    return f"{tenant.database}_app"


def index_name(collection: str, field: str) -> str:
    return f"{collection[:24]}_{_slug(field, 20)}_{_hash(field, 6)}_bx"


def _lock_key(tenant: Tenant) -> int:
    return int.from_bytes(hashlib.sha256(f"mpcloud-tenant:{tenant.database}".encode()).digest()[:8], "big",
                          signed=True)


class Provisioner:
    def __init__(self, admin_dsn: str):
        self.admin_dsn = admin_dsn

    def dsn(self, tenant: Tenant, role: str, password: str, host: str | None = None, port: int | None = None) -> str:
        """The function's `MPCLOUD_DB_DSN`: its role on its tenant's database (host/port default to the admin's)."""
        info = psycopg.conninfo.conninfo_to_dict(self.admin_dsn)
        host, port = host or info.get("host", "127.0.0.1"), port or info.get("port", 5432)
        return f"postgresql://{role}:{quote(password, safe='')}@{host}:{port}/{tenant.database}"

    async def _connect(self, database: str | None = None) -> psycopg.AsyncConnection:
        dsn = make_conninfo(self.admin_dsn, dbname=database) if database else self.admin_dsn
        return await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=10)

    @asynccontextmanager
    async def _locked(self, tenant: Tenant) -> AsyncIterator[psycopg.AsyncConnection]:
        """The admin's maintenance-database connection, holding the tenant's advisory lock."""
        conn = await self._connect()
        try:
            await conn.execute("SELECT pg_advisory_lock(%s)", (_lock_key(tenant),))
            yield conn
        finally:
            await conn.close()  # releases the lock

    async def ensure_tenant(self, namespace: str, app: str = "default") -> Tenant:
        tenant = tenant_for(namespace, app)
        async with self._locked(tenant) as admin:
            await _create_role(admin, tenant.owner, "NOLOGIN")
            if not await _is_superuser(admin):  # CREATE DATABASE ... OWNER needs membership in the owner role
                await admin.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(tenant.owner)))
            if not await _exists(admin, "SELECT 1 FROM pg_database WHERE datname = %s", tenant.database):
                try:
                    await admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0")
                                        .format(sql.Identifier(tenant.database), sql.Identifier(tenant.owner)))
                except pgerr.DuplicateDatabase:
                    pass
            await admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(tenant.database)))
            async with await self._connect(tenant.database) as db:
                await db.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
                await db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                    sql.Identifier(tenant.schema), sql.Identifier(tenant.owner)))
                await db.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(tenant.schema)))
        return tenant

    async def ensure_collection(self, tenant: Tenant, name: str, indexes: list[str] = ()) -> None:
        """The collection's table, its GIN index, and a btree per declared field (indexes are only added:
        several functions may declare different ones on one collection)."""
        check_collection(name)
        fields = [f for f in dict.fromkeys(indexes) if field_path(f) != ["_id"]]
        async with self._locked(tenant):
            async with await self._connect(tenant.database) as db:
                await _create_table(db, tenant, name)
                table = sql.Identifier(tenant.schema, name)
                for field in fields:
                    await db.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (({}), id)").format(
                        sql.Identifier(index_name(name, field)), table, sql.SQL(field_expr(field))))

    async def ensure_function(self, tenant: Tenant, function: str, grants: Mapping[str, Access],
                              password: str, statement_timeout: str = "30s", owner: Mapping[str, str] | None = None,
                              ) -> str:
        """The function's login role with exactly `grants`; returns the role name. Re-running sets the password.
        `owner` ({namespace, app, function}) is recorded as the role's comment (see function_roles).

        `statement_timeout` bounds each statement server-side (a handler stopped by its own timeout may leave a
        query running otherwise); idle transactions are ended after a minute for the same reason."""
        if not re.fullmatch(r"\d+(ms|s|min)", statement_timeout):
            raise ProvisionError(f"statement_timeout is like 500ms, 30s or 2min, got {statement_timeout!r}")
        for collection, access in grants.items():
            check_collection(collection)
            if access not in PRIVILEGES:
                raise ProvisionError(f"collection {collection!r}: access is read or readWrite, got {access!r}")
        if not password:
            raise ProvisionError("a function role needs a password")
        role = function_role(tenant, function)
        ident = sql.Identifier(role)
        async with self._locked(tenant) as admin:
            await _create_role(admin, role, "LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION")
            verifier = admin.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
            await admin.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(verifier)))
            if owner is not None:
                comment = ROLE_COMMENT_PREFIX + json.dumps(dict(owner), sort_keys=True, separators=(",", ":"))
                await admin.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(comment)))
            await admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(tenant.database), ident))
            for setting, value in (("search_path", tenant.schema), ("statement_timeout", statement_timeout),
                                   ("idle_in_transaction_session_timeout", "60s")):
                await admin.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                    ident, sql.Identifier(tenant.database), sql.Identifier(setting), sql.Literal(value)))
            async with await self._connect(tenant.database) as db:
                for collection in grants:
                    await _create_table(db, tenant, collection)
                async with db.transaction():  # others never see the role between REVOKE and GRANT
                    await db.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                        sql.Identifier(tenant.schema), ident))
                    cur = await db.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (tenant.schema,))
                    for (table,) in await cur.fetchall():
                        target = sql.Identifier(tenant.schema, table)
                        await db.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(target, ident))
                        if table in grants:
                            await db.execute(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                                sql.SQL(", ").join(map(sql.SQL, PRIVILEGES[grants[table]])), target, ident))
        return role

    async def ensure_app(self, tenant: Tenant, password: str, owner: Mapping[str, str] | None = None) -> str:
        """The app's own login role (a MiniProgramApp's managed database): the owner's rights on the tenant's
        database by membership, and every session runs as the owner (`SET role`), so what the app creates is
        the tenant's, not the login role's — dropping the role (app deleted) never drops data. Returns it."""
        if not password:
            raise ProvisionError("an app role needs a password")
        role, ident = app_role(tenant), sql.Identifier(app_role(tenant))
        async with self._locked(tenant) as admin:
            await _create_role(admin, role, "LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION")
            verifier = admin.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
            await admin.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(verifier)))
            if owner is not None:
                comment = APP_COMMENT_PREFIX + json.dumps(dict(owner), sort_keys=True, separators=(",", ":"))
                await admin.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(comment)))
            await admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(tenant.owner), ident))
            await admin.execute(sql.SQL("GRANT CONNECT, TEMP ON DATABASE {} TO {}").format(
                sql.Identifier(tenant.database), ident))
            for setting, value in (("role", tenant.owner), ("search_path", tenant.schema),
                                   ("idle_in_transaction_session_timeout", "60s")):
                await admin.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                    ident, sql.Identifier(tenant.database), sql.Identifier(setting), sql.Literal(value)))
        return role

    async def drop_app(self, tenant: Tenant) -> None:
        """End the app role's sessions and drop it; the tenant's data stays (idempotent)."""
        async with self._locked(tenant) as admin:
            await _drop_roles(self, admin, tenant, [app_role(tenant)])

    async def drop_function(self, tenant: Tenant, function: str) -> None:
        """Revoke everything the function's role holds, end its sessions, drop it (idempotent)."""
        role = function_role(tenant, function)
        async with self._locked(tenant) as admin:
            await _drop_roles(self, admin, tenant, [role])

    async def function_roles(self) -> list[tuple[str, dict[str, str]]]:
        """Every function role that names its function: (role, {namespace, app, function})."""
        async with await self._connect() as admin:
            cur = await admin.execute(
                "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles "
                "WHERE shobj_description(oid, 'pg_authid') LIKE %s", (ROLE_COMMENT_PREFIX.replace("_", r"\_") + "%",))
            out = []
            for role, comment in await cur.fetchall():
                try:
                    owner = json.loads(comment[len(ROLE_COMMENT_PREFIX):])
                except ValueError:
                    continue
                if isinstance(owner, dict) and {"namespace", "app", "function"} <= owner.keys():
                    out.append((role, {k: str(owner[k]) for k in ("namespace", "app", "function")}))
            return out

    async def drop_tenant(self, tenant: Tenant) -> None:
        """Drop the tenant's database (its data!) and every role of it. Only on request: data is retained
        by default."""
        async with self._locked(tenant) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(tenant.database)))
            pattern = tenant.database.replace("_", r"\_") + r"\_%"
            cur = await admin.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (pattern,))
            roles = sorted((r for (r,) in await cur.fetchall()), key=lambda r: r == tenant.owner)  # owner last
            await _drop_roles(self, admin, tenant, roles)


async def _exists(conn: psycopg.AsyncConnection, query: str, *params: object) -> bool:
    cur = await conn.execute(query, params)
    return await cur.fetchone() is not None


async def _is_superuser(conn: psycopg.AsyncConnection) -> bool:
    cur = await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    return bool((await cur.fetchone())[0])


async def _create_role(conn: psycopg.AsyncConnection, role: str, options: str) -> None:
    if await _exists(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", role):
        return
    try:
        await conn.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))
    except pgerr.DuplicateObject:  # created meanwhile by a caller outside our lock
        pass


async def _create_table(db: psycopg.AsyncConnection, tenant: Tenant, name: str) -> None:
    table = sql.Identifier(tenant.schema, name)
    try:
        await db.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, data jsonb NOT NULL DEFAULT '{{}}', "
            "created timestamptz NOT NULL DEFAULT now(), updated timestamptz NOT NULL DEFAULT now())").format(table))
    except pgerr.UniqueViolation:  # a concurrent CREATE TABLE IF NOT EXISTS outside our lock
        pass
    await db.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(tenant.owner)))
    await db.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(table))
    await db.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (data jsonb_path_ops)").format(
        sql.Identifier(f"{name}_data_gin"), table))


async def _drop_roles(prov: Provisioner, admin: psycopg.AsyncConnection, tenant: Tenant, roles: list[str]) -> None:
    cur = await admin.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (roles,))
    present = [r for (r,) in await cur.fetchall()]
    if not present:
        return
    if await _exists(admin, "SELECT 1 FROM pg_database WHERE datname = %s", tenant.database):
        async with await prov._connect(tenant.database) as db:
            for role in present:
                if role != tenant.owner:  # DROP OWNED of the owner would drop the tenant's tables
                    await db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)", (present,))
    for role in present:
        try:
            await admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        except pgerr.DependentObjectsStillExist as exc:
            raise ProvisionError(f"role {role} still owns or holds something: {exc}") from exc
