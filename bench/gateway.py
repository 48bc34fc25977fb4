"""Warm invocations through the gateway vs straight to the runtime host, side by side in one run.

    python bench/gateway.py [--runtimes nodejs20,python3.11] [--concurrency 1,8] [--rounds 5] [--seconds 3]

Starts one real runtime host per runtime (a handler that returns a small JSON object) and one real gateway
(`--routes` file pointing at the hosts), as separate processes exactly as they run in pods. A closed-loop
aiohttp load generator (one keep-alive session per target, `concurrency` requests in flight) runs interleaved
rounds — direct, gateway, direct, gateway, ... — so that drift in the machine's load hits both alike. Reports
p50/p99 latency and throughput per target, the gateway's added p50 (ms) and its throughput ratio; a table
and one JSON line. Targets (issue #14): ≤ 1 ms added at p50, ≥ 0.9 × direct throughput.

Every process shares the machine's cores: the gateway's CPU is taken from the host and the load generator, so
on a small, busy machine the throughput ratio measures the gateway's CPU cost per request as much as its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))

from mpcloud_operator.devenv.ports import free_port  # noqa: E402
from mpcloud_operator.devenv.waiting import wait_http_ready  # noqa: E402

SOURCES = {
    "python3.11": ("index.py", "def main(event, context):\n    return {'ok': True, 'path': event['path']}\n"),
    "nodejs20": ("index.js", "exports.main = async (event) => ({ ok: true, path: event.path });\n"),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), str(ROOT)]))
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the host's language workers), from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


async def _round(session, url: str, concurrency: int, seconds: float) -> tuple[list[float], float]:
    """Closed loop: `concurrency` workers, each sending the next request when the last one answered."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}")
            latencies.append(time.perf_counter() - t0)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.monotonic() - started


async def measure(targets: dict[str, str], concurrency: int, rounds: int, seconds: float,
                  pids: dict[str, int]) -> dict[str, dict]:
    import aiohttp

    out: dict[str, dict] = {}
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) for name in targets}
    try:
        for name, url in targets.items():  # warm-up: connections, worker pools, code paths
            await _round(sessions[name], url, concurrency, 1.0)
        samples = {name: ([], 0.0, 0) for name in targets}
        cpu = {(name, proc): 0.0 for name in targets for proc in pids}
        for _ in range(rounds):
            for name, url in targets.items():
                before = {proc: cpu_seconds(pid) for proc, pid in pids.items()}
                lat, elapsed = await _round(sessions[name], url, concurrency, seconds)
                for proc, pid in pids.items():
                    cpu[name, proc] += cpu_seconds(pid) - before[proc]
                all_lat, total_time, count = samples[name]
                samples[name] = (all_lat + lat, total_time + elapsed, count + len(lat))
        for name, (lat, total_time, count) in samples.items():
            out[name] = {"p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
                         "rps": count / total_time, "requests": count,
                         **{f"{proc}_cpu_us_per_request": cpu[name, proc] / count * 1e6 for proc in pids}}
    finally:
        for session in sessions.values():
            await session.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtimes", default="nodejs20,python3.11")
    ap.add_argument("--concurrency", default="1,8", help="requests in flight, comma-separated levels")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per target")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    args = ap.parse_args()
    runtimes = args.runtimes.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="mpcloud-bench-gateway-"))
    procs: list[subprocess.Popen] = []
    results = []
    try:
        hosts = {}
        for runtime in runtimes:
            code = tmp / runtime
            code.mkdir()
            name, text = SOURCES[runtime]
            (code / name).write_text(text)
            port = free_port()
            procs.append(_spawn(["mpcloud_operator.functions.host", "--runtime", runtime, "--code-dir", str(code),
                                 "--handler", "index.main", "--port", str(port), "--host", "127.0.0.1",
                                 "--concurrency", str(max(levels))], tmp / f"host-{runtime}.log"))
            hosts[runtime] = port
        routes = tmp / "routes.json"
        routes.write_text(json.dumps({"functions": [
            {"namespace": "bench", "name": runtime.replace(".", ""), "concurrency": max(levels), "maxInstances": 1,
             "endpoints": [f"127.0.0.1:{port}"]} for runtime, port in hosts.items()]}))
        gw_port = free_port()
        procs.append(_spawn(["mpcloud_operator.functions.gateway", "--routes", str(routes), "--port", str(gw_port),
                             "--host", "127.0.0.1"], tmp / "gateway.log"))
        for (runtime, port), proc in zip(hosts.items(), procs):
            wait_http_ready(f"http://127.0.0.1:{port}/_/health", proc, 30, f"the {runtime} host", tmp)
        wait_http_ready(f"http://127.0.0.1:{gw_port}/_/health", procs[-1], 30, "the gateway", tmp)
        load = os.getloadavg()[0]
        for runtime, port in hosts.items():
            for c in levels:
                targets = {"direct": f"http://127.0.0.1:{port}/hello",
                           "gateway": f"http://127.0.0.1:{gw_port}/bench/{runtime.replace('.', '')}/hello"}
                pids = {"host": procs[runtimes.index(runtime)].pid, "gateway": procs[-1].pid}
                m = asyncio.run(measure(targets, c, args.rounds, args.seconds, pids))
                d, g = m["direct"], m["gateway"]
                results.append({"runtime": runtime, "concurrency": c, "direct": d, "gateway": g,
                                "added_p50_ms": g["p50_ms"] - d["p50_ms"], "added_p99_ms": g["p99_ms"] - d["p99_ms"],
                                "throughput_ratio": g["rps"] / d["rps"],
                                "gateway_cpu_us_per_request": g["gateway_cpu_us_per_request"],
                                "host_cpu_us_per_request": d["host_cpu_us_per_request"]})
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    print(f"warm invocations, {args.rounds} interleaved rounds × {args.seconds:g} s per target; "
          f"load average at start {load:.2f} on {os.cpu_count()} cores")
    print(f"{'runtime':<11} {'c':>3} | {'direct p50':>10} {'p99':>7} {'rps':>7} | {'gateway p50':>11} {'p99':>7} "
          f"{'rps':>7} | {'+p50 ms':>7} {'+p99 ms':>7} {'rps ratio':>9} | {'CPU µs/req host':>15} {'gateway':>7}")
    for r in results:
        d, g = r["direct"], r["gateway"]
        print(f"{r['runtime']:<11} {r['concurrency']:>3} | {d['p50_ms']:>10.2f} {d['p99_ms']:>7.2f} {d['rps']:>7.0f} | "
              f"{g['p50_ms']:>11.2f} {g['p99_ms']:>7.2f} {g['rps']:>7.0f} | {r['added_p50_ms']:>7.2f} "
              f"{r['added_p99_ms']:>7.2f} {r['throughput_ratio']:>9.2f} | {r['host_cpu_us_per_request']:>15.0f} "
              f"{r['gateway_cpu_us_per_request']:>7.0f}")
    ok_p50 = all(r["added_p50_ms"] <= 1.0 for r in results)
    ok_rps = all(r["throughput_ratio"] >= 0.9 for r in results)
    print(f"targets: added p50 <= 1 ms {'met' if ok_p50 else 'MISSED'}; throughput >= 0.9x {'met' if ok_rps else 'MISSED'}")
    print(json.dumps({"bench": "gateway", "load_average": round(load, 2), "cores": os.cpu_count(),
                      "rounds": args.rounds, "seconds": args.seconds, "median_added_p50_ms":
                      round(statistics.median(r["added_p50_ms"] for r in results), 3), "results": results}))


if __name__ == "__main__":
    main()
