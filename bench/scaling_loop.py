"""Time per scaling tick for 1,000 and 10,000 apps against a real Prometheus (Debian's 2.42 binary).

For each size N: synthetic per-minute series (daily cycle with random phase, amplitude and level, plus
noise) are backfilled with promtool as `mpcloud_app_requests_total` counters (one sample per minute,
`--history` minutes ending now) into a fresh Prometheus. The apps are fed to the loop's pure core
(`mpcloud_operator.scaling.core.Scaler`) directly as AppInputs -- no MiniProgramApp objects and no
Kubernetes writes (a scale change costs one PATCH + one status patch per changed app on top).
Ticks use the default PromQL (one range query for all apps) at tick = 60 s, on a simulated clock that
starts 30 minutes before the backfill's end and advances one minute per tick:

- tick 1 (cold): loads the whole history (chunked range queries) and detects periods;
- ticks 2..: steady state: one range query for the last few minutes, batch forecast, policy.

Prints a table and one JSON line. Usage: python bench/scaling_loop.py [--sizes 1000,10000] [--ticks 6]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from mpcloud_operator.devenv import prometheus  # noqa: E402
from mpcloud_operator.devenv.ports import free_port  # noqa: E402
from mpcloud_operator.scaling.core import DEFAULT_QUERY, AppInput, Scaler, Settings  # noqa: E402
from mpcloud_operator.scaling.promapi import PromClient  # noqa: E402


def synthetic(n: int, minutes: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(minutes)[None, :]
    level = rng.lognormal(4, 1, (n, 1))
    amp = rng.uniform(0.2, 0.9, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    x = level * (1 + amp * np.sin(2 * np.pi * t / 1440 + phase))
    return np.maximum(x * rng.normal(1, 0.1, x.shape), 0).round()


def write_openmetrics(path: Path, X: np.ndarray, end: float, step: float = 60.0) -> None:
    n, m = X.shape
    times = end - step * np.arange(m - 1, -1, -1)
    cum = np.cumsum(X, axis=1)
    ts = [f"{t:.0f}" for t in times]
    with open(path, "w") as f:
        f.write("# HELP mpcloud_app_requests Requests.\n# TYPE mpcloud_app_requests counter\n")
        for i in range(n):
            lab = f'mpcloud_app_requests_total{{namespace="bench-{i % 50}",app="app-{i}"}} '
            f.write("".join(f"{lab}{v:.0f} {t}\n" for v, t in zip(cum[i], ts)))
        f.write("# EOF\n")


def bench(n: int, history: int, ticks: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix=f"bench-prom-{n}-"))
    end = (time.time() // 60) * 60 - 60
    X = synthetic(n, history)
    t = time.perf_counter()
    om = base / "input.om"
    write_openmetrics(om, X, end)
    prometheus.backfill(om, base, restart=False)
    om.unlink()
    backfill_s = time.perf_counter() - t
    url = prometheus.up(base, port=free_port(), scrape_interval="60s")
    try:
        settings = Settings(tick_seconds=60, history_minutes=history - 60)
        scaler = Scaler(PromClient(url, timeout=600), settings)
        apps = [AppInput(f"bench-{i % 50}", f"app-{i}", f"uid-{i}", "predictive", DEFAULT_QUERY,
                         capacity=float(max(1.0, X[i].mean() / 3)), min_replicas=1, max_replicas=1000, current=3)
                for i in range(n)]
        now = end - 30 * 60 + 1
        rows = []
        for k in range(ticks):
            t = time.perf_counter()
            out = scaler.tick(apps, now + 60 * k)
            wall = time.perf_counter() - t
            for a, o in zip(apps, out):
                a.current = o.replicas
            reasons: dict[str, int] = {}
            for o in out:
                reasons[o.reason] = reasons.get(o.reason, 0) + 1
            rows.append({"tick": k + 1, "seconds": round(wall, 3), **{f"{p}_s": round(v, 3) for p, v in scaler.timings.items() if p != "total"},
                         "changed": sum(o.changed for o in out), "degraded": sum(o.degraded[0] == "True" for o in out),
                         "reasons": reasons})
        steady = [r["seconds"] for r in rows[1:]]
        return {"apps": n, "history_minutes": history, "backfill_s": round(backfill_s, 1), "cold_tick_s": rows[0]["seconds"],
                "steady_tick_s_median": round(float(np.median(steady)), 3) if steady else None,
                "steady_tick_s_max": round(float(np.max(steady)), 3) if steady else None, "ticks": rows,
                "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    finally:
        prometheus.down(base)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--history", type=int, default=3000, help="minutes backfilled (>= 2 days + 1 h for daily periods)")
    ap.add_argument("--ticks", type=int, default=6)
    args = ap.parse_args()
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        r = bench(n, args.history, args.ticks)
        results.append(r)
        print(f"\n{n} apps, {args.history} min history (backfill {r['backfill_s']} s)", flush=True)
        print(f"{'tick':>4} {'total s':>8} {'query s':>8} {'forecast s':>10} {'policy s':>8} {'changed':>7} {'degraded':>8}")
        for row in r["ticks"]:
            print(f"{row['tick']:>4} {row['seconds']:>8.3f} {row['query_s']:>8.3f} {row['forecast_s']:>10.3f} "
                  f"{row['policy_s']:>8.3f} {row['changed']:>7} {row['degraded']:>8}", flush=True)
    summary = {"bench": "scaling_loop", "tick_seconds": 60, "cpus": os.cpu_count(),
               "results": [{k: v for k, v in r.items() if k != "ticks"} for r in results]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
