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
history. The policy is the one the replay benchmark measures (`predictors.replay.PredictivePolicy`):
one `predictors.online.OnlineForecaster` holds every predictive app as a row (each minute is observed
for all rows at once; per-row model choice, bands and the hourly refits are batched), and a
`predictors.policy.PredictiveDecider` per app turns its bands into replicas (max of forecast, reactive,
event, panic, bounds, with stabilisation and step limits). `tests/unit/test_scaling_equivalence.py`
checks that, on the same trace, this core's decisions equal the replay's minute by minute.

Warm-up. An app's forecaster row is loaded from the history matrix (the same per-minute updates,
replayed for those rows) once its history is in -- when it is added, and again when a refill brought
minutes of its past -- in chunks while the tick's `load_seconds` last; its model is then selected (hourly
per app, most overdue first, while the tick's `select_seconds` last: 10,000 apps' refits spread over the
hour instead of stalling one tick). Until both happened the app is scaled reactively and ScalingDegraded
says so (`WarmingUp`, with how many apps forecast already).

History is what is known, not what was asked for. A minute is known once an answer had a sample for it;
a failed query or a short answer (Prometheus restarting, replaying its WAL, backfilled later) never
removes a known minute, and the minutes still missing are asked again ("refill", at most
at most `refill_points` points per group and tick -- a small group's whole window at once, a chunk of a
few hundred minutes for 10,000 apps -- newest first, so a cold start does not block a tick):
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

from predictors.online import OnlineConfig, OnlineForecaster
from predictors.policy import Event, PolicyConfig, PredictiveDecider

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
    history_minutes: int = 2880  # 2 days loaded; the forecaster keeps max(this, its 3-day backtest window)
    startup_delay: int = 2  # minutes from a scale-up request until the new pods serve
    event_lead: int = 5  # extra minutes of pre-scaling before a declared event
    overlap: int = 3  # minutes re-read every tick (late scrapes, rate windows)
    min_history: int = 120  # minutes of data before a forecast is trusted
    # Warm-up and refits are bounded per tick so that no tick waits for all apps: rows are loaded from history
    # in chunks of `load_chunk` while the tick has spent less than `load_seconds` on it, and model selections
    # (hourly per app, most overdue first) run while less than `select_seconds` went into them; the first
    # `min_selects` due ones always run (so a handful of apps is never held back by a slow machine).
    load_chunk: int = 250
    load_seconds: float = 3.0
    select_seconds: float = 5.0
    min_selects: int = 16
    online: OnlineConfig = field(default_factory=OnlineConfig)
    chunk_points: int = 720  # steps per range query when loading history
    # Missing minutes are asked for in at most `refill_points` points (minutes x apps) per group and tick:
    # `refill_chunks` chunks of `chunk_points` minutes or more for small groups, one shorter chunk for large
    # ones (10,000 apps: 200 minutes a tick), so a cold start never waits for the whole window
    # (0: `refill_chunks` chunks whatever the group's size).
    refill_chunks: int = 2
    refill_points: int = 2_000_000
    refill_minutes: int = 10  # first retry of minutes still missing; doubles while nothing new turns up
    refill_max_minutes: int = 1440


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
    decider: PredictiveDecider
    down_window: int
    ups: deque = field(default_factory=lambda: deque(maxlen=1))
    loaded: bool = False  # its forecaster row holds its history


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
        self.fc: OnlineForecaster | None = None  # one row per history row (predictive apps' rows are used)
        self.timings: dict[str, float] = {}
        self.counts: dict[str, int] = {}  # forecaster rows loaded / models selected this tick, apps not forecasting

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

    def _missing_spans(self, keys: set[tuple[str, str]], lo: int, hi: int, size: int) -> list[tuple[int, int]]:
        """Per chunk of [lo, hi) (newest first): the span from its first to its last minute that some
        app of the group does not know yet. Spans without a missing minute are not asked for."""
        h = self.history
        rows = [h.rows[k] for k in keys]
        a0, b0 = max(h.col(lo), 0), max(h.col(hi), 0)
        missing = ~np.isfinite(h.X[rows, a0:b0]).all(axis=0)
        spans = []
        for b in range(b0, a0, -size):
            a = max(a0, b - size)
            idx = np.flatnonzero(missing[a - a0 : b - a0])
            if len(idx):
                spans.append((lo + a - a0 + int(idx[0]), lo + a - a0 + int(idx[-1]) + 1))
        return spans

    def _refill(self, query: str, keys: set[tuple[str, str]], single: tuple | None, lo: int, hi: int,
                rf: _Refill) -> tuple[bool, bool]:
        """Ask for the group's missing minutes in [lo, hi), at most `refill_chunks` queries, going on
        below where the last tick stopped. Returns (something new became known, the pass is complete)."""
        s, n = self.s, max(1, len(keys))
        if not s.refill_points:
            size, chunks = s.chunk_points, s.refill_chunks
        elif n * s.chunk_points > s.refill_points:  # a large group: shorter chunks, one a tick
            size, chunks = max(30, s.refill_points // n), 1
        else:
            size, chunks = s.chunk_points, max(s.refill_chunks, s.refill_points // (s.chunk_points * n))
        spans = self._missing_spans(keys, lo, hi if rf.below is None else min(hi, rf.below), size)
        found = False
        for a, b in spans[:chunks]:
            for key, n in self._fetch(query, a, b, keys, single, fill_only=True).items():
                if n:
                    found = True
                    self.grown.add(key)
                    self.seen.add(key)
            rf.below = a
        if len(spans) > chunks:
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

    # ------------------------------------------------------------------ forecaster
    def _forecaster(self, m: int) -> OnlineForecaster:
        """The forecaster, caught up to minute m: the minutes since the last tick observed for every row."""
        s, h = self.s, self.history
        fc = self.fc
        if fc is None or m - fc.now > s.history_minutes or m < fc.now:  # first tick, or away too long: start over
            fc = self.fc = OnlineForecaster(0, s.startup_delay + 1, s.online, first=m - s.history_minutes, now=m,
                                            memory=s.history_minutes)
            for st in self.states.values():
                st.loaded = False
        used = max(h.rows.values(), default=-1) + 1  # rows are handed out lowest first
        if fc.n_rows < used:  # grow by a quarter at least: apps added one by one do not copy it every tick
            fc.add_rows(max(used - fc.n_rows, fc.n_rows // 4))
        while fc.now < m:
            fc.observe(h.X[: fc.n_rows, h.col(fc.now)] if len(h.X) >= fc.n_rows else
                       np.concatenate([h.X[:, h.col(fc.now)], np.full(fc.n_rows - len(h.X), np.nan, np.float32)]))
        return fc

    def _events(self, a: AppInput) -> tuple[Event, ...]:
        t = self.s.tick_seconds
        return tuple(Event(int(math.floor(st_ / t)), int(math.ceil(en / t)), mul) for st_, en, mul in a.events)

    def _load(self, fc: OnlineForecaster, apps: list[AppInput], rows: np.ndarray, idx: list[int],
              failed: dict[int, str]) -> None:
        """Load these apps' forecaster rows from their history, from their first known minute."""
        if not idx:
            return
        X = self.history.X[rows[idx]]
        known = np.isfinite(X).any(axis=0)
        first = int(np.argmax(known)) if known.any() else X.shape[1]
        try:
            fc.load(rows[idx], X[:, first:])
        except Exception as exc:  # noqa: BLE001 - these apps scale reactively and say why
            log.warning("loading the forecaster of %d apps failed: %s", len(idx), exc)
            for i in idx:
                failed[i] = f"loading history into the forecaster failed: {str(exc)[:200]}"
            return
        for i in idx:
            self._state(apps[i]).loaded = True

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
        t1 = _time.perf_counter()

        rows = np.array([self.history.rows[a.key] for a in apps], dtype=np.int64)
        X = self.history.X[rows] if len(rows) else np.zeros((0, s.history_minutes), np.float32)
        have = np.isfinite(X).sum(axis=1) if len(rows) else np.zeros(0)  # known minutes, whole window
        fc = self._forecaster(m)
        failed: dict[int, str] = {}
        pending, active = [], []
        for i, a in enumerate(apps):
            st = self._state(a)
            q = render_query(a.query, s.tick_seconds)
            if a.mode != "predictive" or q in errors:
                continue
            r = int(rows[i])
            events = self._events(a)
            if fc.capacity[r] != a.capacity or fc.events[r] != events:
                fc.configure(r, a.capacity, events)
            if a.key in self.grown:  # a refill brought minutes of its past: load it again
                st.loaded = False
            rf = self.refills.get(q)
            if not st.loaded and (rf is None or rf.below is None):  # its history is in (no refill pass half done)
                pending.append(i)
            active.append(i)
        n_loaded = n_selected = 0
        for k in range(0, len(pending), s.load_chunk):
            if k and _time.perf_counter() - t1 >= s.load_seconds:
                break
            self._load(fc, apps, rows, pending[k : k + s.load_chunk], failed)
            n_loaded += len(pending[k : k + s.load_chunk])
        t2 = _time.perf_counter()
        # Model selections due (every refit period), most overdue first, at most `budget` a tick.
        loaded = np.zeros(fc.n_rows, np.bool_)
        loaded[[int(rows[i]) for i in active if self.states[apps[i].uid].loaded]] = True
        due = fc.due()
        due = due[loaded[due]]
        bands: dict[int, tuple] = {}
        try:
            for k, r in enumerate(due):
                if k >= s.min_selects and _time.perf_counter() - t2 >= s.select_seconds:
                    break
                fc.select([r])
                n_selected += 1
        except Exception as exc:  # noqa: BLE001 - the rows keep their last model
            log.warning("model selection failed: %s", exc)
        ready = [i for i in active if loaded[rows[i]] and fc.selected[rows[i]] and have[i] >= s.min_history
                 and i not in failed]
        t3 = _time.perf_counter()
        horizon = s.startup_delay + 1 + s.event_lead
        if ready:
            try:
                uw, up, um = fc.bands(m, horizon, rows[ready])
                m1, m2 = fc.multiplier(m - 1, rows[ready]), fc.multiplier(m - 2, rows[ready])
                for j, i in enumerate(ready):
                    if np.isfinite(uw[j]) and np.isfinite(up[j]).all() and np.isfinite(um[j]).all():
                        bands[i] = (float(uw[j]), up[j], um[j], float(m1[j]), float(m2[j]))
                    else:
                        failed[i] = "forecast is not finite"
            except Exception as exc:  # noqa: BLE001 - forecasting failed: these apps scale reactively
                log.warning("forecast failed: %s", exc)
                for i in ready:
                    failed[i] = str(exc)[:200]
        warming = f"{sum(1 for i in active if i in bands)} of {len(active)} predictive apps forecasting"
        out = []
        for i, a in enumerate(apps):
            q = render_query(a.query, s.tick_seconds)
            st = self.states[a.uid]
            waiting = None
            if a.mode == "predictive" and i not in bands and i not in failed and have[i] >= s.min_history:
                waiting = ("loading its history into the forecaster" if not st.loaded else
                           "selecting its model") + f" ({warming})"
            out.append(self._decide(a, X[i], m, bands.get(i), failed.get(i), errors.get(q), int(have[i]), now,
                                    refill_errors.get(q), waiting, fc, int(rows[i])))
        t4 = _time.perf_counter()
        self.counts = {"loaded": n_loaded, "selected": n_selected, "waiting": len(active) - len(bands)}
        self.timings = {"query": t1 - t0, "load": t2 - t1, "select": t3 - t2, "forecast": t4 - t3, "total": t4 - t0}
        return out

    def _state(self, a: AppInput) -> _AppState:
        st = self.states.get(a.uid)
        if st is None or st.down_window != a.down_window:
            st = _AppState(PredictiveDecider(PolicyConfig(capacity=a.capacity, down_window=a.down_window)),
                           a.down_window, loaded=st.loaded if st else False)
            self.states[a.uid] = st
        return st

    def _decide(self, a: AppInput, x: np.ndarray, m: int, band: tuple | None, failed: str | None,
                error: str | None, have: int, now: float, refill_error: str | None, waiting: str | None,
                fc: OnlineForecaster, row: int) -> Outcome:
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
        if band is None and a.mode == "predictive":
            degraded = (("True", "ForecastFailed", f"forecast failed ({failed}); scaling reactively") if failed else
                        ("True", "WarmingUp", f"{waiting}; scaling reactively") if waiting else
                        ("True", "InsufficientHistory",
                         f"{have} of {s.min_history} minutes of history; scaling reactively"
                         + (f" (loading history failed: {refill_error})" if refill_error else "")))
        cfg = PolicyConfig(
            capacity=a.capacity, startup_delay=s.startup_delay, min_replicas=a.min_replicas,
            max_replicas=a.max_replicas, down_window=a.down_window, max_down_step=a.down_percent / 100,
            max_up_step=max(a.up_replicas, math.ceil(current * a.up_percent / 100)), event_lead=s.event_lead,
            events=self._events(a),
        )
        st.decider.rp.cfg = cfg
        try:
            if band is not None:
                uw, up, um, m1, m2 = band
                d = st.decider.decide(m, uw, up, um, current, float(x[-1]) if np.isfinite(x[-1]) else float(last),
                                      float(prev), m1, m2)
            else:  # scheduled mode, or no forecast: plan for the last load (declared events still pre-scale)
                d = st.decider.rp.decide(m, np.full(horizon, float(last)), current, last_load=float(last),
                                         prev_load=float(prev) if np.isfinite(prev) else None)
                st.decider.last_upper = {}
        except Exception as exc:  # noqa: BLE001 - a policy failure holds this app only
            return Outcome(**base, replicas=hold, reason="hold", message=f"holding {hold} replicas: {exc}",
                           degraded=("True", "PolicyFailed", str(exc)[:300]), observed=float(last))
        replicas, reason = d.replicas, d.reason
        if band is None:  # the "forecast" was the last load: that is the reactive estimate
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
        summary = None
        if band is not None:
            uw, up = band[0], band[1]
            peak_k = int(np.argmax(up)) if up[int(np.argmax(up))] > uw else 0
            peak = max(uw, float(up[peak_k]))
            model = f"{fc.candidates[int(fc.chosen[row])]}, {('log', 'sqrt')[int(fc.transform[row])]} band"
            summary = {
                "model": f"online ({model})",
                "generatedAt": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "horizonMinutes": int(horizon),
                "peakRequestsPerMinute": round(peak, 3),
                "peakAt": datetime.fromtimestamp((m + peak_k) * s.tick_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "recommendedReplicas": int(d.estimates.get("forecast", 0)),
            }
        return Outcome(**base, replicas=int(replicas), reason=reason,
                       message=f"{reason}: {replicas} replicas (estimates: {est}; load {float(last):.1f}/min)",
                       degraded=degraded, observed=float(last), forecast=band[0] if band is not None else None,
                       summary=summary)
