"""File storage throughput: the function runtime's `Storage` client vs the raw minio client, same SeaweedFS.

    python bench/storage.py [--small 200] [--large 8] [--large-mib 4] [--concurrency 4] [--rounds 3]

Starts a private SeaweedFS (devenv/seaweedfs, in a temporary directory; `make seaweedfs` builds it), provisions
one tenant and one function identity with FileProvisioner, then times put and get of small (1 KiB) objects
(ops/s: per-request overhead) and large objects (MB/s), each through `functions.storage.Storage` (asyncio facade,
thread executor, `--concurrency` requests in flight) and through a raw `minio.Minio` client called from the
same number of threads; `--rounds` rounds alternating which goes first, medians reported ("client/raw" > 1: the
client is faster). Prints a table and one JSON line. Bounded: a fixed count of requests to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from minio import Minio  # noqa: E402

from mpcloud_operator.backing.s3 import FileProvisioner, split_endpoint  # noqa: E402
from mpcloud_operator.devenv import seaweedfs  # noqa: E402
from mpcloud_operator.devenv.ports import free_port  # noqa: E402
from mpcloud_operator.functions.storage import Storage  # noqa: E402


async def _client_run(st: Storage, op: str, keys: list[str], payload: bytes, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        async with sem:
            if op == "put":
                await st.put(key, payload)
            else:
                assert len(await st.get(key)) == len(payload)

    started = time.perf_counter()
    await asyncio.gather(*(one(k) for k in keys))
    return time.perf_counter() - started


def _raw_run(raw: Minio, bucket: str, op: str, keys: list[str], payload: bytes, concurrency: int) -> float:
    def one(key: str) -> None:
        if op == "put":
            raw.put_object(bucket, key, io.BytesIO(payload), len(payload))
        else:
            resp = raw.get_object(bucket, key)
            try:
                assert len(resp.read()) == len(payload)
            finally:
                resp.close()
                resp.release_conn()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, keys))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=200, help="number of 1 KiB objects")
    ap.add_argument("--large", type=int, default=8, help="number of large objects")
    ap.add_argument("--large-mib", type=int, default=4, help="size of a large object in MiB")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="rounds per case (median reported)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mpcloud-bench-s3-") as tmp:
        base = Path(tmp)
        url = seaweedfs.up(base, s3_port=free_port())
        try:
            admin = seaweedfs.credentials(base)
            prov = FileProvisioner(url, *admin)
            tenant = "bench/storage"
            bucket = prov.ensure_bucket(tenant)
            key_id, secret = "MP" + secrets.token_hex(9).upper(), secrets.token_hex(20)
            prov.ensure_identity(tenant, "bench", "readWrite", key_id, secret)
            executor = ThreadPoolExecutor(args.concurrency)
            st = Storage(url, key_id, secret, bucket, executor=executor)
            host, _ = split_endpoint(url)
            raw = Minio(host, access_key=key_id, secret_key=secret, secure=False, region="us-east-1")
            asyncio.run(st.put("warmup", b"x"))  # first write grows the bucket's volume
            cases = [("small", 1024, args.small), ("large", args.large_mib << 20, args.large)]
            rows = []
            for name, size, count in cases:
                payload = os.urandom(size)
                for op in ("put", "get"):
                    t_client, t_raw = [], []
                    for rnd in range(args.rounds):  # alternate who goes first: caches and load drift cancel
                        client_keys = [f"client/{name}/{rnd}/{i}" for i in range(count)]
                        raw_keys = [f"raw/{name}/{rnd}/{i}" for i in range(count)]
                        runs = [lambda: t_client.append(asyncio.run(
                                    _client_run(st, op, client_keys, payload, args.concurrency))),
                                lambda: t_raw.append(_raw_run(raw, bucket, op, raw_keys, payload, args.concurrency))]
                        for fn in (runs if rnd % 2 == 0 else runs[::-1]):
                            fn()
                    tc, tr = statistics.median(t_client), statistics.median(t_raw)
                    rows.append({"case": name, "op": op, "size": size, "count": count, "rounds": args.rounds,
                                 "client_ops": count / tc, "raw_ops": count / tr,
                                 "client_mbs": count * size / tc / 1e6, "raw_mbs": count * size / tr / 1e6,
                                 "ratio": tr / tc})
            executor.shutdown()
        finally:
            seaweedfs.down(base)
    load = os.getloadavg()[0]
    print(f"SeaweedFS on 127.0.0.1, concurrency {args.concurrency}, load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'case':6} {'op':4} {'size':>9} {'n':>5} {'client op/s':>12} {'raw op/s':>10} {'client MB/s':>12} "
          f"{'raw MB/s':>10} {'client/raw':>10}")
    for r in rows:
        print(f"{r['case']:6} {r['op']:4} {r['size']:>9} {r['count']:>5} {r['client_ops']:>12.1f} "
              f"{r['raw_ops']:>10.1f} {r['client_mbs']:>12.2f} {r['raw_mbs']:>10.2f} {r['ratio']:>10.2f}")
    print(json.dumps({"bench": "storage", "concurrency": args.concurrency, "load": round(load, 2),
                      "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}))


if __name__ == "__main__":
    main()
