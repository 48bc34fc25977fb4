"""The scaler's pure core: apps + Prometheus history -> one replica decision per app, per tick.

No Kubernetes here (loop.py does the I/O), so the benchmark and the unit tests drive it directly.

Time. The loop's unit is the *minute*: one tick = one minute = `tick_seconds` of wall time (60 by default).
Minute m is the wall interval [m * tick, (m + 1) * tick); the sample Prometheus returns at timestamp
(m + 1) * tick is the load of minute m (requests per minute). Everything the forecasting maths sees --
history, horizon, startup delay, event lead, the spec's stabilization windows (read as seconds / 60
minutes) -- is in these minutes. With time compression (`tick_seconds` = 60 / K) the traffic replayer
plays one trace minute per tick and backfills its history on the same compressed grid, and the default
PromQL's `{window}` / `{minute}` placeholders are rendered from the tick, so a rate per second times
`{minute}` is requests per (trace) minute. At the default tick the query is the usual `rate(..[2m]) * 60`.

Per tick: one range query per distinct PromQL (all apps using the default query share one) for the
minutes since the last tick (plus `overlap`, for late scrapes); a rolling float32 matrix keeps the
history; `predictors.batch.forecast_batch` forecasts every predictive app at once; a stateful
`predictors.policy.ReplicaPolicy` per app takes max(forecast, reactive, event, panic, bounds) with
stabilisation and step limits.

History is what is known, not what was asked for. A minute is known once an answer had a sample for it;
a failed query or a short answer (Prometheus restarting, replaying its WAL, backfilled later) never
removes a known minute, and the minutes still missing are asked again ("refill", at most
`refill_chunks` range queries per group and tick, newest first, so a cold start does not block a tick):
at once for a new app, when an app's series first appears (its metrics were not scraped yet when it was
first loaded), and after a failed query (Prometheus may have restarted); otherwise after
`refill_minutes`, doubling while nothing new turns up. A refill writes only into missing minutes.

Missing data never scales an app down: no recent sample -> hold the current replicas (`NoData`); the
query failing -> hold (`MetricsUnavailable`); too little history or a failed forecast -> reactive only
(`InsufficientHistory` / `ForecastFailed`). Each sets the ScalingDegraded condition on that app only.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

from predictors.batch import forecast_batch
from predictors.periodicity import detect_period_batch
from predictors.policy import PolicyConfig, ReplicaPolicy
from predictors.replay import Event

log = logging.getLogger("mpcloud.scaling")

DEFAULT_QUERY = "sum by (namespace, app) (rate(mpcloud_app_requests_total[{window}])) * {minute}"
SCALED_MODES = ("predictive", "scheduled")
OK = ("False", "AsExpected", "")


def render_query(query: str, tick_seconds: float) -> str:
    """Fill `{window}` (two loop minutes, as a PromQL duration) and `{minute}` (seconds per loop minute)."""
    return query.replace("{window}", f"{int(round(2 * tick_seconds * 1000))}ms").replace("{minute}", f"{tick_seconds:g}")


@dataclass
class Settings:
    tick_seconds: float = 60.0
    history_minutes: int = 2880  # 2 days: seasonal naive uses up to 3 cycles of what is there
    startup_delay: int = 2  # minutes from a scale-up request until the new pods serve
    event_lead: int = 5  # extra minutes of pre-scaling before a declared event
    quantile: float = 0.9  # forecast band planned for
    overlap: int = 3  # minutes re-read every tick (late scrapes, rate windows)
    min_history: int = 120  # minutes of data before a forecast is trusted
    period_refresh: int = 60  # minutes between period detections of an app
    chunk_points: int = 720  # steps per range query when loading history
    refill_chunks: int = 2  # range queries per group and tick for missing minutes (bounds a cold tick)
    refill_minutes: int = 10  # first retry of minutes still missing; doubles while nothing new turns up
    refill_max_minutes: int = 1440
    period_candidates: tuple[int, ...] = (30, 60, 1440, 10080)


@dataclass
class AppInput:
    """What the core needs of one MiniProgramApp (built from the object by `from_body`)."""

    namespace: str
    name: str
    uid: str
    mode: str
    query: str
    capacity: float  # requests/min per replica at target utilization
    min_replicas: int
    max_replicas: int
    current: int  # replicas now (status.desiredReplicas, else the spec's)
    up_window: int = 0  # minutes
    up_percent: int = 100
    up_replicas: int = 4
    down_window: int = 5
    down_percent: int = 100
    events: tuple[tuple[float, float, float], ...] = ()  # (start epoch s, end epoch s, multiplier)

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


def from_body(body: dict[str, Any], tick_seconds: float) -> AppInput | None:
    """AppInput of a MiniProgramApp dict, or None if the loop does not scale it."""
    spec = body.get("spec") or {}
    scaling = spec.get("scaling") or {}
    mode = scaling.get("mode", "reactive")
    if mode not in SCALED_MODES or not scaling.get("capacityPerReplica"):
        return None
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    rep = spec.get("replicas") or {}
    lo, hi = int(rep.get("min", 1)), int(rep.get("max", 10))
    status = body.get("status") or {}
    current = status.get("desiredReplicas")
    if current is None:
        current = max(lo, min(hi, int(rep.get("desired", 1))))
    up, down = scaling.get("scaleUp") or {}, scaling.get("scaleDown") or {}
    events = []
    for ev in scaling.get("events") or []:
        try:
            events.append((_epoch(ev["start"]), _epoch(ev["end"]), float(ev.get("expectedMultiplier", 1))))
        except (KeyError, ValueError):
            continue
    meta = body["metadata"]
    return AppInput(
        namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""), mode=mode,
        query=scaling.get("metricQuery") or DEFAULT_QUERY,
        capacity=float(scaling["capacityPerReplica"]) * float(scaling.get("targetUtilization", 0.7)),
        min_replicas=lo, max_replicas=hi, current=int(current),
        up_window=math.ceil(int(up.get("stabilizationWindowSeconds", 0)) / 60),
        up_percent=int(up.get("maxStepPercent", 100)), up_replicas=int(up.get("maxStepReplicas", 4)),
        down_window=max(1, math.ceil(int(down.get("stabilizationWindowSeconds", 300)) / 60)),
        down_percent=int(down.get("maxStepPercent", 100)), events=tuple(events),
    )


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@dataclass
class Outcome:
    """One app's decision this tick."""

    namespace: str
    name: str
    uid: str
    previous: int
    replicas: int
    reason: str  # forecast / reactive / event / panic / stabilization / bound / hold
    message: str
    degraded: tuple[str, str, str] = OK  # ScalingDegraded (status, reason, message)
    observed: float | None = None  # load of the last minute (requests/min)
    forecast: float | None = None  # upper band of the current minute
    summary: dict[str, Any] | None = None  # status.forecast

    @property
    def changed(self) -> bool:
        return self.replicas != self.previous


class RangeSource(Protocol):
    def query_range(self, query: str, start: float, end: float, step: float
                    ) -> tuple[list[dict[str, str]], np.ndarray]: ...


class History:
    """Per-app load history on the minute grid: a (rows, M) float32 matrix ending at minute `end` - 1."""

    def __init__(self, minutes: int) -> None:
        self.M = minutes
        self.X = np.full((0, minutes), np.nan, dtype=np.float32)
        self.rows: dict[tuple[str, str], int] = {}
        self.free: list[int] = []
        self.end: int | None = None  # column M - 1 holds minute end - 1

    def advance(self, end: int) -> None:
        if self.end is None:
            self.end = end
            return
        shift = end - self.end
        if shift <= 0:
            return
        if shift >= self.M:
            self.X[:] = np.nan
        else:
            self.X[:, :-shift] = self.X[:, shift:]
            self.X[:, -shift:] = np.nan
        self.end = end

    def row(self, key: tuple[str, str]) -> int:
        if key in self.rows:
            return self.rows[key]
        if self.free:
            r = self.free.pop()
        else:
            r = len(self.X)
            grow = max(16, len(self.X))
            self.X = np.concatenate([self.X, np.full((grow, self.M), np.nan, dtype=np.float32)])
            self.free.extend(range(len(self.X) - 1, r, -1))
        self.X[r] = np.nan
        self.rows[key] = r
        return r

    def drop(self, key: tuple[str, str]) -> None:
        r = self.rows.pop(key, None)
        if r is not None:
            self.free.append(r)

    def col(self, minute: int) -> int:
        """Column of `minute` (negative: before the window)."""
        return minute - (self.end - self.M) if self.end is not None else 0

    def put(self, key: tuple[str, str], first_minute: int, values: np.ndarray, fill_only: bool = False) -> int:
        """Write values of minutes first_minute..; returns how many missing minutes became known.

        NaN never overwrites a known minute (a short answer does not erase history); with `fill_only`
        known minutes are not touched at all (a refill only fills gaps)."""
        r = self.rows.get(key)
        if r is None or self.end is None:
            return 0
        lo = self.col(first_minute)
        a, b = max(lo, 0), min(lo + len(values), self.M)
        if a >= b:
            return 0
        seg = values[a - lo : b - lo]
        cur = self.X[r, a:b]
        missing = np.isnan(cur)
        take = ~np.isnan(seg) & (missing if fill_only else True)
        self.X[r, a:b] = np.where(take, seg, cur)
        return int((take & missing).sum())


@dataclass
class _Refill:
    """When a query group's missing minutes are asked for again."""

    due: int  # minute from which the next refill runs
    interval: int  # minutes until the one after, if it finds nothing new
    error: str = ""  # the last refill's failure ("" if it answered)
    below: int | None = None  # a refill spread over ticks goes on below this minute


@dataclass
class _AppState:
    policy: ReplicaPolicy
    down_window: int
    ups: deque = field(default_factory=lambda: deque(maxlen=1))
    last_upper: dict[int, float] = field(default_factory=dict)
    period: int = 0
    period_at: int = -(10**9)


class Scaler:
    """Stateful across ticks (history, policy windows, fetch marks); one instance per operator."""

    def __init__(self, source: RangeSource, settings: Settings | None = None) -> None:
        self.source = source
        self.s = settings or Settings()
        self.history = History(self.s.history_minutes)
        self.fetched: dict[str, int] = {}  # rendered query -> minute up to which it was fetched (exclusive)
        self.refills: dict[str, _Refill] = {}  # rendered query -> refill schedule
        self.seen: set[tuple[str, str]] = set()  # apps with at least one known minute since they were added
        self.grown: set[tuple[str, str]] = set()  # apps a refill added minutes to, this tick
        self.states: dict[str, _AppState] = {}  # by uid
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ data
    def _fetch(self, query: str, first: int, end: int, keys: set[tuple[str, str]], single: tuple | None,
               fill_only: bool = False) -> dict[tuple[str, str], int]:
        """Minutes [first, end) of `query` into the history rows of `keys`, in chunks, newest chunk first.
        Returns {key: minutes that became known}."""
        step = self.s.tick_seconds
        gained: dict[tuple[str, str], int] = {}
        for b in range(end, first, -self.s.chunk_points):
            a = max(first, b - self.s.chunk_points)
            labels, values = self.source.query_range(query, (a + 1) * step, b * step, step)
            for lab, row in zip(labels, values):
                key = (lab.get("namespace"), lab.get("app"))
                if key[0] is None or key[1] is None:
                    if single is None or len(labels) != 1:
                        continue
                    key = single
                if key in keys:
                    gained[key] = gained.get(key, 0) + self.history.put(key, a, row, fill_only)
        return gained

    def _missing_spans(self, keys: set[tuple[str, str]], lo: int, hi: int) -> list[tuple[int, int]]:
        """Per chunk of [lo, hi) (newest first): the span from its first to its last minute that some
        app of the group does not know yet. Spans without a missing minute are not asked for."""
        h = self.history
        rows = [h.rows[k] for k in keys]
        a0, b0 = max(h.col(lo), 0), max(h.col(hi), 0)
        missing = ~np.isfinite(h.X[rows, a0:b0]).all(axis=0)
        spans = []
        for b in range(b0, a0, -self.s.chunk_points):
            a = max(a0, b - self.s.chunk_points)
            idx = np.flatnonzero(missing[a - a0 : b - a0])
            if len(idx):
                spans.append((lo + a - a0 + int(idx[0]), lo + a - a0 + int(idx[-1]) + 1))
        return spans

    def _refill(self, query: str, keys: set[tuple[str, str]], single: tuple | None, lo: int, hi: int,
                rf: _Refill) -> tuple[bool, bool]:
        """Ask for the group's missing minutes in [lo, hi), at most `refill_chunks` queries, going on
        below where the last tick stopped. Returns (something new became known, the pass is complete)."""
        spans = self._missing_spans(keys, lo, hi if rf.below is None else min(hi, rf.below))
        found = False
        for a, b in spans[: self.s.refill_chunks]:
            for key, n in self._fetch(query, a, b, keys, single, fill_only=True).items():
                if n:
                    found = True
                    self.grown.add(key)
                    self.seen.add(key)
            rf.below = a
        if len(spans) > self.s.refill_chunks:
            return found, False
        rf.below = None
        return found, True

    def _refresh(self, groups: dict[str, list[AppInput]], m: int, added: set[tuple[str, str]]
                 ) -> tuple[dict[str, str], dict[str, str]]:
        """Fetch each group's new minutes, then refill what it misses when due.
        Returns ({query: error} for groups whose query failed, {query: refill error})."""
        s = self.s
        errors: dict[str, str] = {}
        M = s.history_minutes
        self.grown = set()
        for query, apps in groups.items():
            keys = {a.key for a in apps}
            single = apps[0].key if len(apps) == 1 else None
            rf = self.refills.setdefault(query, _Refill(due=m, interval=s.refill_minutes))
            if keys & added:  # a new app: load its history now
                rf.due, rf.interval, rf.below = m, s.refill_minutes, None
            first = max(self.fetched.get(query, m) - s.overlap, m - M)
            try:
                gained = self._fetch(query, first, m, keys, single)
            except Exception as exc:  # noqa: BLE001 - any failure of one group only degrades that group
                errors[query] = str(exc)[:300]
                # Prometheus may come back restarted, restored or backfilled: ask for the gaps then.
                rf.due, rf.interval, rf.below = m, s.refill_minutes, None
                continue
            self.fetched[query] = m
            appeared = {k for k, n in gained.items() if n and k not in self.seen}
            self.seen |= appeared
            if appeared:  # its metrics were not there when it was loaded: they may have a past now
                rf.due, rf.interval, rf.below = m, s.refill_minutes, None
            if m < rf.due:
                continue
            try:
                found, complete = self._refill(query, keys, single, m - M, first, rf)
            except Exception as exc:  # noqa: BLE001 - decisions go on with the history that is known
                log.warning("refilling history of %s failed: %s", query, exc)
                rf.error, rf.below = str(exc)[:300], None
                rf.due, rf.interval = m + rf.interval, min(2 * rf.interval, s.refill_max_minutes)
                continue
            rf.error = ""
            if not complete:  # more to load: go on next tick
                rf.due = m + 1
            elif found:  # the source is still changing (catching up, backfilled): look again soon
                rf.due, rf.interval = m + s.refill_minutes, s.refill_minutes
            else:
                rf.due, rf.interval = m + rf.interval, min(2 * rf.interval, s.refill_max_minutes)
        for query in set(self.refills) - set(groups):
            del self.refills[query]
            self.fetched.pop(query, None)
        return errors, {q: rf.error for q, rf in self.refills.items() if rf.error}

    # ------------------------------------------------------------------ tick
    def tick(self, apps: list[AppInput], now: float) -> list[Outcome]:
        import time as _time

        t0 = _time.perf_counter()
        s = self.s
        m = int(now // s.tick_seconds)  # current minute; history ends at minute m - 1
        self.history.advance(m)
        live = {a.key for a in apps}
        for key in list(self.history.rows):
            if key not in live:
                self.history.drop(key)
                self.seen.discard(key)
        for uid in set(self.states) - {a.uid for a in apps}:
            del self.states[uid]
        groups: dict[str, list[AppInput]] = {}
        added = live - set(self.history.rows)
        for a in apps:
            self.history.row(a.key)
            groups.setdefault(render_query(a.query, s.tick_seconds), []).append(a)
        errors, refill_errors = self._refresh(groups, m, added)
        for a in apps:  # a refill added history: detect the period again on what is known now
            if a.key in self.grown and a.uid in self.states:
                self.states[a.uid].period_at = -(10**9)
        t1 = _time.perf_counter()

        rows = np.array([self.history.rows[a.key] for a in apps], dtype=np.int64)
        X = self.history.X[rows] if len(rows) else np.zeros((0, s.history_minutes), np.float32)
        have = np.isfinite(X).sum(axis=1) if len(rows) else np.zeros(0)  # known minutes, whole window
        horizon = s.startup_delay + 1 + s.event_lead
        # Forecast every predictive app with enough history, in one batch.
        want = [i for i, a in enumerate(apps) if a.mode == "predictive" and have[i] >= s.min_history
                and render_query(a.query, s.tick_seconds) not in errors]
        uppers: dict[int, np.ndarray] = {}
        failed: dict[int, str] = {}
        if want:
            self._update_periods(apps, X, want, m)
            periods = np.array([self._state(apps[i]).period for i in want], dtype=np.int64)
            try:
                fc = forecast_batch(X[want], horizon, (s.quantile,), periods)
                band = fc.quantiles[s.quantile]
                for j, i in enumerate(want):
                    uppers[i] = band[j]
            except Exception as exc:  # noqa: BLE001 - retry one by one: one bad series must not block the rest
                log.warning("batch forecast failed (%s); forecasting apps one by one", exc)
                for j, i in enumerate(want):
                    try:
                        uppers[i] = forecast_batch(X[[i]], horizon, (s.quantile,), periods[[j]]).quantiles[s.quantile][0]
                    except Exception as one:  # noqa: BLE001
                        failed[i] = str(one)[:200]
            for i in list(uppers):
                if not np.all(np.isfinite(uppers[i])):
                    failed[i] = "forecast is not finite"
                    del uppers[i]
        t2 = _time.perf_counter()
        out = []
        for i, a in enumerate(apps):
            q = render_query(a.query, s.tick_seconds)
            out.append(self._decide(a, i, X[i], m, uppers.get(i), failed.get(i), errors.get(q), int(have[i]), now,
                                    refill_errors.get(q)))
        t3 = _time.perf_counter()
        self.timings = {"query": t1 - t0, "forecast": t2 - t1, "policy": t3 - t2, "total": t3 - t0}
        return out

    def _state(self, a: AppInput) -> _AppState:
        st = self.states.get(a.uid)
        if st is None or st.down_window != a.down_window:
            st = _AppState(ReplicaPolicy(PolicyConfig(capacity=a.capacity)), a.down_window,
                           period=st.period if st else 0, period_at=st.period_at if st else -(10**9))
            st.policy.recs = deque(maxlen=a.down_window)
            self.states[a.uid] = st
        return st

    def _update_periods(self, apps: list[AppInput], X: np.ndarray, idx: list[int], m: int) -> None:
        due = [i for i in idx if m - self._state(apps[i]).period_at >= self.s.period_refresh]
        if not due:
            return
        try:
            periods = detect_period_batch(X[due], self.s.period_candidates)
        except Exception as exc:  # noqa: BLE001
            log.warning("period detection failed: %s", exc)
            periods = np.zeros(len(due), dtype=np.int64)
        for i, p in zip(due, periods):
            st = self._state(apps[i])
            st.period, st.period_at = int(p), m

    def _decide(self, a: AppInput, i: int, x: np.ndarray, m: int, upper: np.ndarray | None, failed: str | None,
                error: str | None, have: int, now: float, refill_error: str | None = None) -> Outcome:
        s = self.s
        st = self._state(a)
        current = max(0, a.current)
        hold = max(a.min_replicas, min(a.max_replicas, current))
        base = dict(namespace=a.namespace, name=a.name, uid=a.uid, previous=current)
        if error is not None:
            return Outcome(**base, replicas=hold, reason="hold" if hold == current else "bound",
                           message=f"holding {hold} replicas: metrics unavailable",
                           degraded=("True", "MetricsUnavailable", f"Prometheus query failed: {error}"))
        last = x[-1] if np.isfinite(x[-1]) else (x[-2] if np.isfinite(x[-2]) else np.nan)
        if not np.isfinite(last):
            return Outcome(**base, replicas=hold, reason="hold" if hold == current else "bound",
                           message=f"holding {hold} replicas: no recent samples",
                           degraded=("True", "NoData", "the metric query returned no recent samples for this app"))
        prev = x[-2] if np.isfinite(x[-1]) and np.isfinite(x[-2]) else np.nan
        horizon = s.startup_delay + 1 + s.event_lead
        degraded = OK
        used_forecast = upper is not None
        if upper is None:  # scheduled mode, or the forecast is unavailable: plan for the last load
            upper = np.full(horizon, float(last), dtype=np.float64)
            if a.mode == "predictive":
                degraded = (("True", "ForecastFailed", f"forecast failed ({failed}); scaling reactively") if failed else
                            ("True", "InsufficientHistory",
                             f"{have} of {s.min_history} minutes of history; scaling reactively"
                             + (f" (loading history failed: {refill_error})" if refill_error else "")))
        cfg = PolicyConfig(
            capacity=a.capacity, startup_delay=s.startup_delay, min_replicas=a.min_replicas,
            max_replicas=a.max_replicas, down_window=a.down_window, max_down_step=a.down_percent / 100,
            max_up_step=max(a.up_replicas, math.ceil(current * a.up_percent / 100)), event_lead=s.event_lead,
            events=tuple(Event(int(math.floor(st_ / s.tick_seconds)), int(math.ceil(en / s.tick_seconds)), mul)
                         for st_, en, mul in a.events),
        )
        st.policy.cfg = cfg
        try:
            d = st.policy.decide(m, upper, current, last_load=float(last),
                                 prev_load=float(prev) if np.isfinite(prev) else None,
                                 last_upper=st.last_upper.pop(m - 1, None) if used_forecast else None)
        except Exception as exc:  # noqa: BLE001 - a policy failure holds this app only
            return Outcome(**base, replicas=hold, reason="hold", message=f"holding {hold} replicas: {exc}",
                           degraded=("True", "PolicyFailed", str(exc)[:300]), observed=float(last))
        st.last_upper = {m: float(upper[0])} if used_forecast else {}
        replicas, reason = d.replicas, d.reason
        if not used_forecast:  # the "forecast" was the last load: that is the reactive estimate
            d.estimates.pop("forecast", None)
            reason = "reactive" if reason == "forecast" else reason
        # Scale-up stabilization (HPA semantics): the lowest recommendation of the window.
        if a.up_window > 0:
            if st.ups.maxlen != a.up_window + 1:
                st.ups = deque(st.ups, maxlen=a.up_window + 1)
            st.ups.append(replicas)
            if replicas > current:
                replicas = max(current, min(st.ups))
                if replicas != d.replicas:
                    reason = "stabilization"
        est = ", ".join(f"{k} {v}" for k, v in sorted(d.estimates.items()))
        peak_k = int(np.argmax(upper))
        summary = None
        if used_forecast:
            summary = {
                "model": "forecast_batch" + (f" (period {st.period} min)" if st.period else " (level+trend)"),
                "generatedAt": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "horizonMinutes": int(len(upper)),
                "peakRequestsPerMinute": round(float(upper[peak_k]), 3),
                "peakAt": datetime.fromtimestamp((m + peak_k) * s.tick_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "recommendedReplicas": int(d.estimates.get("forecast", 0)),
            }
        return Outcome(**base, replicas=int(replicas), reason=reason,
                       message=f"{reason}: {replicas} replicas (estimates: {est}; load {float(last):.1f}/min)",
                       degraded=degraded, observed=float(last), forecast=float(upper[0]) if used_forecast else None,
                       summary=summary)
