"""Run the online detector over a NAB-layout folder and score it with the NAB rules.

Files are streamed tick by tick, many at once: files with the same sampling step share one `Detector` (its season is
one day in rows of that step), row i of every file in the group is fed in the same `update` call. The detector
never sees labels; the windows are used only by the scorer, afterwards.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from predictors.anomaly.detector import Detector, Params
from predictors.anomaly.nab_data import NabFile, find_nab_files, load_windows, read_nab_csv, window_rows
from predictors.anomaly.nab_score import PROFILES, Result, optimise_threshold, score_at

DAY = 86400


def season_rows(timestamps: np.ndarray) -> int:
    """One day in rows of the file's typical step; 0 (no season) when the step is not a divisor-friendly fraction
    of a day or the file is too short to see two days."""
    if len(timestamps) < 3:
        return 0
    step = float(np.median(np.diff(timestamps).astype("timedelta64[s]").astype(float)))
    if step <= 0 or step > DAY / 4:
        return 0
    rows = int(round(DAY / step))
    return rows if len(timestamps) >= 2 * rows else 0


def detect(files: list[NabFile], params: Params = Params()) -> list[np.ndarray]:
    """Scores per file (same order), one vectorised detector per season length."""
    out: list[np.ndarray | None] = [None] * len(files)
    groups: dict[int, list[int]] = {}
    for i, f in enumerate(files):
        groups.setdefault(season_rows(f.timestamps), []).append(i)
    for period, idx in groups.items():
        length = max(len(files[i]) for i in idx)
        x = np.full((length, len(idx)), np.nan)
        for j, i in enumerate(idx):
            x[:len(files[i]), j] = files[i].values
        det = Detector(len(idx), period, params)
        s = np.empty_like(x)
        for t in range(length):
            s[t] = det.update(x[t])
        for j, i in enumerate(idx):
            out[i] = s[:len(files[i]), j]
    return out  # type: ignore[return-value]


def load_labelled(data_dir: str | Path, windows_file: str | Path) -> tuple[list[NabFile], list[list[tuple[int, int]]]]:
    root = Path(data_dir)
    windows = load_windows(windows_file)
    files = [read_nab_csv(p, root) for p in find_nab_files(root)]
    missing = [f.key for f in files if f.key not in windows]
    if missing:
        raise ValueError(f"{windows_file} has no windows for {len(missing)} file(s), e.g. {missing[:3]} "
                         "(keys are '<folder>/<name>.csv'; use [] for a file without anomalies)")
    return files, [window_rows(f.timestamps, windows[f.key]) for f in files]


def _result(r: Result) -> dict:
    return {"score": round(r.score, 3), "threshold": r.threshold, "raw": round(r.raw, 4)}


def score_report(scored: list[tuple[np.ndarray, list[tuple[int, int]]]], fixed: float) -> dict:
    """nab.json: re-optimised scores per profile, the same at the fixed (shipped) threshold, and details."""
    best = {name: optimise_threshold(scored, p) for name, p in PROFILES.items()}
    at_fixed = {name: score_at(scored, p, fixed) for name, p in PROFILES.items()}
    return {
        **{name: round(r.score, 3) for name, r in best.items()},
        "fixed_threshold": {**{name: round(r.score, 3) for name, r in at_fixed.items()}, "threshold": fixed},
        "details": {
            "files": len(scored),
            "windows": sum(len(w) for _, w in scored),
            "optimised": {name: _result(r) for name, r in best.items()},
            "fixed": {name: _result(r) for name, r in at_fixed.items()},
        },
    }


def run_nab(data_dir, windows_file, out_dir, params: Params = Params(), write_scores: bool = True) -> dict:
    files, wins = load_labelled(data_dir, windows_file)
    scores = detect(files, params)
    report = score_report(list(zip(scores, wins)), params.threshold)
    report["details"]["detector"] = asdict(params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nab.json").write_text(json.dumps(report, indent=2) + "\n")
    if write_scores:  # NAB-style per-file results: timestamp,value,anomaly_score
        for f, s in zip(files, scores):
            dest = out / "scores" / f.key
            dest.parent.mkdir(parents=True, exist_ok=True)
            ts = np.datetime_as_string(f.timestamps, unit="s")
            lines = [f"{t.replace('T', ' ')},{v!r},{a:.6g}" for t, v, a in zip(ts, f.values.tolist(), s.tolist())]
            dest.write_text("timestamp,value,anomaly_score\n" + "\n".join(lines) + "\n")
    return report
