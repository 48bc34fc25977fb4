"""A real PostgreSQL for the document API's tests: started once per session by `devenv.postgres`.

`pg` is the server (its dir and admin DSN; a test may stop and start it, and must leave it running);
`tenant` provisions a fresh tenant per test (dropped afterwards) with helpers to bind functions to it.
Under CI=true a missing PostgreSQL fails the run; elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import CI


@dataclass
class Server:
    base: Path
    dsn: str

    def down(self, kill: bool = False) -> None:
        from mpcloud_operator.devenv import postgres

        postgres.down(self.base, kill=kill)

    def up(self) -> None:
        from mpcloud_operator.devenv import postgres

        postgres.up(self.base)


@pytest.fixture(scope="session")
def pg(tmp_path_factory) -> Server:
    from mpcloud_operator.devenv import postgres
    from mpcloud_operator.devenv.ports import free_port

    try:
        postgres.bin_dir()
    except postgres.PostgresError as exc:
        if CI:
            pytest.fail(f"PostgreSQL is needed (CI=true): {exc}")
        pytest.skip(str(exc))
    base = tmp_path_factory.mktemp("postgres")
    server = Server(base, postgres.up(base, port=free_port()))
    yield server
    postgres.down(base)
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class TenantEnv:
    """One tenant on the session's server, and the functions bound to it during a test."""

    pg: Server
    namespace: str
    app: str = "default"
    tenant: object = None
    pools: list = field(default_factory=list)

    @property
    def provisioner(self):
        from mpcloud_operator.backing.postgres import Provisioner

        return Provisioner(self.pg.dsn)

    async def setup(self, collections: dict[str, list[str]]):
        self.tenant = await self.provisioner.ensure_tenant(self.namespace, self.app)
        for name, indexes in collections.items():
            await self.provisioner.ensure_collection(self.tenant, name, indexes)
        return self.tenant

    async def function(self, name: str, grants: dict[str, str]) -> tuple[str, str]:
        """Bind a function; returns (role, DSN)."""
        password = secrets.token_urlsafe(16)
        role = await self.provisioner.ensure_function(self.tenant, name, grants, password)
        return role, self.provisioner.dsn(self.tenant, role, password)

    async def database(self, dsn: str):
        from mpcloud_operator.functions.docdb import Database

        db = await Database.connect(dsn, self.tenant.schema)
        self.pools.append(db)
        return db

    async def close(self) -> None:
        for db in self.pools:
            await db.close()
        self.pools.clear()

    def run(self, body) -> None:
        """Run `async body()` in a fresh event loop; its pools are closed in that loop."""

        async def main():
            try:
                await body()
            finally:
                await self.close()

        asyncio.run(main())


@pytest.fixture
def tenant(pg):
    env = TenantEnv(pg, f"ns-{uuid.uuid4().hex[:8]}")
    yield env
    asyncio.run(env.provisioner.drop_tenant(env.tenant)) if env.tenant else None
