"""Read the per-minute request traces (`timestamp_minute,series_id,count` CSV, optionally gzipped).

The format is the one of `../shared/traces/README.md`: long format, dense (every series has a row for
every bucket of its span), 1-minute buckets except the NAB files (5-minute steps). `load_trace` returns
one dense numpy array per series on a 1-minute grid; coarser buckets are spread evenly over their minutes
so that every consumer can reason in requests per minute.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Series:
    """One series of a trace on a dense 1-minute grid."""

    series_id: str
    start_minute: int  # timestamp_minute of counts[0] (epoch minutes or trace offset, as in the file)
    counts: np.ndarray  # float64 requests per minute, one value per minute
    step_minutes: int = 1  # bucket width in the source file

    def __len__(self) -> int:
        return len(self.counts)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def load_trace(path: str | Path, series: str | None = None) -> dict[str, Series]:
    """Load every series of a trace file (or only `series`), keyed by series id, in file order."""
    path = Path(path)
    raw: dict[str, tuple[list[int], list[float]]] = {}
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if [h.strip() for h in header[:3]] != ["timestamp_minute", "series_id", "count"]:
            raise ValueError(f"{path}: expected header timestamp_minute,series_id,count, got {header!r}")
        for row in reader:
            if not row:
                continue
            sid = row[1]
            if series is not None and sid != series:
                continue
            ts, cs = raw.setdefault(sid, ([], []))
            ts.append(int(row[0]))
            cs.append(float(row[2]) if row[2] != "" else 0.0)
    if series is not None and series not in raw:
        raise KeyError(f"{path}: no series {series!r}")
    return {sid: _to_minutes(sid, np.asarray(ts, dtype=np.int64), np.asarray(cs)) for sid, (ts, cs) in raw.items()}


def _to_minutes(series_id: str, ts: np.ndarray, counts: np.ndarray) -> Series:
    order = np.argsort(ts, kind="stable")
    ts, counts = ts[order], counts[order]
    step = int(np.min(np.diff(ts))) if len(ts) > 1 else 1
    step = max(step, 1)
    start = int(ts[0])
    n_buckets = int((ts[-1] - start) // step) + 1
    dense = np.zeros(n_buckets)
    # Missing buckets (if a file is not dense after all) count as zero traffic.
    np.add.at(dense, (ts - start) // step, counts)
    per_minute = np.repeat(dense / step, step) if step > 1 else dense
    return Series(series_id=series_id, start_minute=start, counts=per_minute.astype(np.float64), step_minutes=step)


def load_meta(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a `*_meta.csv(.gz)` file into {series_id: row}."""
    path = Path(path)
    with _open_text(path) as fh:
        return {row["series_id"]: row for row in csv.DictReader(fh)}
