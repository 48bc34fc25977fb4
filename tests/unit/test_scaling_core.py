"""The scaling loop's pure core with a fake Prometheus: timing, fallbacks, isolation between apps."""

from __future__ import annotations

import numpy as np
import pytest

from mpcloud_operator.scaling import core
from mpcloud_operator.scaling.core import DEFAULT_QUERY, AppInput, History, Scaler, Settings, from_body
from mpcloud_operator.scaling.promapi import PromError

TICK = 60.0
RAMP = 600  # minute of day


def load(minute: int) -> float:
    j = minute % 1440 - RAMP
    if 0 <= j < 5:
        return 60 + 1140 * (j + 1) / 5
    if 5 <= j < 25:
        return 1200.0
    return 60.0


class FakeProm:
    """Serves `load` (+ `offset`) for every app it knows, per query; can fail, go silent, or answer only
    the minutes from `since` on (a restarted Prometheus: the older minutes are not in its answers)."""

    def __init__(self, keys):
        self.keys = list(keys)
        self.fail: set[str] = set()
        self.fail_longer_than: int | None = None  # fail range queries of more steps than this
        self.silent_from: int | None = None
        self.since: int | None = None
        self.offset = 0.0
        self.calls: list[tuple[str, int]] = []
        self.spans: list[tuple[int, int]] = []  # minutes [first, end) asked for

    def query_range(self, query, start, end, step):
        n = int(round((end - start) / step)) + 1
        self.calls.append((query, n))
        first = int(round(start / step)) - 1  # stamp s holds minute s - 1
        self.spans.append((first, first + n))
        if any(f in query for f in self.fail) or (self.fail_longer_than is not None and n > self.fail_longer_than):
            raise PromError("connection refused")
        minutes = np.arange(n) + first
        row = np.array([load(int(m)) + self.offset for m in minutes], dtype=np.float32)
        if self.silent_from is not None:
            row[minutes >= self.silent_from] = np.nan
        if self.since is not None:
            row[minutes < self.since] = np.nan
        return [{"namespace": ns, "app": a} for ns, a in self.keys], np.tile(row, (len(self.keys), 1))


def app(name: str, mode: str = "predictive", **kw) -> AppInput:
    return AppInput("ns", name, f"uid-{name}", mode, kw.pop("query", DEFAULT_QUERY), capacity=100.0, min_replicas=1,
                    max_replicas=20, current=1, up_replicas=20, down_window=3, **kw)


def run(scaler: Scaler, apps: list[AppInput], minutes: range) -> dict[str, list[tuple[int, int, str]]]:
    out: dict[str, list] = {a.name: [] for a in apps}
    for m in minutes:
        for a, o in zip(apps, scaler.tick(apps, m * TICK + 1)):
            out[a.name].append((m, o.replicas, o.reason))
            a.current = o.replicas
    return out


def first_rise(series):
    return next(m for m, r, _ in series if r > 1)


def test_render_query_default_tick_is_plain_promql():
    q = core.render_query(DEFAULT_QUERY, 60)
    assert q == "sum by (namespace, app) (rate(mpcloud_app_requests_total[120000ms])) * 60"
    assert "[4000ms])) * 2" in core.render_query(DEFAULT_QUERY, 2)


def test_predictive_rises_before_the_ramp_reactive_after():
    day3 = 3 * 1440
    apps = [app("pred"), app("reac", mode="scheduled")]
    prom = FakeProm([a.key for a in apps])
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=3 * 1440, min_history=120))
    tl = run(s, apps, range(day3 + RAMP - 10, day3 + RAMP + 40))
    assert first_rise(tl["pred"]) <= day3 + RAMP - 2  # D = 2 minutes ahead
    assert first_rise(tl["reac"]) >= day3 + RAMP + 1
    # the calibrated band covers the plateau (12 replicas); the ramp's onset, under-forecast by the smoothed
    # daily profile, widens it: replay and operator plan the same (tests/unit/test_scaling_equivalence.py)
    assert 12 <= max(r for _, r, _ in tl["pred"]) <= 20
    assert tl["pred"][-1][1] == 1 and tl["reac"][-1][1] == 1  # scaled in after
    # one range query per tick for both apps (they share the default query), history loaded once, newest
    # chunk first; a group this small gets its whole window in the first tick (`refill_points`)
    ticks = len(range(day3 + RAMP - 10, day3 + RAMP + 40))
    assert len([c for c in prom.calls if c[1] <= 4]) == ticks
    chunks = [c[1] for c in prom.calls if c[1] > 4]
    assert chunks[:5] == [720] * 5 and len(chunks) == 6
    assert all(n <= 4 for _, n in prom.calls[7:])  # after the first tick: only the new minutes
    assert tl["pred"][0][2] == "forecast"  # forecasting from the first tick


def test_prometheus_down_holds_replicas_and_flags_the_app():
    a = app("x")
    a.current = 7
    prom = FakeProm([a.key])
    prom.fail = {"mpcloud_app_requests_total"}
    o = Scaler(prom, Settings(tick_seconds=TICK)).tick([a], 5000 * TICK)[0]
    assert (o.replicas, o.reason, o.changed) == (7, "hold", False)
    assert o.degraded[:2] == ("True", "MetricsUnavailable")


def test_no_recent_data_holds_never_drops_to_min():
    a = app("x")
    prom = FakeProm([a.key])
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=1440))
    s.tick([a], 5000 * TICK)
    a.current = 9
    prom.silent_from = 5000
    o = s.tick([a], 5003 * TICK)[0]
    assert (o.replicas, o.degraded[1]) == (9, "NoData")


def test_short_history_falls_back_to_reactive():
    a = app("x")
    prom = FakeProm([a.key])
    prom.silent_from = None
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=1440, min_history=2000))
    o = s.tick([a], (RAMP + 10) * TICK)[0]
    assert o.degraded[1] == "InsufficientHistory" and o.reason == "reactive" and o.replicas == 12


def test_one_failing_query_group_does_not_block_others():
    good, bad = app("good"), app("bad", query='sum(broken{app="bad"})')
    prom = FakeProm([good.key])
    prom.fail = {"broken"}
    outs = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=1440)).tick([good, bad], (RAMP + 10) * TICK)
    assert outs[0].degraded[0] == "False" and outs[0].replicas > 1
    assert outs[1].degraded[1] == "MetricsUnavailable" and outs[1].replicas == 1


def test_forecast_failure_for_one_app_falls_back_for_that_app_only():
    apps = [app("a"), app("b")]
    prom = FakeProm([x.key for x in apps])
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=1440, min_history=60))
    s.tick(apps, 3000 * TICK)
    s.fc.level[s.history.rows[("ns", "b")]] = np.inf  # makes b's forecast non-finite
    s.fc._points = None
    a_out, b_out = s.tick(apps, 3000 * TICK + 1)
    assert a_out.degraded[0] == "False" and a_out.summary is not None
    assert b_out.degraded[1] == "ForecastFailed" and b_out.reason in ("reactive", "bound", "stabilization")


def test_event_is_prescaled_before_its_start():
    start = 5000
    a = app("promo", mode="scheduled", events=((start * TICK, (start + 5) * TICK, 5.0),))
    prom = FakeProm([a.key])
    tl = run(Scaler(prom, Settings(tick_seconds=TICK, history_minutes=600)), [a], range(start - 12, start + 1))
    rise = first_rise(tl["promo"])
    assert rise <= start - 2 and dict((m, why) for m, _, why in tl["promo"])[rise] == "event"


def known(s: Scaler, a: AppInput) -> int:
    return int(np.isfinite(s.history.X[s.history.rows[a.key]]).sum())


def test_prometheus_outage_and_restart_keep_history_and_refill_only_the_gaps():
    """Prometheus answers -> fails -> answers only what it has since its restart -> has everything again
    (restored): the window is kept throughout, the outage minutes come back, known minutes stay."""
    a = app("x")
    prom = FakeProm([a.key])
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=1440, min_history=120, refill_minutes=5))
    M, m0 = 1440, 5000

    def tick(m):
        o = s.tick([a], m * TICK + 1)[0]
        a.current = o.replicas
        return o

    for m in range(m0, m0 + 3):  # answers
        o = tick(m)
        assert o.degraded == core.OK and o.summary is not None, o.degraded
    assert known(s, a) == M
    h, row = s.history, s.history.rows[a.key]
    before = dict(zip(range(m0 + 2 - M, m0 + 2), h.X[row].tolist()))  # minute -> value

    def value(minute):
        return float(h.X[row, h.col(minute)])

    a.current = 7
    prom.fail = {"mpcloud_app_requests_total"}
    for m in range(m0 + 3, m0 + 8):  # fails: hold, flag, keep every known minute
        o = tick(m)
        assert (o.replicas, o.degraded[:2]) == (7, ("True", "MetricsUnavailable")), o
        assert known(s, a) == M - (m - (m0 + 2))  # only the minutes since the last answer are unknown

    prom.fail, prom.since, prom.offset = set(), m0 + 7, 10000.0  # restarted: answers only from its restart on
    outage = range(m0 + 2, m0 + 7)
    for m in range(m0 + 8, m0 + 11):  # answers truncated
        o = tick(m)
        assert o.degraded == core.OK, o.degraded  # never InsufficientHistory: the known minutes count
        x = s.history.X[s.history.rows[a.key]]
        assert known(s, a) == M - len(outage)
        assert np.isnan(x[s.history.col(outage[0]) : s.history.col(outage[-1]) + 1]).all()
    # the first answer after the failure asked for the gaps at once (they were not there yet)
    assert any(lo <= outage[0] and hi > outage[-1] for lo, hi in prom.spans[-6:])
    # known minutes were not replaced: the old minutes still hold the values of before the outage
    assert all(value(k) == v for k, v in before.items() if k >= m0 + 11 - M)

    prom.since = None  # restored: the outage minutes are there again
    for m in range(m0 + 11, m0 + 11 + 2 * 5 + 1):  # recovers: the periodic refill finds them
        o = tick(m)
        assert o.degraded == core.OK, o.degraded
    assert known(s, a) == M
    x = h.X[h.rows[a.key]]
    assert all(value(k) >= 10000 for k in outage)  # the gaps: refilled
    assert all(value(k) == v for k, v in before.items() if k >= m0 + 22 - M)  # the known minutes: untouched


def test_history_that_appears_after_the_first_load_is_loaded():
    """The app is loaded before its metrics exist (not scraped yet); then Prometheus gets days of
    backfilled history and the live series: the whole past is loaded on the tick the series appears."""
    a = app("x")
    prom = FakeProm([])
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=1440, min_history=120, refill_minutes=60))
    for m in range(5000, 5003):
        o = s.tick([a], m * TICK + 1)[0]
        assert o.degraded[1] == "NoData"
    prom.keys = [a.key]
    o = s.tick([a], 5003 * TICK + 1)[0]
    assert o.degraded == core.OK and o.summary is not None, o.degraded
    assert known(s, a) == 1440


def test_backfill_under_a_live_series_is_found_by_the_periodic_refill():
    a = app("x")
    prom = FakeProm([a.key])
    prom.since = 4990  # only live data
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=1440, min_history=120, refill_minutes=4))
    for m in range(5000, 5030):
        o = s.tick([a], m * TICK + 1)[0]
        assert o.degraded[1] == "InsufficientHistory" and o.degraded[2].startswith(f"{m - 4990} of 120 minutes")
    # nothing new: the retries back off (4, 8, 16 .. minutes), they do not ask every tick
    refills = [span for span in prom.spans if span[1] - span[0] > 4]
    assert len(refills) <= 2 * 4, refills
    prom.since = None  # backfilled, no outage, nothing else tells the scaler
    outs = [s.tick([a], m * TICK + 1)[0] for m in range(5030, 5030 + 32)]
    assert outs[-1].degraded == core.OK and known(s, a) == 1440


def test_cold_load_is_spread_over_ticks_newest_first_and_the_forecast_follows():
    a = app("x")
    prom = FakeProm([a.key])
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=3 * 1440, min_history=120, refill_points=0))
    m0 = 3 * 1440 + 100
    o = s.tick([a], m0 * TICK + 1)[0]
    assert len(prom.calls) == 1 + 2 and known(s, a) == 3 + 2 * 720  # recent minutes + the 2 newest chunks
    # the tick does not wait for the rest: reactive meanwhile, and the condition says why
    assert o.degraded[:2] == ("True", "WarmingUp") and o.reason == "reactive", o.degraded
    s.tick([a], (m0 + 1) * TICK + 1)
    o = s.tick([a], (m0 + 2) * TICK + 1)[0]
    assert known(s, a) == 3 * 1440
    assert o.degraded == core.OK and o.summary is not None  # loaded once all three days were there
    row = s.history.rows[a.key]
    assert s.fc.candidates[s.fc.chosen[row]].endswith("1440")  # the daily profile, from the whole history


def test_failing_history_load_scales_reactively_and_says_why():
    a = app("x")
    prom = FakeProm([a.key])
    prom.fail_longer_than = 4  # the recent minutes answer, the history load times out
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=1440, min_history=120))
    o = s.tick([a], (RAMP + 10) * TICK)[0]
    assert o.degraded[1] == "InsufficientHistory" and "loading history failed: connection refused" in o.degraded[2]
    assert o.reason == "reactive" and o.replicas == 12


def test_history_shift_and_put():
    h = History(5)
    h.row(("a", "b"))
    h.advance(10)
    assert h.put(("a", "b"), 5, np.arange(5, dtype=np.float32)) == 5
    h.advance(12)
    assert np.isnan(h.X[0, -2:]).all() and list(h.X[0, :3]) == [2, 3, 4]
    # a short answer (NaN) never erases; a refill (fill_only) writes only into missing minutes
    assert h.put(("a", "b"), 7, np.array([np.nan, 9, 9, 9, 9], dtype=np.float32), fill_only=True) == 2
    assert list(h.X[0]) == [2, 3, 4, 9, 9]
    assert h.put(("a", "b"), 7, np.array([np.nan, 8, 8, np.nan, np.nan], dtype=np.float32)) == 0
    assert list(h.X[0]) == [2, 8, 8, 9, 9]


def test_from_body_maps_spec_and_skips_reactive():
    body = {"metadata": {"name": "x", "namespace": "ns", "uid": "u"},
            "spec": {"replicas": {"min": 2, "max": 9, "desired": 1},
                     "scaling": {"mode": "predictive", "capacityPerReplica": 100, "targetUtilization": 0.5,
                                 "scaleDown": {"stabilizationWindowSeconds": 120, "maxStepPercent": 50},
                                 "events": [{"name": "e", "start": "2030-01-01T00:00:00Z",
                                             "end": "2030-01-01T01:00:00Z", "expectedMultiplier": 3}]}},
            "status": {"desiredReplicas": 4}}
    a = from_body(body, 60)
    assert (a.capacity, a.min_replicas, a.max_replicas, a.current, a.down_window, a.down_percent) == (50, 2, 9, 4, 2, 50)
    assert a.query == DEFAULT_QUERY and a.events[0][2] == 3
    body["spec"]["scaling"]["mode"] = "reactive"
    assert from_body(body, 60) is None


@pytest.mark.parametrize("mode,has_replicas", [("reactive", True), ("predictive", False), ("scheduled", False)])
def test_deployment_replicas_owned_by_scaler_in_scaled_modes(mode, has_replicas):
    from mpcloud_operator.miniprogramapp import resources as r
    from mpcloud_operator.miniprogramapp.model import MiniProgramApp

    scaling = {"mode": mode} if mode == "reactive" else {"mode": mode, "capacityPerReplica": 10}
    app_ = MiniProgramApp.model_validate({
        "metadata": {"name": "x", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"image": "i", "ports": [{"name": "http", "containerPort": 8080}], "scaling": scaling,
                 "replicas": {"min": 1, "max": 9, "desired": 2}},
        "status": {"desiredReplicas": 5}})
    assert ("replicas" in r.deployment(app_)["spec"]) is has_replicas
    st = r.compute_status(app_, {"replicas": 6, "readyReplicas": 6, "availableReplicas": 6, "updatedReplicas": 6},
                          [], deployment_replicas=6)
    assert st["desiredReplicas"] == (2 if has_replicas else 6)
    assert r.desired_replicas(app_) == (2 if has_replicas else 5)


def test_large_group_refills_in_short_chunks_within_the_points_budget():
    """10,000 apps x 720 minutes would be 7.2M points in one tick: a large group gets one shorter chunk a
    tick instead (here 50 apps, a budget of 5,000 points: 100 minutes a tick, newest first)."""
    apps = [app(f"a{i}", mode="scheduled") for i in range(50)]
    prom = FakeProm([a.key for a in apps])
    s = Scaler(prom, Settings(tick_seconds=TICK, history_minutes=1440, refill_points=50 * 100))
    m0 = 5000
    s.tick(apps, m0 * TICK + 1)
    assert [n for _, n in prom.calls] == [3, 100] and known(s, apps[0]) == 3 + 100
    s.tick(apps, (m0 + 1) * TICK + 1)
    assert prom.spans[-1] == (m0 - 3 - 200, m0 - 3 - 100) and known(s, apps[7]) == 4 + 200
