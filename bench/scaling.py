"""Scaling benchmark: replay every trace through hpa / kpa / fixed-peak / predictive / oracle.

Usage:  python bench/scaling.py [--traces DIR] [--delay 2] [--max-series 12] [--max-minutes 20000]

* traces: `../shared/traces/` next to the repository (or --traces / $MPCLOUD_TRACES); `*_meta*` skipped.
* subset (documented, deterministic): per file the `--max-series` busiest series (by total count, ties
  by id) and, per series, the last `--max-minutes` minutes; both are printed.
* capacity per series: p95 of its per-minute counts / 10; warm-up: n/4 clipped to [60, 2880] minutes.
* one table row per trace (metrics summed over its series) + an aggregate over all traces, then a
  declared-event scenario (30x promotion, declared ahead) and the batch-forecast timing of 10,000 series
  (synthetic from the traces: real series tiled with random scale and phase) on one thread;
  finally one JSON line with everything.
* aggregate (primary, fixed): pooled over every evaluated series-minute of every trace -- under-provisioned
  minutes are summed; replica-minutes are summed and divided by the summed oracle replica-minutes (each
  series' replica-minutes are already normalised by its capacity C = p95/10, so series weigh by length
  and by how many replicas they need). Secondary, printed for transparency: the mean over traces of the
  per-trace ratios (every trace file weighs the same).
* robustness: every series' evaluated minutes [warm-up, n) are split in two halves; the metrics of each
  half are printed separately (the policy runs online over the whole series; its one global constant,
  `OnlineConfig.under_cost`, was chosen on half 1 only).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # batch timing on one core

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predictors.batch import forecast_batch  # noqa: E402
from predictors.periodicity import detect_period_batch  # noqa: E402
from predictors.replay import Event, replay  # noqa: E402
from predictors.traces import load_trace  # noqa: E402

POLICIES = ["hpa", "kpa", "fixed-peak", "predictive", "oracle"]
KEYS = ("under_minutes", "replica_minutes", "minutes", "scaling_actions")
HALF_KEYS = ("under_h1", "replica_h1", "under_h2", "replica_h2")


def halves(demand: np.ndarray, serving: np.ndarray, capacity: float, warmup: int) -> dict:
    """Under-provisioned minutes and replica-minutes of the two halves of [warmup, n)."""
    n = len(demand)
    mid = warmup + (n - warmup) // 2
    out = {}
    for k, (lo, hi) in (("h1", (warmup, mid)), ("h2", (mid, n))):
        out[f"under_{k}"] = float((demand[lo:hi] > serving[lo:hi] * capacity + 1e-9).sum())
        out[f"replica_{k}"] = float(serving[lo:hi].sum())
    return out


def traces_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("MPCLOUD_TRACES"):
        return Path(os.environ["MPCLOUD_TRACES"])
    return Path(__file__).resolve().parents[1].parent / "shared" / "traces"


def selected_series(tdir: Path, max_series: int, max_minutes: int):
    """The benchmark's subset, per trace file: (name, series in the file, series picked, [counts of each
    evaluated series]) -- the `max_series` busiest (ties by id), last `max_minutes` minutes, >= 60 minutes."""
    for path in sorted(tdir.glob("*.csv*")):
        if "_meta" in path.name:
            continue
        data = load_trace(path)
        items = sorted(data.items(), key=lambda kv: (-float(kv[1].counts.sum()), kv[0]))[:max_series]
        xs = [s.counts[-max_minutes:] for _, s in items]
        yield path.name.split(".")[0], len(data), len(items), [x for x in xs if len(x) >= 60 and x.sum() > 0]


def run_traces(tdir: Path, delay: int, max_series: int, max_minutes: int) -> tuple[dict, list]:
    per_trace: dict[str, dict] = {}
    series_for_batch: list[np.ndarray] = []
    for name, n_file, n_picked, xs in selected_series(tdir, max_series, max_minutes):
        tot = {p: dict.fromkeys(KEYS + HALF_KEYS, 0.0) | {"unserved": 0.0, "demand": 0.0} for p in POLICIES}
        for x in xs:
            series_for_batch.append(x)
            env, w, res = replay(x, POLICIES, startup_delay=delay)
            for p, r in res.items():
                m = r.metrics | halves(np.nan_to_num(x), r.serving, env.capacity, w)
                for k in KEYS + HALF_KEYS:
                    tot[p][k] += m[k]
                tot[p]["unserved"] += m["unserved_frac"] * m["demand"]
                tot[p]["demand"] += m["demand"]
        per_trace[name] = {"series": n_picked, "of": n_file, "policies": tot}
    return per_trace, series_for_batch


def ratios(t: dict) -> dict:
    o = t["oracle"]["replica_minutes"] or 1.0
    out = {}
    for p, m in t.items():
        out[p] = {
            "under_min": int(m["under_minutes"]),
            "under_pct": 100 * m["under_minutes"] / max(m["minutes"], 1),
            "unserved_pct": 100 * m["unserved"] / max(m["demand"], 1e-9),
            "replica_min": m["replica_minutes"],
            "x_oracle": m["replica_minutes"] / o,
            "actions": int(m["scaling_actions"]),
        }
        for h in ("h1", "h2"):
            ho = t["oracle"][f"replica_{h}"] or 1.0
            out[p][f"under_{h}"] = int(m[f"under_{h}"])
            out[p][f"x_oracle_{h}"] = m[f"replica_{h}"] / ho
    return out


def targets(ra: dict, rows: dict, suffix: str = "") -> dict:
    pr, hp = ra["predictive"], ra["hpa"]
    u, x = f"under_min{suffix}" if not suffix else f"under{suffix}", f"x_oracle{suffix}"
    out = {
        "pred_under_vs_hpa": pr[u] / max(hp[u], 1),
        "pred_replica_vs_hpa": pr[x] / hp[x],
        "pred_replica_vs_oracle": pr[x],
    }
    if not suffix:
        out["traces_worse_than_hpa_on_both"] = [
            n for n, v in rows.items()
            if v["policies"]["predictive"]["under_min"] > v["policies"]["hpa"]["under_min"]
            and v["policies"]["predictive"]["replica_min"] > v["policies"]["hpa"]["replica_min"]
        ]
    return out


def event_scenario(tdir: Path, delay: int) -> dict:
    """30x promotion (2 h) on NASA's series, declared from the start (>= 1 h ahead)."""
    s = next(iter(load_trace(tdir / "nasa_http_1995-07.csv.gz").values()))
    x = s.counts[-14 * 1440 :].copy()
    start = len(x) - 3 * 1440 + 20 * 60 - 240  # 20:00 trace-local 3 days before the end
    end = start + 120
    cap = float(np.percentile(x, 95)) / 10
    x[start:end] *= 30.0
    env, w, res = replay(x, ["hpa", "predictive", "oracle"], capacity=cap, startup_delay=delay,
                         events=[Event(start, end, 30.0)])
    out = {}
    for p, r in res.items():
        need = np.ceil(x[start:end] / cap - 1e-9)
        served = r.serving[start:end]
        out[p] = {"under_minutes_in_event": int((served < need).sum()),
                  "first_minute_ok": bool(served[0] >= need[0]),
                  "replica_min_in_event": float(served.sum())}
    return out


def batch_timing(series: list[np.ndarray], n: int = 10_000, m: int = 3 * 1440, horizon: int = 15) -> dict:
    rng = np.random.default_rng(0)
    pool = [x for x in series if len(x) >= m] or series
    X = np.empty((n, m), dtype=np.float32)
    for i in range(n):
        x = pool[i % len(pool)]
        off = int(rng.integers(0, max(len(x) - m, 0) + 1))
        seg = x[off : off + m]
        if len(seg) < m:
            seg = np.resize(seg, m)
        X[i] = seg * rng.uniform(0.5, 2.0)
    t0 = time.perf_counter()
    periods = detect_period_batch(X, (1440,))
    t1 = time.perf_counter()
    ticks = []
    for _ in range(3):
        a = time.perf_counter()
        forecast_batch(X, horizon, (0.5, 0.9, 0.95), periods=periods)
        ticks.append(time.perf_counter() - a)
    return {"series": n, "history_minutes": m, "horizon": horizon, "tick_s": min(ticks), "tick_s_max": max(ticks),
            "detect_periods_s": t1 - t0, "seasonal_share": float((periods > 0).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", default=None)
    ap.add_argument("--delay", type=int, default=2)
    ap.add_argument("--max-series", type=int, default=12)
    ap.add_argument("--max-minutes", type=int, default=20_000)
    ap.add_argument("--no-batch", action="store_true")
    a = ap.parse_args()
    tdir = traces_dir(a.traces)
    t0 = time.perf_counter()
    per_trace, series = run_traces(tdir, a.delay, a.max_series, a.max_minutes)
    print(f"traces: {tdir}  D = {a.delay} min  C = p95/10 per series  subset: <= {a.max_series} busiest series per file,"
          f" last {a.max_minutes} minutes each")
    hdr = f"{'trace':44s} {'ser':>7s} | " + " | ".join(f"{p:>22s}" for p in POLICIES if p != "oracle")
    print(hdr)
    print(f"{'':44s} {'':>7s} | " + " | ".join(f"{'under-min  x-oracle':>22s}" for p in POLICIES if p != "oracle"))
    agg = {p: dict.fromkeys(KEYS + HALF_KEYS, 0.0) | {"unserved": 0.0, "demand": 0.0} for p in POLICIES}
    rows = {}
    for name, tr in per_trace.items():
        r = ratios(tr["policies"])
        rows[name] = {"series": tr["series"], "of": tr["of"], "policies": r}
        cells = " | ".join(f"{r[p]['under_min']:>9d} {r[p]['x_oracle']:>9.2f}  " for p in POLICIES if p != "oracle")
        print(f"{name[:44]:44s} {tr['series']:>3d}/{tr['of']:<3d} | {cells}")
        for p in POLICIES:
            for k in agg[p]:
                agg[p][k] += tr["policies"][p][k]
    ra = ratios(agg)
    print(f"{'AGGREGATE (pooled: sum under, sum/sum oracle)':44s} {'':>7s} | "
          + " | ".join(f"{ra[p]['under_min']:>9d} {ra[p]['x_oracle']:>9.2f}  " for p in POLICIES if p != "oracle"))
    mean_ratio = {p: float(np.mean([v["policies"][p]["x_oracle"] for v in rows.values()])) for p in POLICIES}
    print(f"{'  secondary: mean of per-trace x-oracle':44s} {'':>7s} | "
          + " | ".join(f"{'':>9s} {mean_ratio[p]:>9.2f}  " for p in POLICIES if p != "oracle"))
    for h in ("h1", "h2"):
        print(f"{'  half ' + h[1] + ' of every series (pooled)':44s} {'':>7s} | "
              + " | ".join(f"{ra[p]['under_' + h]:>9d} {ra[p]['x_oracle_' + h]:>9.2f}  " for p in POLICIES if p != "oracle"))
    summary = targets(ra, rows) | {"half1": targets(ra, rows, "_h1"), "half2": targets(ra, rows, "_h2"),
                                   "mean_of_trace_x_oracle": mean_ratio}
    print("summary:", json.dumps(summary))
    ev = event_scenario(tdir, a.delay)
    print("event scenario (NASA, 30x for 120 min, declared ahead):", json.dumps(ev))
    bt = {} if a.no_batch else batch_timing(series)
    if bt:
        print(f"batch forecast: {bt['series']} series x {bt['history_minutes']} min, horizon {bt['horizon']}: "
              f"{bt['tick_s']:.3f} s per tick (1 thread; max {bt['tick_s_max']:.3f}); hourly period detection "
              f"{bt['detect_periods_s']:.3f} s")
    elapsed = time.perf_counter() - t0
    print(json.dumps({"bench": "scaling", "command": " ".join(["python", *sys.argv]), "delay": a.delay,
                      "elapsed_s": round(elapsed, 1), "aggregate": ra,
                      "summary": summary, "event": ev, "batch": bt, "traces": rows}, separators=(",", ":")))


if __name__ == "__main__":
    main()
