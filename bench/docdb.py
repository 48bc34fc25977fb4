"""Document API vs raw SQL: ops/s of `add` and of an indexed range `query`, side by side on one PostgreSQL.

One client, pinned to CPU 0 (what `taskset -c 0` does; the server is not pinned), one operation at a time, as a
function instance does. Per operation three variants, all async psycopg 3 logged in as the same function role:
  api          `Collection.add` / `Collection.query` over `Database.connect`'s pool (what functions call:
               validation, SQL built per call, the pool's check before lending a connection: a poll of the
               socket, no round trip);
  api-ping     the same with psycopg_pool's stock check (an empty query, one more round trip per call): what
               surviving a server restart would cost without the socket poll;
  raw          hand-written SQL on one plain connection: `INSERT ... VALUES (%s, %s)` and
               `SELECT ... WHERE data->'n' >= %s AND data->'n' < %s ORDER BY data->'n' LIMIT 10`.
Rounds are interleaved (each round runs every variant for --seconds, in a rotated order) so a change in the
machine's load hits all variants alike; the table shows the median round and the min-max, and the ratio to
raw is the median over rounds of the round's own ratio (variants of one round ran within a few seconds of each
other). The collection holds --rows documents (index on `n`) before the first round.

    python bench/docdb.py [--rounds 20] [--seconds 0.5] [--rows 20000] [--dsn ADMIN_DSN]

Without --dsn it starts a private PostgreSQL (devenv.postgres) in a temporary directory and removes it after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

import psycopg  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402
from psycopg_pool import AsyncConnectionPool  # noqa: E402

from mpcloud_operator.backing.postgres import Provisioner  # noqa: E402
from mpcloud_operator.functions.docdb import Database, new_id  # noqa: E402

RAW_QUERY = ("SELECT id, data FROM docs.items WHERE data -> 'n' >= %s AND data -> 'n' < %s "
             "ORDER BY data -> 'n', id LIMIT 10")


def doc(i: int) -> dict:
    return {"title": f"todo {i}", "done": i % 2 == 0, "n": i, "tags": ["bench", f"t{i % 50}"]}


async def setup(admin_dsn: str, rows: int):
    prov = Provisioner(admin_dsn)
    tenant = await prov.ensure_tenant("bench", f"docdb-{secrets.token_hex(3)}")
    await prov.ensure_collection(tenant, "items", ["n"])
    password = secrets.token_urlsafe(16)
    role = await prov.ensure_function(tenant, "bench", {"items": "readWrite"}, password)
    dsn = prov.dsn(tenant, role, password)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO docs.items (id, data) SELECT lpad(i::text, 12, '0'), jsonb_build_object('title', 'todo ' || i,"
            " 'done', i %% 2 = 0, 'n', i, 'tags', jsonb_build_array('bench', 't' || (i %% 50))) "
            "FROM generate_series(1, %s) i", (rows,))
    async with await prov._connect(tenant.database) as conn:
        await conn.execute("VACUUM ANALYZE docs.items")
    return prov, tenant, dsn


async def run(args) -> dict:
    prov, tenant, dsn = await setup(args.admin_dsn, args.rows)
    api = await Database.connect(dsn, tenant.schema, min_size=1, max_size=1)
    ping_pool = AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False, kwargs={"autocommit": True},
                                    check=AsyncConnectionPool.check_connection)
    await ping_pool.open(wait=True)
    ping = Database(ping_pool, tenant.schema)
    raw = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    rng = random.Random(7)
    counter = iter(range(10**9))

    def lo() -> int:
        return rng.randrange(1, args.rows - 10)

    async def api_add(db):
        await db.collection("items").add(doc(next(counter)))

    async def raw_add():
        await raw.execute("INSERT INTO docs.items (id, data) VALUES (%s, %s)", (new_id(), Jsonb(doc(next(counter)))))

    async def api_query(db):
        x = lo()
        got = await db.collection("items").query({"n": {"$gte": x, "$lt": x + 10}}, sort=[("n", 1)], limit=10)
        assert len(got) >= 10

    async def raw_query():
        x = lo()
        cur = await raw.execute(RAW_QUERY, (Jsonb(x), Jsonb(x + 10)))
        got = [{"_id": i, **d} for i, d in await cur.fetchall()]
        assert len(got) >= 10

    variants = {
        ("add", "api"): lambda: api_add(api), ("add", "api-ping"): lambda: api_add(ping), ("add", "raw"): raw_add,
        ("query", "api"): lambda: api_query(api), ("query", "api-ping"): lambda: api_query(ping),
        ("query", "raw"): raw_query,
    }
    for fn in variants.values():  # warm-up: prepared statements (after 5 uses), caches
        for _ in range(50):
            await fn()
    rates: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    keys = list(variants)
    for r in range(args.rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn, n, started = variants[k], 0, time.perf_counter()
            deadline = started + args.seconds
            while time.perf_counter() < deadline:
                await fn()
                n += 1
            rates[k].append(n / (time.perf_counter() - started))
    await api.close()
    await ping_pool.close()
    await raw.close()
    await prov.drop_tenant(tenant)
    return {f"{op}/{variant}": v for (op, variant), v in rates.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--dsn", dest="admin_dsn", default=None, help="admin DSN of a running server")
    args = p.parse_args()
    base = None
    if not args.admin_dsn:
        from mpcloud_operator.devenv import postgres
        from mpcloud_operator.devenv.ports import free_port

        base = Path(tempfile.mkdtemp(prefix="bench-docdb-")) / "postgres"
        args.admin_dsn = postgres.up(base, port=free_port())
    os.sched_setaffinity(0, {0})  # the client on one core, as `taskset -c 0`; the server was started before
    load_before = os.getloadavg()[0]
    try:
        rates = asyncio.run(run(args))
    finally:
        if base:
            import shutil

            from mpcloud_operator.devenv import postgres

            postgres.down(base)
            shutil.rmtree(base.parent, ignore_errors=True)
    load = (round(load_before, 2), round(os.getloadavg()[0], 2))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = {k: statistics.median(a / b for a, b in zip(v, rates[k.split("/")[0] + "/raw"])) for k, v in rates.items()}
    print(f"docdb: {args.rounds} interleaved rounds x {args.seconds:g} s per variant, {args.rows} rows, "
          f"client on CPU 0, load average {load[0]} -> {load[1]}")
    print(f"{'operation':<10} {'variant':<12} {'ops/s (median)':>15} {'min-max':>17} {'vs raw':>7}")
    for k, v in rates.items():
        op, variant = k.split("/")
        print(f"{op:<10} {variant:<12} {med[k]:>15,.0f} {min(v):>8,.0f}-{max(v):<8,.0f} {ratio[k]:>6.2f}x")
    print(json.dumps({"bench": "docdb", "rounds": args.rounds, "seconds": args.seconds, "rows": args.rows,
                      "load": load, "ops_per_s": {k: round(v) for k, v in med.items()},
                      "ratio_api_vs_raw": {op: round(ratio[f"{op}/api"], 3) for op in ("add", "query")},
                      "ratio_ping_vs_raw": {op: round(ratio[f"{op}/api-ping"], 3) for op in ("add", "query")}}))


if __name__ == "__main__":
    main()
