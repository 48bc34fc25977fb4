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

import asyncio
import secrets
import select
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
FAST_FAIL = 1.0  # after this long without a pooled connection, check whether the server is there at all
# A failed reconnect gives up after this and the next call starts a fresh attempt: a long outage does not leave
# the pool in a long exponential backoff after the server is back.
RECONNECT_TIMEOUT = 2.0
FULL_CHECK_AFTER = 30.0  # seconds idle after which a lent connection also gets a round-trip check


async def check_connection(conn: psycopg.AsyncConnection) -> None:
    """The pool's check before lending a connection, usually without a round trip.

    An idle connection has nothing to read; when its socket is readable the server has closed it (a restart,
    a crash: the kernel closes the backend's socket) or sent a FATAL (idle timeout), so it is replaced. A
    connection idle for long also gets the pool's empty-query check (a silent network drop sends nothing).
    `bench/docdb.py`: with the stock empty-query check on every call a query ran at 0.57x of raw SQL's ops/s,
    with this one at 0.75x.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("connection closed")
    poller = select.poll()  # not select.select: a host with many files may hold descriptors above 1024
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        await conn.close()  # the pool replaces only a connection whose status says so
        raise psycopg.OperationalError("connection closed by the server")
    now = time.monotonic()
    last = getattr(conn, "_mpcloud_checked", now)
    if now - last > FULL_CHECK_AFTER:
        await AsyncConnectionPool.check_connection(conn)
    conn._mpcloud_checked = now


def new_id() -> str:
    """24 hex digits, time-ordered like a Mongo ObjectId (ms since the epoch, then 48 random bits)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def _doc(row_id: str, data: dict) -> dict:
    return {"_id": row_id, **data}


class _Sweeper:
    """The pool's check; one dead connection means a restart broke them all, so the idle rest is checked at
    once (`pool.check()`) instead of one by one in a lender's backoff loop (1 s, 2 s, ... per connection)."""

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool | None = None
        self.task: asyncio.Task | None = None

    async def check(self, conn: psycopg.AsyncConnection) -> None:
        try:
            await check_connection(conn)
        except psycopg.OperationalError:
            if self.pool is not None and (self.task is None or self.task.done()):
                self.task = asyncio.get_running_loop().create_task(self.pool.check())
            raise


class Database:
    def __init__(self, pool: AsyncConnectionPool, schema: str):
        self.pool = pool
        self.schema = schema

    @classmethod
    async def connect(cls, dsn: str, schema: str, min_size: int = 1, max_size: int = 4,
                      timeout: float = POOL_TIMEOUT) -> "Database":
        """A Database over a new pool whose connections are checked before use, so that the ones a server
        restart broke are replaced instead of failing the call (see `check_connection`)."""
        sweep = _Sweeper()
        pool = AsyncConnectionPool(dsn, min_size=min_size, max_size=max_size, timeout=timeout, open=False,
                                   kwargs={"autocommit": True, "application_name": "mpcloud-docdb"},
                                   check=sweep.check, reconnect_timeout=RECONNECT_TIMEOUT)
        sweep.pool = pool
        await pool.open(wait=False)
        return cls(pool, schema)

    async def close(self) -> None:
        await self.pool.close()

    def collection(self, name: str) -> "Collection":
        return Collection(self, check_collection(name))

    @asynccontextmanager
    async def connection(self, collection: str, action: str) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection; PostgreSQL's errors come out as the API's (DatabaseUnavailable, ...)."""
        conn = await self._lend()
        try:
            async with conn:  # what pool.connection() does: end a failed transaction, keep the connection pooled
                yield conn
        except DocDBError:
            raise
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
        finally:
            await self.pool.putconn(conn)

    async def _lend(self) -> psycopg.AsyncConnection:
        """A connection from the pool. When none comes within FAST_FAIL seconds, one direct attempt tells a
        server that is down (DatabaseUnavailable now, well inside a handler's timeout) from a busy pool (wait
        the rest of the pool's timeout)."""
        first = min(FAST_FAIL, self.pool.timeout)
        try:
            return await self.pool.getconn(timeout=first)
        except PoolTimeout:
            pass
        reason = await self._probe()
        if reason:
            raise DatabaseUnavailable(f"PostgreSQL is unavailable ({reason}); retry in a few seconds")
        try:
            return await self.pool.getconn(timeout=max(self.pool.timeout - first, 0.1))
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"PostgreSQL is busy: no pooled connection free within {self.pool.timeout:g}s; retry in a few "
                "seconds") from exc

    async def _probe(self) -> str | None:
        """One direct connection attempt: None when the server answers, else the reason it does not."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.pool.conninfo, connect_timeout=2)
        except psycopg.Error as exc:  # 'connection failed: connection to server at ... failed: Connection refused'
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return first.removeprefix("connection failed: ")
        await conn.close()
        return None


class Collection:
    def __init__(self, db: Database, name: str):
        self.db = db
        self.name = name
        self.table = sql.Identifier(db.schema, name).as_string(None)  # quoted once; statements are plain text

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
            await conn.execute(f"INSERT INTO {self.table} (id, data) VALUES (%s, %s)", (doc_id, Jsonb(data)))
        return doc_id

    async def get(self, doc_id: str) -> dict | None:
        if not isinstance(doc_id, str):
            raise BadRequest(f"_id is a string, got {doc_id!r}")
        async with self.db.connection(self.name, "read") as conn:
            cur = await conn.execute(f"SELECT data FROM {self.table} WHERE id = %s", (doc_id,))
            row = await cur.fetchone()
        return _doc(doc_id, row[0]) if row else None

    async def query(self, where: dict | None = None, sort: list | None = None, limit: int = 100,
                    skip: int = 0) -> list[dict]:
        limit, skip = check_page(limit, skip)
        cond, params = where_sql(where)
        stmt = f"SELECT id, data FROM {self.table} WHERE {cond} {order_sql(sort)} LIMIT %s OFFSET %s"
        async with self.db.connection(self.name, "read") as conn:
            cur = await conn.execute(stmt, (*params, limit, skip))
            rows = await cur.fetchall()
        return [_doc(i, d) for i, d in rows]

    async def count(self, where: dict | None = None) -> int:
        cond, params = where_sql(where)
        async with self.db.connection(self.name, "read") as conn:
            cur = await conn.execute(f"SELECT count(*) FROM {self.table} WHERE {cond}", params)
            return (await cur.fetchone())[0]

    async def update(self, id_or_where: str | dict, change: dict) -> int:
        """Apply `change` to the matching documents (one transaction, rows locked); returns how many matched."""
        cond, params = where_sql(_selector(id_or_where, "update"))
        apply_update({}, change)  # a bad update is refused before anything is read
        async with self.db.connection(self.name, "write") as conn:
            async with conn.transaction():
                cur = await conn.execute(f"SELECT id, data FROM {self.table} WHERE {cond} ORDER BY id FOR UPDATE",
                                         params)
                rows = await cur.fetchall()
                if rows:
                    async with conn.cursor() as c:
                        await c.executemany(
                            f"UPDATE {self.table} SET data = %s, updated = now() WHERE id = %s",
                            [(Jsonb(apply_update(d, change)), i) for i, d in rows])
        return len(rows)

    async def delete(self, id_or_where: str | dict) -> int:
        cond, params = where_sql(_selector(id_or_where, "delete"))
        async with self.db.connection(self.name, "write") as conn:
            cur = await conn.execute(f"DELETE FROM {self.table} WHERE {cond}", params)
            return cur.rowcount


def _selector(id_or_where: object, what: str) -> dict:
    if isinstance(id_or_where, str):
        return {"_id": id_or_where}
    if isinstance(id_or_where, dict) and id_or_where:
        return id_or_where
    raise BadRequest(f"{what} takes an _id or a non-empty filter (every document: {{\"_id\": {{\"$exists\": true}}}})")
