"""PostgreSQL down: a clear, retryable error; back up: the next call works and nothing committed is lost."""

from __future__ import annotations

import time

import pytest

from mpcloud_operator.functions.docdb import DatabaseUnavailable, POOL_TIMEOUT

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("how", ["fast-shutdown", "crash"])
def test_server_down_is_a_clear_error_and_the_next_call_after_restart_works(tenant, pg, how):
    async def body():
        await tenant.setup({"todos": ["n"]})
        _, dsn = await tenant.function("f", {"todos": "readWrite"})
        todos = (await tenant.database(dsn)).collection("todos")
        ids = [await todos.add({"n": i}) for i in range(50)]
        await todos.update(ids[0], {"$set": {"n": -1}})

        pg.down(kill=how == "crash")  # crash: an immediate shutdown, WAL recovery on the next start
        try:
            for call in (todos.count(), todos.add({"n": 99})):
                started = time.monotonic()
                with pytest.raises(DatabaseUnavailable) as err:
                    await call
                assert time.monotonic() - started < POOL_TIMEOUT + 3
                message = str(err.value)
                assert "PostgreSQL is unavailable" in message and "retry" in message, message
                assert err.value.type == "DatabaseUnavailable" and err.value.retryable
            assert "refused" in message.lower() or "lost" in message.lower() or "terminat" in message.lower(), message
        finally:
            pg.up()

        assert await todos.count() == 50  # the first call after the restart: pooled connections are replaced
        assert await todos.get(ids[0]) == {"_id": ids[0], "n": -1}
        assert sorted(d["n"] for d in await todos.query(limit=100)) == [-1, *range(1, 50)]
        assert await todos.add({"n": 50})

    tenant.run(body)
