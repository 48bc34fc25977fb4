"""Run keep-alive policies on a trace file, compare them with fixed-10, and draw the Pareto curve."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from predictors.keepalive.registry import make_policy
from predictors.keepalive.simulator import simulate, summarize
from predictors.traces import load_meta, load_trace

FIXED_SWEEP = (1, 2, 3, 5, 10, 20, 30, 60, 120, 240)
DEFAULT_POLICIES = ("fixed-sweep", "hybrid", "hybrid-short", "mpcloud", "never-unload", "oracle")
REFERENCE = "fixed-10"


@dataclass
class Workload:
    name: str
    series_ids: list[str]
    counts: np.ndarray  # functions × minutes, on a common minute grid
    memory_mb: np.ndarray | None  # None: no meta, waste is counted in minutes
    triggers: list[str] | None = None  # meta `trigger` per function (optional; only mpcloud reads it)

    @property
    def waste_unit(self) -> str:
        return "MB·min" if self.memory_mb is not None else "min"


def load_workload(trace: str | Path, meta: str | Path | None = None) -> Workload:
    """All series of a trace as one matrix (padded with zeros to a common grid) and, with meta, memory."""
    series = load_trace(trace)
    ids = list(series)
    start = min(s.start_minute for s in series.values())
    end = max(s.start_minute + len(s) for s in series.values())
    counts = np.zeros((len(ids), end - start))
    for i, sid in enumerate(ids):
        s = series[sid]
        counts[i, s.start_minute - start: s.start_minute - start + len(s)] = s.counts
    memory = None
    triggers = None
    if meta is not None:
        rows = load_meta(meta)
        triggers = [rows.get(sid, {}).get("trigger", "") or "" for sid in ids]
        mem = [float(rows[sid]["avg_allocated_mb"]) if sid in rows and rows[sid].get("avg_allocated_mb") else np.nan
               for sid in ids]
        memory = np.asarray(mem)
        # A function missing from the meta file weighs the median memory of the others.
        memory[np.isnan(memory)] = np.nanmedian(memory) if np.isfinite(memory).any() else 1.0
    return Workload(Path(trace).name, ids, counts, memory, triggers)


def expand(policies: list[str] | tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for p in policies:
        names = [f"fixed-{n}" for n in FIXED_SWEEP] if p == "fixed-sweep" else [p]
        out += [n for n in names if n not in out]
    if REFERENCE not in out:
        out.insert(0, REFERENCE)
    return out


def evaluate(work: Workload, policies=DEFAULT_POLICIES) -> dict:
    """Summaries per policy, with cold starts and waste also relative to fixed-10."""
    rows = []
    for name in expand(policies):
        t0 = time.perf_counter()
        res = simulate(work.counts, with_meta(make_policy(name), work.triggers), work.memory_mb)
        s = summarize(res)
        s["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(s)
    ref = next(r for r in rows if r["policy"] == REFERENCE)
    for r in rows:
        r["cold_starts_vs_fixed10"] = _ratio(r["cold_starts"], ref["cold_starts"])
        r["wasted_vs_fixed10"] = _ratio(r["wasted_mb_minutes"], ref["wasted_mb_minutes"])
    out = {"trace": work.name, "functions": len(work.series_ids), "minutes": int(work.counts.shape[1]),
           "waste_unit": work.waste_unit, "policies": rows}
    out["mpcloud_below_fixed_curve"] = below_fixed_curve(rows)
    return out


def with_meta(policy, triggers):
    """Hand the optional meta `trigger` column to a policy that reads it (mpcloud); others ignore it."""
    if triggers is not None and hasattr(policy, "triggers"):
        policy.triggers = list(triggers)
    return policy


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def below_fixed_curve(rows: list[dict], policy: str = "mpcloud") -> bool | None:
    """Is `policy` strictly below the fixed-N curve (cold starts interpolated at its waste, log waste)?"""
    fixed = sorted((r["wasted_mb_minutes"], r["cold_starts"]) for r in rows if r["policy"].startswith("fixed-"))
    me = next((r for r in rows if r["policy"] == policy), None)
    if me is None or len(fixed) < 2:
        return None
    w = np.log([max(x, 1e-9) for x, _ in fixed])
    c = [y for _, y in fixed]
    mw = np.log(max(me["wasted_mb_minutes"], 1e-9))
    if mw < w[0]:  # less waste than the shortest fixed keep-alive: below if no more cold starts either
        return bool(me["cold_starts"] <= c[0])
    return bool(me["cold_starts"] < np.interp(mw, w, c))


def pareto_plot(result: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["policies"]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    fixed = sorted((r for r in rows if r["policy"].startswith("fixed-")), key=lambda r: r["wasted_mb_minutes"])
    if fixed:
        ax.plot([r["wasted_mb_minutes"] for r in fixed], [r["cold_starts"] for r in fixed], "o-", color="0.5",
                label="fixed keep-alive N min")
        for r in fixed:
            ax.annotate(r["policy"].split("-")[1], (r["wasted_mb_minutes"], r["cold_starts"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3), color="0.4")
    markers = {"hybrid": "s", "hybrid-short": "D", "mpcloud": "*", "never-unload": "^", "oracle": "v"}
    for r in rows:
        if r["policy"].startswith("fixed-"):
            continue
        ax.plot(r["wasted_mb_minutes"], r["cold_starts"], markers.get(r["policy"], "x"),
                markersize=13 if r["policy"] == "mpcloud" else 8, label=r["policy"])
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel(f"wasted memory ({result['waste_unit']}, loaded idle)")
    ax.set_ylabel("cold starts (after each function's first invocation)")
    ax.set_title(f"Keep-alive policies: {result['trace']} ({result['functions']} functions, "
                 f"{result['minutes']} min)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(result: dict) -> str:
    head = (f"{'policy':14s} {'cold':>6s} {'rate%':>7s} {'fn>=1':>5s} {'p75fn%':>6s} "
            f"{'wasted ' + result['waste_unit']:>14s} {'cold/f10':>8s} {'waste/f10':>9s}")
    lines = [f"== {result['trace']}: {result['functions']} functions × {result['minutes']} min", head]
    for r in result["policies"]:
        lines.append(
            f"{r['policy']:14s} {r['cold_starts']:6d} {100 * r['cold_start_rate']:7.3f} "
            f"{r['functions_with_cold_start']:5d} {r['p75_function_cold_pct']:6.1f} {r['wasted_mb_minutes']:14.0f} "
            f"{_fmt(r['cold_starts_vs_fixed10']):>8s} {_fmt(r['wasted_vs_fixed10']):>9s}")
    return "\n".join(lines)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def tick_benchmark(counts: np.ndarray, memory_mb: np.ndarray | None, policy: str, n_functions: int = 10_000,
                   ticks: int = 120, seed: int = 0, triggers=None) -> dict:
    """Seconds per minute tick (decide + observe) for `n_functions` functions resampled from `counts`."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, counts.shape[0], n_functions)
    shift = rng.integers(0, counts.shape[1], n_functions)
    cols = (np.arange(ticks)[None, :] + shift[:, None]) % counts.shape[1]
    big = counts[pick[:, None], cols]
    mem = None if memory_mb is None else memory_mb[pick]
    trig = None if triggers is None else [triggers[i] for i in pick]
    res = simulate(big, with_meta(make_policy(policy), trig), mem, time_ticks=True)
    t = np.asarray(res.tick_seconds)
    return {"policy": policy, "functions": n_functions, "ticks": ticks, "mean_s": round(float(t.mean()), 5),
            "p99_s": round(float(np.percentile(t, 99)), 5), "max_s": round(float(t.max()), 5)}


def subset(work: Workload, rows=None, cols=None, name: str | None = None) -> Workload:
    """A workload restricted to some functions (`rows`) and/or minutes (`cols`); policies start cold."""
    idx = np.arange(len(work.series_ids)) if rows is None else np.asarray(rows)
    counts = work.counts[idx]
    if cols is not None:
        counts = counts[:, cols]
    return Workload(name or work.name, [work.series_ids[i] for i in idx], counts,
                    None if work.memory_mb is None else work.memory_mb[idx],
                    None if work.triggers is None else [work.triggers[i] for i in idx])


def hash_halves(series_ids: list[str], seed: int) -> np.ndarray:
    """Deterministic 50/50-ish split: bit 0 of sha256("seed:series_id")."""
    import hashlib

    return np.array([hashlib.sha256(f"{seed}:{s}".encode()).digest()[0] & 1 for s in series_ids])


def robustness(work: Workload, seeds=(0, 1, 2, 3, 4), policy: str = "mpcloud", baseline: str = "hybrid") -> list[dict]:
    """`policy` vs `baseline` on each half of `len(seeds)` random function splits and on the two time halves."""
    parts = []
    for s in seeds:
        h = hash_halves(work.series_ids, s)
        for b in (0, 1):
            parts.append((f"seed{s}-half{b}", subset(work, rows=np.flatnonzero(h == b))))
    m = work.counts.shape[1] // 2
    parts.append((f"minutes 0-{m - 1}", subset(work, cols=slice(0, m))))
    parts.append((f"minutes {m}-{work.counts.shape[1] - 1}", subset(work, cols=slice(m, None))))
    out = []
    for name, part in parts:
        res = evaluate(part, ("fixed-sweep", baseline, policy))
        pol = {r["policy"]: r for r in res["policies"]}
        me, base = pol[policy], pol[baseline]
        out.append({"split": name, "functions": len(part.series_ids), "minutes": int(part.counts.shape[1]),
                    f"{baseline}_cold": base["cold_starts"], f"{baseline}_waste": base["wasted_mb_minutes"],
                    f"{policy}_cold": me["cold_starts"], f"{policy}_waste": me["wasted_mb_minutes"],
                    "cold_ratio": _ratio(me["cold_starts"], base["cold_starts"]),
                    "waste_ratio": _ratio(me["wasted_mb_minutes"], base["wasted_mb_minutes"]),
                    "below_fixed_curve": res["mpcloud_below_fixed_curve"]})
    return out


def format_robustness(rows: list[dict], policy: str = "mpcloud", baseline: str = "hybrid") -> str:
    lines = [f"{'split':18s} {'fn':>4s} {'min':>4s} {baseline + ' cold/waste':>20s} {policy + ' cold/waste':>21s} "
             f"{'cold×':>6s} {'waste×':>6s} below-fixed"]
    for r in rows:
        lines.append(f"{r['split']:18s} {r['functions']:4d} {r['minutes']:4d} "
                     f"{r[baseline + '_cold']:8d} {r[baseline + '_waste']:11.0f} {r[policy + '_cold']:8d} "
                     f"{r[policy + '_waste']:12.0f} {_fmt(r['cold_ratio']):>6s} {_fmt(r['waste_ratio']):>6s} "
                     f"{r['below_fixed_curve']}")
    return "\n".join(lines)
