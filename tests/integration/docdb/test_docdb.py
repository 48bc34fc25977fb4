"""The document API on a real PostgreSQL: CRUD, queries, indexes (checked with EXPLAIN), the query plans."""

from __future__ import annotations

import psycopg
import pytest

from mpcloud_operator.functions.docdb import BadRequest
from mpcloud_operator.functions.docquery import order_sql, where_sql

pytestmark = pytest.mark.integration


def test_crud_query_sort_limit_skip(tenant):
    async def body():
        await tenant.setup({"todos": ["n", "done"]})
        _, dsn = await tenant.function("add-todo", {"todos": "readWrite"})
        todos = (await tenant.database(dsn)).collection("todos")

        first = await todos.add({"title": "milk", "done": False, "n": 3, "tags": ["shop"], "who": {"name": "ann"}})
        assert await todos.get(first) == {"_id": first, "title": "milk", "done": False, "n": 3, "tags": ["shop"],
                                          "who": {"name": "ann"}}
        assert await todos.get("nope") is None
        assert await todos.add({"_id": "fixed", "title": "eggs", "done": True, "n": 7}) == "fixed"
        with pytest.raises(BadRequest, match="exists"):
            await todos.add({"_id": "fixed", "title": "again"})
        for i in range(10):
            await todos.add({"title": f"t{i}", "done": i % 2 == 0, "n": i * 10, "tags": ["bulk", f"b{i % 3}"]})

        assert await todos.count() == 12
        assert await todos.count({"done": True}) == 6
        assert [d["_id"] for d in await todos.query({"who.name": "ann"})] == [first]
        assert await todos.count({"tags": "shop"}) == 1  # array element match, as in Mongo
        assert [d["n"] for d in await todos.query({"n": {"$gt": 30, "$lte": 60}}, sort=[("n", 1)])] == [40, 50, 60]
        assert [d["n"] for d in await todos.query({"n": {"$gte": 50}}, sort=[["n", -1]], limit=2, skip=1)] == [80, 70]
        assert await todos.count({"n": {"$in": [3, 7, 10]}}) == 3
        assert await todos.count({"n": {"$nin": [3, 7, 10]}}) == 9
        assert await todos.count({"title": {"$ne": "milk"}}) == 11
        assert await todos.count({"who": {"$exists": True}}) == 1
        assert await todos.count({"who": None}) == 11  # missing counts as null
        assert await todos.count({"$or": [{"n": 3}, {"title": "eggs"}]}) == 2
        assert await todos.count({"n": {"$gt": "a"}}) == 0  # a string bracket: numbers are not compared with it
        assert [d["_id"] for d in await todos.query({"_id": {"$in": ["fixed", first]}}, sort=[("_id", 1)])] == \
            sorted(["fixed", first])
        page = [d["_id"] for d in await todos.query(limit=5)] + [d["_id"] for d in await todos.query(limit=5, skip=5)]
        assert len(set(page)) == 10  # stable paging: ties broken by _id

        assert await todos.update(first, {"$set": {"done": True, "who.age": 30}, "$unset": ["tags"]}) == 1
        assert await todos.get(first) == {"_id": first, "title": "milk", "done": True, "n": 3,
                                          "who": {"name": "ann", "age": 30}}
        assert await todos.update({"tags": "bulk"}, {"$inc": {"n": 1}}) == 10
        assert sorted(d["n"] for d in await todos.query({"tags": "bulk"})) == [i * 10 + 1 for i in range(10)]
        assert await todos.update("fixed", {"title": "eggs!", "_id": "ignored"}) == 1
        assert await todos.get("fixed") == {"_id": "fixed", "title": "eggs!"}
        assert await todos.update("missing", {"$set": {"x": 1}}) == 0
        with pytest.raises(BadRequest, match="unknown update operator"):
            await todos.update(first, {"$push": {"tags": "x"}})
        with pytest.raises(BadRequest, match="non-empty filter"):
            await todos.delete({})
        with pytest.raises(BadRequest, match="unknown operator"):
            await todos.query({"n": {"$regex": "x"}})
        with pytest.raises(BadRequest, match="limit"):
            await todos.query(limit=5000)

        assert await todos.delete("fixed") == 1
        assert await todos.delete({"n": {"$lt": 30}}) == 4  # milk (3), 1, 11, 21
        assert await todos.count() == 7

    tenant.run(body)


async def _explain(dsn: str, table: str, where, sort, limit=10) -> str:
    """The plan PostgreSQL picks for the exact SQL the API sends (same builder, same parameters)."""
    from psycopg import sql

    cond, params = where_sql(where)
    stmt = sql.SQL("EXPLAIN SELECT id, data FROM {} WHERE {} {} LIMIT %s OFFSET %s").format(
        sql.Identifier("docs", table), cond, order_sql(sort))
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(stmt, (*params, limit, 0))
        return "\n".join(r[0] for r in await cur.fetchall())


def test_equality_uses_gin_and_declared_index_serves_range_and_sort(tenant):
    async def body():
        t = await tenant.setup({"items": ["n"]})
        _, dsn = await tenant.function("reader", {"items": "readWrite"})
        async with await psycopg.AsyncConnection.connect(dsn) as conn:  # 20k rows in one statement
            await conn.execute(
                "INSERT INTO docs.items (id, data) SELECT lpad(i::text, 8, '0'), jsonb_build_object("
                "'n', i, 'tag', 't' || (i % 500), 'done', i % 2 = 0) FROM generate_series(1, 20000) i")
        admin = tenant.provisioner
        async with await admin._connect(t.database) as conn:
            await conn.execute("VACUUM ANALYZE docs.items")  # flushes the GIN pending list too

        eq = await _explain(dsn, "items", {"tag": "t17", "done": False}, None)
        assert "items_data_gin" in eq, eq
        rng = await _explain(dsn, "items", {"n": {"$gte": 1000, "$lt": 1100}}, [("n", 1)])
        assert "Index Scan using items_n_" in rng and "Sort" not in rng, rng
        top = await _explain(dsn, "items", None, [("n", -1)])
        assert "Index Scan Backward using items_n_" in top and "Sort" not in top, top
        items = (await tenant.database(dsn)).collection("items")
        assert [d["n"] for d in await items.query({"n": {"$gte": 1000, "$lt": 1100}}, [("n", 1)], limit=3)] == \
            [1000, 1001, 1002]

    tenant.run(body)
