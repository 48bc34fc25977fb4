"""Abnormal-traffic detector benchmark: NAB scores on the shared files, and the per-tick cost for 10,000 series.

    nice -n 10 python bench/anomaly.py [--data DIR] [--series 10000] [--ticks 300]

Data: `../shared/anomaly/nab/` (override with --data or MPCLOUD_NAB). Prints the NAB scores per profile (threshold
re-optimised on the files, NAB's convention, and the detector's shipped threshold), a cross-validated split (files
alternately in halves A and B by sorted name: the threshold optimised on one half scores the other), and the update
latency per tick for `--series` series at 5-min (season 288) and 1-min (season 1440) ticks; then one JSON line.
About a minute.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from predictors.anomaly.detector import Detector, Params  # noqa: E402
from predictors.anomaly.nab_run import detect, load_labelled  # noqa: E402
from predictors.anomaly.nab_score import PROFILES, optimise_threshold, score_at  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("MPCLOUD_NAB", ROOT.parent / "shared" / "anomaly" / "nab"))


def nab_scores(data: Path, params: Params) -> dict:
    files, wins = load_labelled(data, data / "windows_shared.json")
    scored = list(zip(detect(files, params), wins))
    out = {"files": len(files), "windows": sum(len(w) for w in wins), "optimised": {}, "fixed": {}, "split": {}}
    for name, prof in PROFILES.items():
        best = optimise_threshold(scored, prof)
        out["optimised"][name] = {"score": round(best.score, 2), "threshold": best.threshold}
        out["fixed"][name] = round(score_at(scored, prof, params.threshold).score, 2)
    out["folders"] = {}
    for folder in sorted({f.key.split("/")[0] for f in files}):
        sub = [sw for f, sw in zip(files, scored) if f.key.split("/")[0] == folder]
        n_win = sum(len(w) for _, w in sub)
        out["folders"][folder] = {"files": len(sub), "windows": n_win,
                                  "standard_fixed": round(score_at(sub, PROFILES["standard"], params.threshold).score, 2)
                                  if n_win else None,
                                  "raw_fixed": round(score_at(sub, PROFILES["standard"], params.threshold).raw, 3)}
    halves = {"A": scored[0::2], "B": scored[1::2]}
    for h, other in (("A", "B"), ("B", "A")):
        row = {}
        for name, prof in PROFILES.items():
            tuned = optimise_threshold(halves[h], prof)
            row[name] = {"own": round(tuned.score, 2),
                         "transfer": round(score_at(halves[other], prof, tuned.threshold).score, 2),
                         "fixed": round(score_at(halves[other], prof, params.threshold).score, 2)}
        out["split"][f"tune {h} -> score {other}"] = row
    # threshold transfer over random 50/50 file splits (sha256 of "seed:key"): how much the re-optimised score owes
    # to tuning θ on the very files it scores
    transfer = []
    for seed in range(5):
        side = [int(hashlib.sha256(f"{seed}:{f.key}".encode()).hexdigest(), 16) % 2 for f in files]
        for h in (0, 1):
            tune = [sw for sw, s in zip(scored, side) if s == h]
            test = [sw for sw, s in zip(scored, side) if s != h]
            theta = optimise_threshold(tune, PROFILES["standard"]).threshold
            transfer.append({"seed": seed, "half": h,
                             "test_at_tuned": round(score_at(test, PROFILES["standard"], theta).score, 2),
                             "test_reoptimised": round(optimise_threshold(test, PROFILES["standard"]).score, 2),
                             "test_fixed": round(score_at(test, PROFILES["standard"], params.threshold).score, 2)})
    out["random_splits"] = transfer
    return out


def latency(series: int, period: int, ticks: int, params: Params) -> dict:
    """Mean wall time of one update call over `series` series, after the season and warmup are learned."""
    rng = np.random.default_rng(0)
    det = Detector(series, period, params)
    base = 100 + 50 * rng.random(series)
    warm = period + params.warmup + 10
    phase = 2 * np.pi / max(period, 1)
    for t in range(warm):
        det.update(base * (1 + 0.3 * np.sin(phase * t)) + rng.normal(0, 1, series))
    xs = [base * (1 + 0.3 * np.sin(phase * (warm + t))) + rng.normal(0, 1, series) for t in range(ticks)]
    t0, c0 = time.perf_counter(), time.process_time()
    for x in xs:
        det.update(x)
    per_tick = (time.perf_counter() - t0) / ticks
    cpu = (time.process_time() - c0) / ticks
    return {"series": series, "period": period, "ticks": ticks, "ms_per_tick": round(1e3 * per_tick, 3),
            "cpu_ms_per_tick": round(1e3 * cpu, 3), "us_per_series": round(1e6 * per_tick / series, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--ticks", type=int, default=300)
    args = ap.parse_args()
    params = Params()
    nab = nab_scores(args.data, params)
    print(f"NAB on {nab['files']} files, {nab['windows']} windows (shipped threshold {params.threshold})")
    print(f"{'profile':20s} {'re-optimised':>12s} {'θ':>8s} {'fixed θ':>8s}")
    for name in PROFILES:
        o = nab["optimised"][name]
        print(f"{name:20s} {o['score']:12.2f} {o['threshold']:8.4f} {nab['fixed'][name]:8.2f}")
    print(f"{'folder':24s} {'files':>5s} {'windows':>7s} {'standard, fixed θ':>18s} {'raw':>8s}")
    for folder, r in nab["folders"].items():
        sc = "-" if r["standard_fixed"] is None else f"{r['standard_fixed']:.2f}"
        print(f"{folder:24s} {r['files']:5d} {r['windows']:7d} {sc:>18s} {r['raw_fixed']:8.3f}")
    print("threshold split (half A = files 0, 2, 4, ... by sorted name; B = the rest)")
    print(f"{'split':18s} {'profile':20s} {'own half':>9s} {'other, its θ':>13s} {'other, fixed θ':>15s}")
    for split, row in nab["split"].items():
        for name, r in row.items():
            print(f"{split:18s} {name:20s} {r['own']:9.2f} {r['transfer']:13.2f} {r['fixed']:15.2f}")
    rs = nab["random_splits"]
    for key in ("test_at_tuned", "test_reoptimised", "test_fixed"):
        v = sorted(r[key] for r in rs)
        print(f"random splits, standard, {key:17s} min {v[0]:6.2f}  median {v[len(v) // 2]:6.2f}  max {v[-1]:6.2f}")
    lat = [latency(args.series, period, args.ticks, params) for period in (288, 1440)]
    print(f"{'series':>7s} {'season':>7s} {'ms/tick':>8s} {'CPU ms/tick':>12s} {'µs/series':>10s}")
    for r in lat:
        print(f"{r['series']:7d} {r['period']:7d} {r['ms_per_tick']:8.2f} {r['cpu_ms_per_tick']:12.2f} "
              f"{r['us_per_series']:10.3f}")
    print(json.dumps({"bench": "anomaly", "nab": nab, "latency": lat, "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
