"""Load NAB-format data: `timestamp,value` CSV(.gz) files in folders, and a label-window file.

NAB's layout is `<root>/<folder>/<name>.csv[.gz]`; windows are keyed `"<folder>/<name>.csv"` with inclusive
`[start, end]` timestamps that each equal one row's timestamp. Windows are turned into inclusive row ranges here,
so the scorer works on row indices only.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f")


@dataclass
class NabFile:
    key: str                # "<folder>/<name>.csv", the label file's key
    timestamps: np.ndarray  # datetime64[s], one per row
    values: np.ndarray      # float64, one per row

    def __len__(self) -> int:
        return len(self.values)


def parse_time(text: str) -> np.datetime64:
    text = text.strip()
    for fmt in TIME_FORMATS:
        try:
            return np.datetime64(datetime.strptime(text, fmt), "s")
        except ValueError:
            continue
    raise ValueError(f"unrecognised timestamp {text!r} (expected YYYY-MM-DD HH:MM:SS[.ffffff])")


def file_key(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return rel[:-3] if rel.endswith(".gz") else rel


def read_nab_csv(path: str | Path, root: str | Path | None = None) -> NabFile:
    """One NAB file; the key is relative to `root` (default: the file's grandparent, NAB's layout)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent.parent
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode() if path.suffix == ".gz" else raw.decode()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0][:2]] != ["timestamp", "value"]:
        raise ValueError(f"{path}: expected a `timestamp,value` header, got {rows[0] if rows else 'an empty file'}")
    body = [r for r in rows[1:] if r]
    try:
        ts = np.array([parse_time(r[0]) for r in body], dtype="datetime64[s]")
        vals = np.array([float(r[1]) for r in body], dtype=float)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"{path}: non-finite values")
    return NabFile(file_key(path, root), ts, vals)


def find_nab_files(root: str | Path) -> list[Path]:
    """Every `*.csv` / `*.csv.gz` under root, sorted (stable order for scoring and threshold ties)."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".csv") or p.name.endswith(".csv.gz")))
    if not files:
        raise FileNotFoundError(f"no *.csv or *.csv.gz files under {root}")
    return files


def load_windows(path: str | Path) -> dict[str, list[tuple[np.datetime64, np.datetime64]]]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of file -> [[start, end], ...]")
    return {k: [(parse_time(a), parse_time(b)) for a, b in v] for k, v in data.items()}


def window_rows(timestamps: np.ndarray, windows) -> list[tuple[int, int]]:
    """Timestamp windows -> inclusive (first row, last row) ranges; a window must cover at least one row."""
    out = []
    for a, b in windows:
        lo = int(np.searchsorted(timestamps, a, side="left"))
        hi = int(np.searchsorted(timestamps, b, side="right")) - 1
        if hi < lo:
            raise ValueError(f"window {a} .. {b} covers no row")
        out.append((lo, hi))
    return out
