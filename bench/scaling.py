"""Scaling benchmark: replay every trace through hpa / kpa / fixed-peak / predictive / oracle, and the frontier.

Usage:  python bench/scaling.py [--traces DIR] [--delay 2] [--max-series 12] [--max-minutes 20000]
                                [--targets 0.3,...,0.9] [--costs C1,C2] [--png docs/scaling-frontier.png]

* traces: `../shared/traces/` next to the repository (or --traces / $MPCLOUD_TRACES); `*_meta*` skipped.
* subset (documented, deterministic): per file the `--max-series` busiest series (by total count, ties
  by id) and, per series, the last `--max-minutes` minutes; both are printed.
* capacity per series: p95 of its per-minute counts / 10; warm-up: n/4 clipped to [60, 2880] minutes.
* predictive = the operator's own scaling core (`mpcloud_operator.scaling.offline.run_core`: `Scaler.tick`
  over a trace-backed range source and a fake clock, every series of a file as one app of one forecaster);
  tests/unit/test_scaling_equivalence.py checks it decides as the replay's `PredictivePolicy`. The other
  policies are the replay simulator's (`predictors/replay.py`, same rules).
* one table row per trace (metrics summed over its series) + an aggregate over all traces, then a
  declared-event scenario (30x promotion, declared ahead); finally one JSON line with everything.
* aggregate (primary, fixed): pooled over every evaluated series-minute of every trace -- under-provisioned
  minutes are summed; replica-minutes are summed and divided by the summed oracle replica-minutes (each
  series' replica-minutes are already normalised by its capacity C = p95/10, so series weigh by length
  and by how many replicas they need). Secondary, printed for transparency: the mean over traces of the
  per-trace ratios (every trace file weighs the same).
* robustness: every series' evaluated minutes [warm-up, n) are split in two halves; the metrics of each
  half are printed separately (the policy runs online over the whole series; its one global constant,
  `OnlineConfig.under_cost`, was chosen on half 1 only).
* frontier: HPA and KPA replayed at target utilisations `--targets`; pooled and per trace, predictive's
  replica-minutes / HPA's at equal under-provisioned minutes (HPA's replica-minutes interpolated linearly
  on its curve at predictive's under-provisioned minutes) and predictive's under-provisioned minutes /
  HPA's at equal replica-minutes; "<" / ">" when predictive lies beyond either end of HPA's curve (then
  the ratio is to that end and is a bound). `--costs` adds predictive points at other `under_cost` values
  (each a full run). The curves are drawn to `--png`.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # batch timing on one core

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from collections import Counter  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from mpcloud_operator.scaling.offline import run_core  # noqa: E402
from predictors.online import OnlineConfig  # noqa: E402
from predictors.policy import Event  # noqa: E402
from predictors.replay import Env, HPAPolicy, KPAPolicy, evaluate, replay, serving_from_pods, simulate  # noqa: E402
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


def start_state(x: np.ndarray, env: Env, w: int) -> tuple[int, int]:
    """The replay's first decision minute and pod count before it (`predictors.replay.simulate`)."""
    d0 = max(1, w - min(60, w // 2))
    init = int(min(env.max_replicas, max(env.min_replicas, math.ceil(float(np.nan_to_num(x[d0 - 1])) / env.capacity - 1e-9))))
    return d0, init


def core_metrics(xs: list[np.ndarray], envs: list[Env], ws: list[int], delay: int, online: OnlineConfig | None = None,
                 events=None) -> list[tuple[dict, np.ndarray]]:
    """Predictive through the operator's scaling core: per series (metrics, serving)."""
    starts = [start_state(x, e, w) for x, e, w in zip(xs, envs, ws)]
    pods, reasons = run_core(xs, [e.capacity for e in envs], [d for d, _ in starts], [i for _, i in starts],
                             startup_delay=delay, events=events, online=online)
    out = []
    for x, e, w, d, why in zip(xs, envs, ws, pods, reasons):
        m = evaluate(x, d, e, w)
        m["reasons"] = dict(Counter(why[w:]))
        out.append((m, serving_from_pods(d, delay)))
    return out


def run_traces(tdir: Path, delay: int, max_series: int, max_minutes: int, targets: list[float],
               costs: list[float]) -> dict:
    per_trace: dict[str, dict] = {}
    for name, n_file, n_picked, xs in selected_series(tdir, max_series, max_minutes):
        xs = [np.asarray(x, dtype=np.float64) for x in xs]
        tot = {p: dict.fromkeys(KEYS + HALF_KEYS, 0.0) | {"unserved": 0.0, "demand": 0.0} for p in POLICIES}
        curve = {f"{k}@{u:g}": [0.0, 0.0] for k in ("hpa", "kpa") for u in targets}
        curve |= {f"predictive@{c:g}": [0.0, 0.0] for c in costs}
        envs, ws = [], []

        def add(p, m, serving, x, env, w):
            m = m | halves(np.nan_to_num(x), serving, env.capacity, w)
            for k in KEYS + HALF_KEYS:
                tot[p][k] += m[k]
            tot[p]["unserved"] += m["unserved_frac"] * m["demand"]
            tot[p]["demand"] += m["demand"]

        for x in xs:
            env, w, res = replay(x, [p for p in POLICIES if p != "predictive"], startup_delay=delay)
            envs.append(env)
            ws.append(w)
            for p, r in res.items():
                add(p, r.metrics, r.serving, x, env, w)
            for key in curve:
                kind, val = key.split("@")
                if kind == "predictive":
                    continue
                pol = HPAPolicy(target=float(val)) if kind == "hpa" else KPAPolicy(target=float(val))
                m = simulate(x, pol, env, warmup=w).metrics
                curve[key][0] += m["under_minutes"]
                curve[key][1] += m["replica_minutes"]
        for x, env, w, (m, serving) in zip(xs, envs, ws, core_metrics(xs, envs, ws, delay)):
            add("predictive", m, serving, x, env, w)
        for c in costs:
            for m, _ in core_metrics(xs, envs, ws, delay, OnlineConfig(under_cost=c)):
                curve[f"predictive@{c:g}"][0] += m["under_minutes"]
                curve[f"predictive@{c:g}"][1] += m["replica_minutes"]
        per_trace[name] = {"series": n_picked, "of": n_file, "policies": tot, "curve": curve}
        print(f"  {name}: {len(xs)} series done", file=sys.stderr, flush=True)
    return per_trace


def interp_on_curve(xq: float, xs: list[float], ys: list[float]) -> tuple[float, str]:
    """y of a piecewise-linear curve through (xs, ys) at xq; beyond its ends the end's y, marked "<" / ">"
    (xq below / above every x)."""
    order = np.argsort(xs)
    x, y = np.asarray(xs, float)[order], np.asarray(ys, float)[order]
    if xq < x[0]:
        return float(y[0]), "<"
    if xq > x[-1]:
        return float(y[-1]), ">"
    return float(np.interp(xq, x, y)), ""


def frontier(pred_under: float, pred_rm: float, curve: dict, kind: str, targets: list[float]) -> dict:
    """Predictive vs the baseline's curve over target utilisations: replica-minutes ratio at equal misses,
    misses ratio at equal replica-minutes."""
    under = [curve[f"{kind}@{u:g}"][0] for u in targets]
    rm = [curve[f"{kind}@{u:g}"][1] for u in targets]
    rm_at, side_u = interp_on_curve(pred_under, under, rm)
    under_at, side_r = interp_on_curve(pred_rm, rm, under)
    # Beyond the curve's ends the ratio is a bound: fewer misses than its safest point means the baseline
    # would need more than that point's replica-minutes (the ratio is at most the one printed, "<"); fewer
    # replica-minutes than its cheapest point means it would miss more than there ("<" again).
    return {"rm_ratio_at_equal_under": pred_rm / rm_at if rm_at else None,
            "rm_bound": side_u,
            "under_ratio_at_equal_rm": pred_under / under_at if under_at else None,
            "under_bound": side_r}


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
    x = s.counts[-14 * 1440 :].astype(np.float64)
    start = len(x) - 3 * 1440 + 20 * 60 - 240  # 20:00 trace-local 3 days before the end
    end = start + 120
    cap = float(np.percentile(x, 95)) / 10
    x[start:end] *= 30.0
    events = [Event(start, end, 30.0)]
    env, w, res = replay(x, ["hpa", "oracle"], capacity=cap, startup_delay=delay, events=events)
    served = {p: r.serving for p, r in res.items()}
    served["predictive"] = core_metrics([x], [env], [w], delay, events=[events])[0][1]
    out = {}
    for p, sv in served.items():
        need = np.ceil(x[start:end] / cap - 1e-9)
        sv = sv[start:end]
        out[p] = {"under_minutes_in_event": int((sv < need).sum()), "first_minute_ok": bool(sv[0] >= need[0]),
                  "replica_min_in_event": float(sv.sum())}
    return out


def plot(path: Path, rows: dict, pooled_curve: dict, agg: dict, targets: list[float], costs: list[float]) -> None:
    """Under-provisioned minutes against replica-minutes (x oracle): HPA's and KPA's curves over the target
    utilisation, predictive's point (and curve over `costs`), pooled and per trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("pooled", pooled_curve, agg)] + [(n, v["curve"], v["raw"]) for n, v in rows.items()]
    cols = 4
    fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols, figsize=(4.2 * cols, 3.4 * math.ceil(len(panels) / cols)))
    for ax, (name, curve, raw) in zip(axes.flat, panels):
        o = raw["oracle"]["replica_minutes"] or 1.0
        for kind, style in (("hpa", "o-"), ("kpa", "s--")):
            pts = [curve[f"{kind}@{u:g}"] for u in targets]
            ax.plot([r / o for _, r in pts], [u for u, _ in pts], style, ms=3, label=f"{kind.upper()} target {targets[0]:g}..{targets[-1]:g}")
        pc = sorted([curve[f"predictive@{c:g}"] for c in costs] + [[raw["predictive"]["under_minutes"], raw["predictive"]["replica_minutes"]]],
                    key=lambda p: p[1])
        ax.plot([r / o for _, r in pc], [u for u, _ in pc], "r^-", ms=5, label="mpcloud predictive")
        ax.set_title(name[:40], fontsize=8)
        ax.set_xlabel("replica-minutes / oracle", fontsize=7)
        ax.set_ylabel("under-provisioned minutes", fontsize=7)
        ax.set_yscale("symlog", linthresh=10)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", default=None)
    ap.add_argument("--delay", type=int, default=2)
    ap.add_argument("--max-series", type=int, default=12)
    ap.add_argument("--max-minutes", type=int, default=20_000)
    ap.add_argument("--targets", default="0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="HPA / KPA target utilisations")
    ap.add_argument("--costs", default="", help="extra predictive points: under_cost values (each a full run)")
    ap.add_argument("--png", default=str(Path(__file__).resolve().parents[1] / "docs" / "scaling-frontier.png"))
    a = ap.parse_args()
    tdir = traces_dir(a.traces)
    tu = [float(v) for v in a.targets.split(",")]
    costs = [float(v) for v in a.costs.split(",") if v]
    t0 = time.perf_counter()
    per_trace = run_traces(tdir, a.delay, a.max_series, a.max_minutes, tu, costs)
    print(f"traces: {tdir}  D = {a.delay} min  C = p95/10 per series  subset: <= {a.max_series} busiest series per file,"
          f" last {a.max_minutes} minutes each")
    hdr = f"{'trace':44s} {'ser':>7s} | " + " | ".join(f"{p:>22s}" for p in POLICIES if p != "oracle")
    print(hdr)
    print(f"{'':44s} {'':>7s} | " + " | ".join(f"{'under-min  x-oracle':>22s}" for p in POLICIES if p != "oracle"))
    agg = {p: dict.fromkeys(KEYS + HALF_KEYS, 0.0) | {"unserved": 0.0, "demand": 0.0} for p in POLICIES}
    pooled_curve: dict[str, list[float]] = {}
    rows = {}
    for name, tr in per_trace.items():
        r = ratios(tr["policies"])
        rows[name] = {"series": tr["series"], "of": tr["of"], "policies": r, "curve": tr["curve"], "raw": tr["policies"]}
        cells = " | ".join(f"{r[p]['under_min']:>9d} {r[p]['x_oracle']:>9.2f}  " for p in POLICIES if p != "oracle")
        print(f"{name[:44]:44s} {tr['series']:>3d}/{tr['of']:<3d} | {cells}")
        for p in POLICIES:
            for k in agg[p]:
                agg[p][k] += tr["policies"][p][k]
        for k, (u, rm) in tr["curve"].items():
            pc = pooled_curve.setdefault(k, [0.0, 0.0])
            pc[0], pc[1] = pc[0] + u, pc[1] + rm
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

    # Frontier: predictive against HPA's / KPA's curves over the target utilisation.
    print(f"\nfrontier (HPA / KPA at target utilisation {a.targets}): predictive's replica-minutes / theirs at equal "
          "under-provisioned minutes, and under-provisioned minutes / theirs at equal replica-minutes")
    print(f"{'trace':44s} | {'rm @ equal under: HPA':>22s} {'KPA':>8s} | {'under @ equal rm: HPA':>22s} {'KPA':>8s}")
    front = {}
    for name, raw, curve in [("POOLED", agg, pooled_curve)] + [(n, v["raw"], v["curve"]) for n, v in rows.items()]:
        pu, prm = raw["predictive"]["under_minutes"], raw["predictive"]["replica_minutes"]
        f = {k: frontier(pu, prm, curve, k, tu) for k in ("hpa", "kpa")}
        front[name] = f

        def cell(d, key, bound):
            return f"{d[bound]}{d[key]:.3f}" if d[key] is not None else "n/a"

        print(f"{name[:44]:44s} | {cell(f['hpa'], 'rm_ratio_at_equal_under', 'rm_bound'):>22s} "
              f"{cell(f['kpa'], 'rm_ratio_at_equal_under', 'rm_bound'):>8s} | "
              f"{cell(f['hpa'], 'under_ratio_at_equal_rm', 'under_bound'):>22s} "
              f"{cell(f['kpa'], 'under_ratio_at_equal_rm', 'under_bound'):>8s}")
    above = [n for n, v in rows.items() if front[n]["hpa"]["rm_ratio_at_equal_under"] is not None
             and front[n]["hpa"]["rm_ratio_at_equal_under"] > 1.0 and front[n]["hpa"]["rm_bound"] != "<"]
    print("traces where predictive lies above HPA's curve (more replica-minutes at equal misses):", above or "none")
    ev = event_scenario(tdir, a.delay)
    print("event scenario (NASA, 30x for 120 min, declared ahead):", json.dumps(ev))
    if a.png:
        plot(Path(a.png), rows, pooled_curve, agg, tu, costs)
        print(f"frontier plot: {a.png}")
    elapsed = time.perf_counter() - t0
    for v in rows.values():
        v.pop("raw")
    print(json.dumps({"bench": "scaling", "command": " ".join(["python", *sys.argv]), "delay": a.delay,
                      "elapsed_s": round(elapsed, 1), "aggregate": ra, "summary": summary, "frontier": front,
                      "pooled_curve": pooled_curve, "traces_above_hpa_curve": above, "event": ev, "traces": rows},
                     separators=(",", ":")))


if __name__ == "__main__":
    main()
