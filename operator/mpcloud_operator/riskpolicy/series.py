"""Where the traffic detector's request series come from: one rate (requests/s) per app and function per tick.

A `SeriesSource` answers `current(series)` (this tick's value of each series it knows) and `history(series, points,
step)` (past values on the tick grid, oldest first, to warm a detector up at once instead of over `warmup` live
ticks). Sources in use:
- `PrometheusRates`: apps, from the `mpcloud_app_requests_total` counter the scaler's queries read, through the
  scaler's own Prometheus client (scaling/promapi.py); it has history.
- `GatewayCounts`: functions, from the cumulative request counts the gateway pushes to the function scaler's
  /demand endpoint (in memory in the leader); no history, so a function's detector learns live.
- `ReplayFile`: a JSON file of series (`{"<Kind>/<namespace>/<name>": [rate, ...]}`), for replays and tests: each
  series' values are served in order, the first ones as history.
`Sources` routes each series to the source of its kind (a replay file, when configured, serves every kind).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from .traffic import Series

log = logging.getLogger("mpcloud.risk.traffic")

APP_RATE_QUERY = "sum by (namespace, app) (rate(mpcloud_app_requests_total[{window}]))"


class SeriesSource(Protocol):
    def current(self, series: list[Series]) -> dict[Series, float]: ...

    def history(self, series: list[Series], points: int, step: float) -> dict[Series, np.ndarray]: ...


def series_key(s: Series) -> str:
    return f"{s.kind}/{s.namespace}/{s.name}"


class PrometheusRates:
    """Apps' request rates from Prometheus: one range query per tick for every app (grouped by namespace, app)."""

    def __init__(self, prom: Any, step: float, clock: Callable[[], float] = time.time) -> None:
        self.prom, self.step, self.clock = prom, step, clock  # prom: scaling.promapi.PromClient

    @staticmethod
    def query(step: float) -> str:
        # rate() needs two scrapes in its window: at least a minute (4 scrapes at Prometheus' default 15 s)
        return APP_RATE_QUERY.replace("{window}", f"{int(max(60.0, 2 * step))}s")

    def _range(self, series: list[Series], start: float, end: float, step: float) -> dict[Series, np.ndarray]:
        wanted = {(s.namespace, s.name): s for s in series}
        labels, values = self.prom.query_range(self.query(step), start, end, step)
        out = {}
        for meta, row in zip(labels, values):
            s = wanted.get((meta.get("namespace", ""), meta.get("app", "")))
            if s is not None:
                out[s] = np.asarray(row, dtype=float)
        return out

    def current(self, series: list[Series]) -> dict[Series, float]:
        if not series:
            return {}
        step = self.step
        end = math.floor(self.clock() / step) * step
        out = {}
        for s, row in self._range(series, end - step, end, step).items():
            finite = row[np.isfinite(row)]
            if finite.size:
                out[s] = float(finite[-1])
        return out

    def history(self, series: list[Series], points: int, step: float) -> dict[Series, np.ndarray]:
        if not series or points <= 0:
            return {}
        end = math.floor(self.clock() / step) * step - step  # the tick's own value comes from current()
        return self._range(series, end - (points - 1) * step, end, step)


class GatewayCounts:
    """Functions' request rates from the gateway's cumulative counts (the function scaler's demand table)."""

    def __init__(self, demand: Callable[[], dict[tuple[str, str], Any]], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.demand, self.clock = demand, clock
        self._last: dict[Series, tuple[float, int]] = {}

    def current(self, series: list[Series]) -> dict[Series, float]:
        table, now, out = self.demand(), self.clock(), {}
        for s in series:
            d = table.get((s.namespace, s.name))
            count = int(getattr(d, "invocations", 0)) if d is not None else 0
            last = self._last.get(s)
            self._last[s] = (now, count)
            if last is not None and now > last[0]:
                out[s] = max(0, count - last[1]) / (now - last[0])
        for s in set(self._last) - set(series):
            del self._last[s]
        return out

    def history(self, series: list[Series], points: int, step: float) -> dict[Series, np.ndarray]:
        return {}  # the demand table is in memory: no past to replay


class ReplayFile:
    """Series read from a JSON file, re-read when it changes; each series' values are served in order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime: float | None = None
        self._series: dict[str, list[float]] = {}
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return
        if mtime == self._mtime:
            return
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            log.warning("traffic replay %s unreadable: %s", self.path, exc)
            return
        self._mtime = mtime
        self._series = {str(k): [float(v) for v in vs] for k, vs in (data or {}).items() if isinstance(vs, list)}

    def current(self, series: list[Series]) -> dict[Series, float]:
        with self._lock:
            self._load()
            out = {}
            for s in series:
                key = series_key(s)
                values, i = self._series.get(key), self._next.get(key, 0)
                if values is not None and i < len(values):
                    out[s] = values[i]
                    self._next[key] = i + 1
            return out

    def history(self, series: list[Series], points: int, step: float) -> dict[Series, np.ndarray]:
        with self._lock:
            self._load()
            out = {}
            for s in series:
                key = series_key(s)
                values, i = self._series.get(key), self._next.get(key, 0)
                if values is not None and i == 0 and values:
                    n = min(points, len(values) - 1)  # leave the rest to be played live
                    out[s] = np.asarray(values[:n], dtype=float)
                    self._next[key] = n
            return out


class Sources:
    """Each series from the source of its kind; kinds without a source have no series."""

    def __init__(self, by_kind: dict[str, SeriesSource], step: float) -> None:
        self.by_kind, self.step = by_kind, step

    def _split(self, series: Iterable[Series]) -> dict[str, list[Series]]:
        out: dict[str, list[Series]] = {}
        for s in series:
            if s.kind in self.by_kind:
                out.setdefault(s.kind, []).append(s)
        return out

    def current(self, series: list[Series]) -> dict[Series, float]:
        out: dict[Series, float] = {}
        for kind, group in self._split(series).items():
            try:
                out.update(self.by_kind[kind].current(group))
            except Exception as exc:  # noqa: BLE001 - one source down (Prometheus) must not stop the others
                log.warning("traffic series of %s unavailable: %s", kind, exc)
        return out

    def history(self, series: list[Series], points: int) -> dict[Series, np.ndarray]:
        out: dict[Series, np.ndarray] = {}
        for kind, group in self._split(series).items():
            try:
                out.update(self.by_kind[kind].history(group, points, self.step))
            except Exception as exc:  # noqa: BLE001 - no history: the detector learns live instead
                log.warning("traffic history of %s unavailable: %s", kind, exc)
        return out


def sources_for(runtime: Any) -> Sources:
    """The operator's sources: a replay file when configured, else Prometheus for apps (when configured) and the
    function scaler's gateway counts for functions."""
    config = runtime.config
    step = float(config.risk_traffic_seconds)
    if config.risk_traffic_replay:
        replay = ReplayFile(config.risk_traffic_replay)
        return Sources({"MiniProgramApp": replay, "CloudFunction": replay}, step)
    by_kind: dict[str, SeriesSource] = {}
    if config.prometheus_url:
        from mpcloud_operator.scaling.promapi import PromClient

        by_kind["MiniProgramApp"] = PrometheusRates(PromClient(config.prometheus_url, timeout=10), step)

    def demand() -> dict[tuple[str, str], Any]:
        scaler = runtime.services.get("cloudfunction-scaler")
        return dict(scaler.demand) if scaler is not None else {}

    by_kind["CloudFunction"] = GatewayCounts(demand)
    return Sources(by_kind, step)
