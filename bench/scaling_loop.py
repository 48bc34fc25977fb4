"""Time per scaling tick for 1,000 and 10,000 apps against a real Prometheus (Debian's 2.42 binary).

For each size N: synthetic per-minute series (daily cycle with random phase, amplitude and level, plus
noise) are backfilled with promtool as `mpcloud_app_requests_total` counters (one sample per minute,
`--history` + the ticks' minutes, ending now) into a fresh Prometheus. The apps are fed to the loop's pure
core (`mpcloud_operator.scaling.core.Scaler`, the full policy: online forecaster with per-app model choice,
bands and hourly refits) directly as AppInputs -- no MiniProgramApp objects and no Kubernetes writes (a
scale change costs one PATCH + one status patch per changed app on top). Ticks use the default PromQL (one
range query for all apps) at tick = 60 s, on a simulated clock advancing one minute per tick:

- tick 1 (cold): loads the newest history chunks and starts loading forecaster rows (bounded per tick);
- warm-up: until every app forecasts (rows loaded from history, then a first model selection each; apps
  waiting are scaled reactively with ScalingDegraded=WarmingUp);
- steady state (`--ticks` ticks): one range query for the last few minutes, every app's forecaster row
  updated, the refits due (each app hourly: about N / 60 a tick), bands, policy.

Prints a table and one JSON line. Usage: python bench/scaling_loop.py [--sizes 1000,10000] [--ticks 10]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

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


def bench(n: int, history: int, ticks: int, max_warmup: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix=f"bench-prom-{n}-"))
    span = history + max_warmup + ticks + 60  # minutes backfilled: the window at the first tick, then the ticks'
    end = (time.time() // 60) * 60 - 60
    X = synthetic(n, span)
    t = time.perf_counter()
    om = base / "input.om"
    write_openmetrics(om, X, end)
    prometheus.backfill(om, base, restart=False)
    om.unlink()
    backfill_s = time.perf_counter() - t
    url = prometheus.up(base, port=free_port(), scrape_interval="60s")
    try:
        settings = Settings(tick_seconds=60, history_minutes=history)
        scaler = Scaler(PromClient(url, timeout=600), settings)
        apps = [AppInput(f"bench-{i % 50}", f"app-{i}", f"uid-{i}", "predictive", DEFAULT_QUERY,
                         capacity=float(max(1.0, X[i].mean() / 3)), min_replicas=1, max_replicas=1000, current=3)
                for i in range(n)]
        now = end - (max_warmup + ticks) * 60 + 1
        rows: list[dict] = []
        steady_from = None
        k = 0
        while k < max_warmup + ticks and (steady_from is None or k < steady_from + ticks):
            t, c = time.perf_counter(), time.process_time()
            out = scaler.tick(apps, now + 60 * k)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            for a, o in zip(apps, out):
                a.current = o.replicas
            reasons: dict[str, int] = {}
            for o in out:
                reasons[o.degraded[1]] = reasons.get(o.degraded[1], 0) + 1
            forecasting = reasons.get("AsExpected", 0)
            rows.append({"tick": k + 1, "phase": "steady" if steady_from is not None else "warm-up",
                         "seconds": round(wall, 3), "cpu_s": round(cpu, 3),
                         **{f"{p}_s": round(v, 3) for p, v in scaler.timings.items() if p != "total"},
                         "forecasting": forecasting, "changed": sum(o.changed for o in out),
                         "loaded": scaler.counts["loaded"], "selects": scaler.counts["selected"], "reasons": reasons})
            print(f"  {n} apps tick {k + 1} ({rows[-1]['phase']}): {wall:.2f} s ({cpu:.2f} s CPU), {forecasting} forecasting, "
                  f"{scaler.counts}", file=sys.stderr, flush=True)
            if steady_from is None and forecasting == n:
                steady_from = k + 1
            k += 1
        steady = [r["seconds"] for r in rows if r["phase"] == "steady"]
        steady_cpu = [r["cpu_s"] for r in rows if r["phase"] == "steady"]
        warm = [r["seconds"] for r in rows if r["phase"] == "warm-up"]
        return {"apps": n, "history_minutes": history, "backfill_s": round(backfill_s, 1), "cold_tick_s": rows[0]["seconds"],
                "warmup_ticks": len(warm), "warmup_s": round(sum(warm), 1), "warmup_tick_s_max": round(max(warm), 3),
                "all_forecasting": steady_from is not None,
                "steady_tick_s_median": round(float(np.median(steady)), 3) if steady else None,
                "steady_tick_s_max": round(float(np.max(steady)), 3) if steady else None,
                "steady_tick_cpu_s_median": round(float(np.median(steady_cpu)), 3) if steady else None,
                "steady_tick_cpu_s_max": round(float(np.max(steady_cpu)), 3) if steady else None,
                "steady_selects_per_tick": round(float(np.mean([r["selects"] for r in rows if r["phase"] == "steady"])), 1)
                if steady else None, "selects_needed_per_tick": round(n / settings.online.refit_every, 1), "ticks": rows,
                "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    finally:
        prometheus.down(base)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--history", type=int, default=2880, help="minutes of history the loop keeps (Settings.history_minutes)")
    ap.add_argument("--ticks", type=int, default=10, help="steady-state ticks after every app forecasts")
    ap.add_argument("--max-warmup", type=int, default=90, help="ticks allowed for the warm-up")
    args = ap.parse_args()
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        r = bench(n, args.history, args.ticks, args.max_warmup)
        results.append(r)
        print(f"\n{n} apps, {args.history} min history (backfill {r['backfill_s']} s): cold tick {r['cold_tick_s']} s, "
              f"warm-up {r['warmup_ticks']} ticks / {r['warmup_s']} s (max tick {r['warmup_tick_s_max']} s), "
              f"steady median {r['steady_tick_s_median']} s, max {r['steady_tick_s_max']} s (CPU: median "
              f"{r['steady_tick_cpu_s_median']} s, max {r['steady_tick_cpu_s_max']} s), refits {r['steady_selects_per_tick']} a tick "
              f"(hourly needs {r['selects_needed_per_tick']}), RSS {r['max_rss_mib']} MiB", flush=True)
        print(f"{'tick':>4} {'phase':>8} {'total s':>8} {'cpu s':>6} {'query s':>8} {'load s':>7} {'select s':>8} {'forecast s':>10} "
              f"{'selects':>7} {'forecasting':>11} {'changed':>7}")  # selects: model refits this tick
        for row in r["ticks"]:
            print(f"{row['tick']:>4} {row['phase']:>8} {row['seconds']:>8.3f} {row['cpu_s']:>6.2f} {row['query_s']:>8.3f} {row['load_s']:>7.3f} "
                  f"{row['select_s']:>8.3f} {row['forecast_s']:>10.3f} {row['selects']:>7} {row['forecasting']:>11} "
                  f"{row['changed']:>7}", flush=True)
    summary = {"bench": "scaling_loop", "command": " ".join(["python", *sys.argv]), "tick_seconds": 60,
               "cpus": os.cpu_count(), "results": [{k: v for k, v in r.items() if k != "ticks"} for r in results]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
