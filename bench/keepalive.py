"""Keep-alive benchmark: every function-invocation trace, all policies, plus the per-tick decision cost.

    python bench/keepalive.py [--traces DIR] [--out DIR] [--functions 10000]

Traces come from `../shared/traces/` (override with --traces or MPCLOUD_TRACES). Prints one table per
trace, the targets, the robustness splits of the Azure 2019 sample, and one final JSON line. About 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from predictors.keepalive.report import (
    evaluate,
    format_robustness,
    format_table,
    load_workload,
    pareto_plot,
    robustness,
    tick_benchmark,
)

DEFAULT_TRACES = ROOT.parent / "shared" / "traces"
# (trace file, meta file or None): the serverless function traces of ../shared/traces/README.md.
TRACES = [
    ("azure2019_fn250_shared_min480-959.csv.gz", "azure2019_fn250_shared_meta.csv.gz"),
    ("azure2019_fn5_d01-d04.csv.gz", None),
    ("azure2021_head_fn49_min0-107.csv.gz", None),
    ("huawei_fn3_day0-3.csv.gz", None),
    ("alibaba_genai_lora_requests_2024-11-15_11-26.csv.gz", None),
]
POLICIES = ("fixed-sweep", "hybrid", "hybrid-short", "mpcloud", "never-unload", "oracle")
MAIN = TRACES[0][0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=Path(os.environ.get("MPCLOUD_TRACES", DEFAULT_TRACES)))
    ap.add_argument("--out", type=Path, default=None, help="also write <trace>.json and <trace>.png here")
    ap.add_argument("--functions", type=int, default=10_000, help="functions in the per-tick timing")
    ap.add_argument("--ticks", type=int, default=120)
    args = ap.parse_args()
    t_start = time.perf_counter()
    summary: dict = {"bench": "keepalive", "traces": {}}
    main_result = None
    main_work = None
    for trace, meta in TRACES:
        path = args.traces / trace
        if not path.exists():
            print(f"skip {trace}: not found in {args.traces}", file=sys.stderr)
            continue
        work = load_workload(path, args.traces / meta if meta else None)
        result = evaluate(work, POLICIES)
        print(format_table(result), "\n")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            stem = trace.split(".")[0]
            (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
            pareto_plot(result, args.out / f"{stem}.png")
        summary["traces"][trace] = {
            "functions": result["functions"], "minutes": result["minutes"], "waste_unit": result["waste_unit"],
            "mpcloud_below_fixed_curve": result["mpcloud_below_fixed_curve"],
            "policies": {r["policy"]: {k: r[k] for k in ("cold_starts", "wasted_mb_minutes", "functions_with_cold_start",
                                                          "p75_function_cold_pct", "cold_starts_vs_fixed10",
                                                          "wasted_vs_fixed10")}
                         for r in result["policies"] if r["policy"] not in ("fixed-1", "fixed-2", "fixed-3")},
        }
        if trace == MAIN:
            main_result, main_work = result, work
    if main_result is not None:
        pol = {r["policy"]: r for r in main_result["policies"]}
        mp, hy = pol["mpcloud"], pol["hybrid"]
        cold_ratio = mp["cold_starts"] / hy["cold_starts"] if hy["cold_starts"] else None
        waste_ratio = mp["wasted_mb_minutes"] / hy["wasted_mb_minutes"] if hy["wasted_mb_minutes"] else None
        ticks = [tick_benchmark(main_work.counts, main_work.memory_mb, p, args.functions, args.ticks,
                                triggers=main_work.triggers) for p in ("hybrid", "mpcloud")]
        rob = robustness(main_work)
        print(f"robustness on {MAIN}: 5 random 50/50 function splits (sha256 of seed:series_id) and the two "
              f"time halves (policies start cold in each)")
        print(format_robustness(rob), "\n")
        ok = [r["cold_ratio"] is not None and r["cold_ratio"] <= 0.5 and r["waste_ratio"] <= 1.0
              and r["below_fixed_curve"] for r in rob]
        summary["robustness"] = {"splits": rob, "all_targets_met": bool(all(ok)),
                                 "worst_cold_ratio": max(r["cold_ratio"] for r in rob),
                                 "worst_waste_ratio": max(r["waste_ratio"] for r in rob)}
        targets = {
            "cold_vs_hybrid": round(cold_ratio, 4) if cold_ratio is not None else None,
            "waste_vs_hybrid": round(waste_ratio, 4) if waste_ratio is not None else None,
            "cold_le_half_hybrid": bool(cold_ratio is not None and cold_ratio <= 0.5),
            "waste_le_hybrid": bool(waste_ratio is not None and waste_ratio <= 1.0),
            "below_fixed_curve": main_result["mpcloud_below_fixed_curve"],
            "tick_max_s_10k": ticks[1]["max_s"],
            "tick_le_1s": bool(ticks[1]["max_s"] <= 1.0),
            "every_split_met": summary["robustness"]["all_targets_met"],
        }
        summary["targets"], summary["tick"] = targets, ticks
        print(f"robustness: targets met on every split: {targets['every_split_met']} (worst cold × "
              f"{summary['robustness']['worst_cold_ratio']}, worst waste × {summary['robustness']['worst_waste_ratio']})")
        print(f"targets on {MAIN}: mpcloud cold starts = {targets['cold_vs_hybrid']} × hybrid (target <= 0.5), "
              f"wasted memory = {targets['waste_vs_hybrid']} × hybrid (target <= 1), below fixed-N curve: "
              f"{targets['below_fixed_curve']}")
        for t in ticks:
            print(f"per-tick decision, {t['functions']} functions, {t['ticks']} ticks, {t['policy']}: "
                  f"mean {1000 * t['mean_s']:.1f} ms, p99 {1000 * t['p99_s']:.1f} ms, max {1000 * t['max_s']:.1f} ms")
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
