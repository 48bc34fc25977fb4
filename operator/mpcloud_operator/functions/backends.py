"""The runtime host's side of `context.db` and `context.storage`: RPCs from workers to the real clients.

The host owns the clients (one PostgreSQL pool and one S3 client per instance, shared by all workers); a
worker only names an allowlisted method (`protocol.check_rpc`) and its arguments. The clients come from the
function pod's binding settings (the bindings Secret's files, `host.binding_files`) on first use (`docdb.Database.connect(MPCLOUD_DB_DSN, MPCLOUD_DB_SCHEMA)`,
`storage.Storage.from_env`); a function without a binding gets PermissionDenied. `mpcloud_operator.functions.docdb` / `.storage` are imported
only then, so a host without bindings never loads psycopg or the S3 client.

Unit tests inject in-memory doubles through `Backends(db=..., storage=...)`; integration tests use the real ones.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping

from mpcloud_operator.functions import protocol
from mpcloud_operator.functions.pool import RpcError

log = logging.getLogger("mpcloud.functions.backends")

UNAVAILABLE = {"db": "DatabaseUnavailable", "storage": "StorageUnavailable"}


class Backends:
    def __init__(self, env: Mapping[str, str], db: Any = None, storage: Any = None, pool_size: int = 10) -> None:
        self.env, self.pool_size = env, pool_size
        self._db, self._storage = db, storage
        self._owned: list[Any] = []  # clients made here (closed with the host), not injected doubles
        self._lock = asyncio.Lock()

    async def _database(self) -> Any:
        if self._db is None:
            async with self._lock:
                if self._db is None:
                    dsn = self.env.get("MPCLOUD_DB_DSN")
                    if not dsn:
                        raise RpcError("PermissionDenied", "this function has no database binding (spec.bindings.database)")
                    from mpcloud_operator.functions import docdb

                    # The pool opens without waiting: a database that is down must not stop the instance serving
                    # (calls answer DatabaseUnavailable until it is back).
                    self._db = await docdb.Database.connect(dsn, self.env.get("MPCLOUD_DB_SCHEMA", "public"),
                                                            min_size=0, max_size=self.pool_size)
                    self._owned.append(self._db)
        return self._db

    async def _files(self) -> Any:
        if self._storage is None:
            async with self._lock:
                if self._storage is None:
                    from mpcloud_operator.functions import storage

                    self._storage = storage.Storage.from_env(dict(self.env))
                    if self._storage is None:
                        raise RpcError("PermissionDenied", "this function has no storage binding (spec.bindings.storage)")
                    self._owned.append(self._storage)
        return self._storage

    async def call(self, message: dict[str, Any]) -> Any:
        """Run one RPC; its value, or RpcError with the type the handler sees."""
        problem = protocol.check_rpc(message)
        if problem:
            raise RpcError("BadRequest", problem)
        target, method = message["target"], message["method"]
        args, kwargs = list(message.get("args", [])), dict(message.get("kwargs", {}))
        if target == "db":
            obj = (await self._database()).collection(message["collection"])
            if method == "query" and len(args) > 1 and isinstance(args[1], list):
                args[1] = [tuple(s) if isinstance(s, list) else s for s in args[1]]  # JSON has no tuples
        else:
            obj = await self._files()
        try:
            return await getattr(obj, method)(*args, **kwargs)
        except RpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure reaches the handler as a typed error
            type_ = getattr(exc, "type", None)
            if isinstance(type_, str) and type_:
                raise RpcError(type_, str(exc)) from exc
            if isinstance(exc, (TypeError, ValueError)):
                raise RpcError("BadRequest", f"context.{target}.{method}: {exc}") from exc
            log.warning("context.%s.%s failed: %r", target, method, exc)
            raise RpcError(UNAVAILABLE[target], f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        for client in self._owned:
            closer = getattr(client, "close", None)
            if closer is not None and asyncio.iscoroutine(result := closer()):
                await result
        self._owned.clear()
