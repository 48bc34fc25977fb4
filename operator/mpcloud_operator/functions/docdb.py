"""The document API functions call as `context.db.collection(name)`: JSONB collections on PostgreSQL.

`Database(pool, schema)` over a psycopg_pool `AsyncConnectionPool` logged in as the function's own role (from
`MPCLOUD_DB_DSN`; `Database.connect` builds a suitable pool). Each collection is a table the operator made in the
tenant's schema (`backing.postgres`); what the role may do with it is PostgreSQL's GRANTs, so this module
enforces nothing itself and code that bypasses it gets no further. The SQL comes from `docquery` (pure).

Errors: `DatabaseUnavailable` (server down, unreachable or restarting: retry), `PermissionDenied` (collection
not bound, or bound read-only), `BadRequest` (bad filter, update or document). After a server restart the pool
checks each connection before lending it, so the next call reconnects; committed data is the server's.
"""

from __future__ import annotations

import secrets
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import psycopg
from psycopg import errors as pgerr
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mpcloud_operator.functions.docquery import (BadRequest, DatabaseUnavailable, DocDBError, PermissionDenied,
                                                 apply_update, check_collection, check_document, check_page,
                                                 order_sql, where_sql)

__all__ = ["Database", "Collection", "DocDBError", "BadRequest", "PermissionDenied", "DatabaseUnavailable",
           "METHODS"]

# What the runtime host may call on a Collection for user code (and over its worker protocol).
METHODS = frozenset({"add", "get", "query", "count", "update", "delete"})
POOL_TIMEOUT = 5.0
# A failed reconnect gives up after this and the next call starts a fresh attempt: a long outage does not leave
# the pool in a long exponential backoff after the server is back.
RECONNECT_TIMEOUT = 2.0


def new_id() -> str:
    """24 hex digits, time-ordered like a Mongo ObjectId (ms since the epoch, then 48 random bits)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def _doc(row_id: str, data: dict) -> dict:
    return {"_id": row_id, **data}


class Database:
    def __init__(self, pool: AsyncConnectionPool, schema: str):
        self.pool = pool
        self.schema = schema

    @classmethod
    async def connect(cls, dsn: str, schema: str, min_size: int = 1, max_size: int = 4,
                      timeout: float = POOL_TIMEOUT) -> "Database":
        """A Database over a new pool. Each connection is checked before use (one empty round trip) so that
        connections a server restart broke are replaced instead of failing the call."""
        pool = AsyncConnectionPool(dsn, min_size=min_size, max_size=max_size, timeout=timeout, open=False,
                                   kwargs={"autocommit": True, "application_name": "mpcloud-docdb"},
                                   check=AsyncConnectionPool.check_connection, reconnect_timeout=RECONNECT_TIMEOUT)
        await pool.open(wait=False)
        return cls(pool, schema)

    async def close(self) -> None:
        await self.pool.close()

    def collection(self, name: str) -> "Collection":
        return Collection(self, check_collection(name))

    @asynccontextmanager
    async def connection(self, collection: str, action: str) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection; PostgreSQL's errors come out as the API's (DatabaseUnavailable, ...)."""
        try:
            async with self.pool.connection() as conn:
                yield conn
        except DocDBError:
            raise
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"PostgreSQL is unavailable: no connection within {self.pool.timeout:g}s "
                f"({await self._reason()}); retry in a few seconds") from exc
        except (pgerr.InsufficientPrivilege, pgerr.UndefinedTable, pgerr.InvalidSchemaName) as exc:
            bound = "bound read-only" if isinstance(exc, pgerr.InsufficientPrivilege) and action != "read" \
                else "not bound"
            raise PermissionDenied(
                f"cannot {action} collection {collection!r}: it is {bound} to this function "
                f"(spec.bindings.database.collections)") from exc
        except pgerr.UniqueViolation as exc:
            raise BadRequest(f"collection {collection!r}: a document with this _id exists") from exc
        except (pgerr.DataException, pgerr.SyntaxErrorOrAccessRuleViolation) as exc:
            raise BadRequest(f"collection {collection!r}: {str(exc).strip()}") from exc
        except psycopg.OperationalError as exc:  # the server went away mid-call, or is starting/stopping
            raise DatabaseUnavailable(
                f"PostgreSQL is unavailable ({str(exc).strip().splitlines()[0] if str(exc).strip() else 'lost'}); "
                "retry in a few seconds") from exc

    async def _reason(self) -> str:
        """Why the pool has no connection: one direct attempt, for a message that names the cause."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.pool.conninfo, connect_timeout=2)
        except psycopg.Error as exc:  # 'connection failed: connection to server at ... failed: Connection refused'
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return first.removeprefix("connection failed: ")
        await conn.close()
        return "server busy: every pooled connection is in use"


class Collection:
    def __init__(self, db: Database, name: str):
        self.db = db
        self.name = name
        self.table = sql.Identifier(db.schema, name)

    async def call(self, method: str, **params: Any) -> Any:
        """Dispatch for the runtime host's worker protocol: only METHODS, with keyword arguments."""
        if method not in METHODS:
            raise BadRequest(f"unknown collection method {method!r}; one of {', '.join(sorted(METHODS))}")
        try:
            return await getattr(self, method)(**params)
        except TypeError as exc:
            raise BadRequest(f"{method}: {exc}") from exc

    async def add(self, doc: dict) -> str:
        data = dict(check_document(doc))
        doc_id = data.pop("_id", None) or new_id()
        if not isinstance(doc_id, str):
            raise BadRequest(f"_id is a string, got {doc_id!r}")
        async with self.db.connection(self.name, "write") as conn:
            await conn.execute(sql.SQL("INSERT INTO {} (id, data) VALUES (%s, %s)").format(self.table),
                               (doc_id, Jsonb(data)))
        return doc_id

    async def get(self, doc_id: str) -> dict | None:
        if not isinstance(doc_id, str):
            raise BadRequest(f"_id is a string, got {doc_id!r}")
        async with self.db.connection(self.name, "read") as conn:
            cur = await conn.execute(sql.SQL("SELECT data FROM {} WHERE id = %s").format(self.table), (doc_id,))
            row = await cur.fetchone()
        return _doc(doc_id, row[0]) if row else None

    async def query(self, where: dict | None = None, sort: list | None = None, limit: int = 100,
                    skip: int = 0) -> list[dict]:
        limit, skip = check_page(limit, skip)
        cond, params = where_sql(where)
        stmt = sql.SQL("SELECT id, data FROM {} WHERE {} {} LIMIT %s OFFSET %s").format(
            self.table, cond, order_sql(sort))
        async with self.db.connection(self.name, "read") as conn:
            cur = await conn.execute(stmt, (*params, limit, skip))
            rows = await cur.fetchall()
        return [_doc(i, d) for i, d in rows]

    async def count(self, where: dict | None = None) -> int:
        cond, params = where_sql(where)
        async with self.db.connection(self.name, "read") as conn:
            cur = await conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.table, cond), params)
            return (await cur.fetchone())[0]

    async def update(self, id_or_where: str | dict, change: dict) -> int:
        """Apply `change` to the matching documents (one transaction, rows locked); returns how many matched."""
        cond, params = where_sql(_selector(id_or_where, "update"))
        apply_update({}, change)  # a bad update is refused before anything is read
        async with self.db.connection(self.name, "write") as conn:
            async with conn.transaction():
                cur = await conn.execute(sql.SQL("SELECT id, data FROM {} WHERE {} ORDER BY id FOR UPDATE").format(
                    self.table, cond), params)
                rows = await cur.fetchall()
                if rows:
                    async with conn.cursor() as c:
                        await c.executemany(
                            sql.SQL("UPDATE {} SET data = %s, updated = now() WHERE id = %s").format(self.table),
                            [(Jsonb(apply_update(d, change)), i) for i, d in rows])
        return len(rows)

    async def delete(self, id_or_where: str | dict) -> int:
        cond, params = where_sql(_selector(id_or_where, "delete"))
        async with self.db.connection(self.name, "write") as conn:
            cur = await conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(self.table, cond), params)
            return cur.rowcount


def _selector(id_or_where: object, what: str) -> dict:
    if isinstance(id_or_where, str):
        return {"_id": id_or_where}
    if isinstance(id_or_where, dict) and id_or_where:
        return id_or_where
    raise BadRequest(f"{what} takes an _id or a non-empty filter (every document: {{\"_id\": {{\"$exists\": true}}}})")
