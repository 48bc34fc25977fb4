"""Predictive scaling live: real control plane, real Prometheus (Debian's binary), the operator process.

One time-compressed run (1 trace minute = 2 s): a synthetic trace with the same 30-minute traffic ramp
every day at minute R; 3 days of it are backfilled with promtool, then the replay plays minutes
R - 12 .. R + 40 for three apps at once:
- `pred` (mode predictive) must be scaled up at least D (= startup delay, 2) minutes before the ramp;
- `reac` (mode scheduled without events: the loop's reactive path) scales only once the load is seen;
- `promo` (mode scheduled, a declared 5x event at R - 2) is pre-scaled before the event starts.
The apps exist before the history is backfilled (their first load finds nothing): `pred` must still
forecast from the backfilled days before the ramp. Mid-plateau Prometheus is SIGKILLed: replicas stay,
ScalingDegraded=True (MetricsUnavailable); it restarts and the condition clears without passing through
InsufficientHistory (the scaler keeps its history through the outage); after the ramp both apps scale in.
Every wait is on an observable state (conditions, replicas, the operator's tick counter, the trace clock).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import datetime, timezone

import numpy as np
import pytest
from kubernetes import client

from tests.integration.conftest import free_port
from tests.integration.test_miniprogramapp import Apps, app_body, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("prometheus") is None and not os.environ.get("CI"),
                                 reason="needs Debian's prometheus package (apt-get install -y prometheus)")]

TICK = 2.0  # seconds per trace minute (speedup 30)
D = 2  # startup delay (minutes) the loop plans for
R = 600  # minute of day the ramp starts
RI = 3 * 1440 + R  # trace index of the replayed ramp (after 3 backfilled days)
BASE, PEAK, CAP = 60.0, 1200.0, 100.0  # requests/min; capacity per replica (utilization 1)
DAYS = 4


def daily_trace() -> np.ndarray:
    rng = np.random.default_rng(7)
    day = np.full(1440, BASE)
    for j in range(5):
        day[R + j] = BASE + (PEAK - BASE) * (j + 1) / 5
    day[R + 5 : R + 25] = PEAK
    for j in range(5):
        day[R + 25 + j] = PEAK - (PEAK - BASE) * (j + 1) / 5
    x = np.tile(day, DAYS)
    return np.maximum(x * rng.normal(1, 0.03, len(x)), 0).round()


def scaling(mode: str, **extra) -> dict:
    return {"mode": mode, "capacityPerReplica": CAP, "targetUtilization": 1.0,
            "scaleUp": {"maxStepReplicas": 20}, "scaleDown": {"stabilizationWindowSeconds": 180}, **extra}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(app: dict, type_: str) -> dict:
    return next((c for c in (app.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def ticks(op) -> int:
    """Scaling ticks the operator has run (its tick histogram's count)."""
    line = next(ln for ln in op.metrics().splitlines() if ln.startswith("mpcloud_scaling_tick_seconds_count"))
    return int(float(line.split()[-1]))


def scaling_env(monkeypatch, prometheus_url: str, namespace: str, lease: str) -> None:
    """Environment of an operator that scales this test's namespace on the compressed trace clock."""
    monkeypatch.setenv("MPCLOUD_PROMETHEUS_URL", prometheus_url)
    monkeypatch.setenv("MPCLOUD_SCALING_TICK_SECONDS", str(TICK))
    monkeypatch.setenv("MPCLOUD_SCALING_HISTORY_MINUTES", str(3 * 1440))
    monkeypatch.setenv("MPCLOUD_SCALING_STARTUP_DELAY_MINUTES", str(D))
    monkeypatch.setenv("MPCLOUD_LEASE_NAME", lease[:63])
    monkeypatch.setenv("MPCLOUD_NAMESPACES", namespace)


def wait_degraded(apps, op, name: str, ok, timeout: float, what: str) -> list[dict]:
    """Poll the app's ScalingDegraded condition until ok(condition); returns every distinct one seen.
    On timeout the failure names what was awaited, the conditions seen and the operator's log."""
    seen: list[dict] = []

    def check() -> bool:
        c = condition(apps.get(name), "ScalingDegraded")
        c = {k: c.get(k) for k in ("status", "reason", "message")}
        if not seen or seen[-1] != c:
            seen.append(c)
        return ok(c)

    try:
        wait_until(check, timeout=timeout, interval=0.2, what=f"{name}: {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; conditions seen: {seen}; operator log: {op.log()[-3000:]}") from exc
    return seen


def test_predictive_scales_ahead_reactive_late_event_prescaled_prometheus_outage(
        api_client, namespace, operator_factory, monkeypatch, tmp_path):
    from mpcloud_operator.devenv import prometheus
    from mpcloud_operator.devenv.traffic import start_replay

    base = tmp_path / "prometheus"
    url = prometheus.up(base, port=free_port(), scrape_interval="500ms")
    apps = Apps(api_client, namespace)
    deploy = client.AppsV1Api(api_client)
    server = None
    try:
        scaling_env(monkeypatch, url, namespace, f"scaling-{namespace}")
        op = operator_factory("scaling", own_demand_port=True).start().wait_ready()

        apps.create(app_body("pred", scaling=scaling("predictive"), replicas={"min": 1, "max": 20}))
        apps.create(app_body("reac", scaling=scaling("scheduled"), replicas={"min": 1, "max": 20}))
        for name in ("pred", "reac"):
            apps.wait_ready(name)

        start = 3 * 1440 + R - 12
        server = start_replay(daily_trace(), [(namespace, "pred"), (namespace, "reac"), (namespace, "promo")],
                              tick_seconds=TICK, start=start, history=3 * 1440, base=base)
        rp = server.replay
        # Loaded before the backfill existed: the scaler must pick the backfilled days up on its own.
        wait_degraded(apps, op, "pred", lambda c: c["status"] == "False",
                      timeout=max(1.0, rp.wall(RI - D - 2) - time.time()),
                      what="forecasting from the backfilled history before the ramp")
        ev_start, ev_end = rp.wall(start + 10), rp.wall(start + 11)  # trace minutes R - 2 .. R - 1
        apps.create(app_body("promo", replicas={"min": 1, "max": 20}, scaling=scaling(
            "scheduled", events=[{"name": "promo", "start": iso(ev_start), "end": iso(ev_end),
                                  "expectedMultiplier": 5}])))

        timeline: dict[str, list[tuple[float, int]]] = {"pred": [], "reac": [], "promo": []}
        stop = threading.Event()

        def record():
            while not stop.is_set():
                for name, series in timeline.items():
                    try:
                        reps = deploy.read_namespaced_deployment(name, namespace).spec.replicas
                    except client.ApiException:
                        continue
                    series.append((rp.position(time.time()), reps))
                time.sleep(0.25)

        recorder = threading.Thread(target=record, daemon=True)
        recorder.start()

        def first_rise(name: str, above: int = 1) -> float | None:
            return next((p for p, n in timeline[name] if n > above), None)

        # Declared event: pre-scaled before its start (5 x 60 x 1.25 -> 4 replicas).
        wait_until(lambda: time.time() > ev_start, timeout=60, interval=0.2)
        promo_rise = first_rise("promo")
        assert promo_rise is not None and rp.wall(promo_rise) < ev_start, timeline["promo"]

        # Peak plateau reached by both; then kill Prometheus mid-plateau.
        wait_until(lambda: rp.position(time.time()) > RI + 12, timeout=90, interval=0.2)
        held = {n: deploy.read_namespaced_deployment(n, namespace).spec.replicas for n in ("pred", "reac")}
        assert min(held.values()) >= 10, (held, op.log()[-2000:])
        prometheus.down(base, kill=True)
        outage = wait_degraded(apps, op, "pred", lambda c: c["status"] == "True", timeout=6 * TICK,
                               what="ScalingDegraded=True once Prometheus is down")
        assert outage[-1]["reason"] == "MetricsUnavailable", outage
        # Replicas hold through the outage: checked on every poll over 4 ticks of the operator.
        first_tick = ticks(op)

        def held_for_4_ticks() -> bool:
            now = {n: deploy.read_namespaced_deployment(n, namespace).spec.replicas for n in held}
            assert now == held, (now, held)
            return ticks(op) >= first_tick + 4

        wait_until(held_for_4_ticks, timeout=12 * TICK, interval=0.2, what="4 scaling ticks during the outage")
        prometheus.up(base)
        # After its restart Prometheus replays its WAL and needs two scrapes for a rate (NoData meanwhile);
        # the scaler kept its history, so it never falls back to InsufficientHistory.
        seen = wait_degraded(apps, op, "pred", lambda c: c["status"] == "False", timeout=15 * TICK,
                             what="ScalingDegraded=False after Prometheus returned")
        assert not [c for c in seen if c["reason"] == "InsufficientHistory"], seen

        # Scale in after the ramp (3-minute down stabilization).
        wait_until(lambda: rp.position(time.time()) > RI + 40, timeout=120, interval=0.5)
        wait_until(lambda: all(timeline[n] and timeline[n][-1][1] <= 2 for n in ("pred", "reac")),
                   timeout=15 * TICK, interval=0.5, what="both apps scaled in")
        stop.set()
        recorder.join()
        pred_rise, reac_rise = first_rise("pred"), first_rise("reac")
        print(f"\nramp at trace minute {RI}; first rise: predictive {pred_rise:.2f}, reactive {reac_rise:.2f}, "
              f"event {promo_rise:.2f} (event start {start + 10})")
        assert pred_rise is not None and int(pred_rise) <= RI - D, timeline["pred"]
        assert reac_rise is not None and int(reac_rise) >= RI, timeline["reac"]
        for name in ("pred", "reac"):
            final = timeline[name][-1][1]
            assert final <= 2, (name, timeline[name][-20:])
        pred = apps.get("pred")
        assert pred["status"]["desiredReplicas"] == timeline["pred"][-1][1]
        assert pred["status"].get("forecast", {}).get("recommendedReplicas") is not None
        assert pred["status"]["scalingReason"].split(":")[0] in ("forecast", "reactive", "stabilization", "bound")
        events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
        assert any(e.reason == "ScaledUp" and e.involved_object.name == "pred" for e in events)
        assert "mpcloud_scale_decisions_total" in op.metrics()
    finally:
        if server is not None:
            server.stop()
        prometheus.down(base)
