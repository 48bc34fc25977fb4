"""The scaling loop in the operator: one thread, one batched tick per minute for every scaled app.

Per tick: the MiniProgramApps from the watch cache, `core.Scaler.tick` (one range query per distinct PromQL,
the online forecaster updated for every app at once), then writes only where something changed: the
Deployment's scale subresource
(server-side apply, field manager `mpcloud-scaler`), the app's status (desiredReplicas, scalingReason,
forecast, the ScalingDegraded condition), an Event per scale change, and metrics.

Apps in predictive/scheduled mode have their Deployment built without spec.replicas (like under an HPA):
`mpcloud-scaler` owns that field (see miniprogramapp/scaler.py for the hand-over without a dip).
MiniProgramApp registers this loop; it runs only in the leader (main.py starts it after the Lease is held),
with the operator's Runtime (client, drift tracker) injected.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from mpcloud_operator.config import SCALER_FIELD_MANAGER
from mpcloud_operator.kube.client import ApiException
from mpcloud_operator.api.conditions import get_condition, set_condition
from mpcloud_operator.miniprogramapp.handlers import DESIRED_REPLICAS
from mpcloud_operator.reconcile.replicas import set_replicas
from mpcloud_operator.scaling.core import AppInput, Outcome, Scaler, Settings, from_body
from mpcloud_operator.riskpolicy.findings import format_message
from mpcloud_operator.scaling.promapi import PromClient

log = logging.getLogger("mpcloud.scaling")
CONDITION = "ScalingDegraded"
KIND = "MiniProgramApp"

FORECAST = Gauge("mpcloud_forecast_requests", "Forecast load of the current minute (upper band, requests/min).",
                 ["namespace", "name"])
OBSERVED = Gauge("mpcloud_observed_requests", "Load of the last minute as the scaler read it (requests/min).",
                 ["namespace", "name"])
DECISIONS = Counter("mpcloud_scale_decisions_total", "Replica changes made by the scaler, by reason.", ["reason"])
TICK_SECONDS = Histogram("mpcloud_scaling_tick_seconds", "Duration of one scaling tick (all apps).",
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
DEGRADED = Gauge("mpcloud_scaling_degraded_apps", "Scaled apps with ScalingDegraded=True.")


def settings_from_env(**overrides: Any) -> Settings:
    s = Settings()
    for env, attr, cast in (("MPCLOUD_SCALING_TICK_SECONDS", "tick_seconds", float),
                            ("MPCLOUD_SCALING_HISTORY_MINUTES", "history_minutes", int),
                            ("MPCLOUD_SCALING_STARTUP_DELAY_MINUTES", "startup_delay", int),
                            ("MPCLOUD_SCALING_EVENT_LEAD_MINUTES", "event_lead", int),
                            ("MPCLOUD_SCALING_MIN_HISTORY_MINUTES", "min_history", int)):
        if os.environ.get(env):
            setattr(s, attr, cast(os.environ[env]))
    for k, v in overrides.items():
        if v is not None:
            setattr(s, k, v)
    return s


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ScalingLoop:
    def __init__(self, runtime: Any, prometheus_url: str, settings: Settings | None = None,
                 namespaces: list[str] | None = None, workers: int = 8) -> None:
        self.runtime = runtime
        self.settings = settings or settings_from_env()
        self.scaler = Scaler(PromClient(prometheus_url), self.settings)
        self.namespaces = namespaces or []
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="scaler")
        self.claimed: set[str] = set()  # uids whose Deployment this process has scaled at least once
        self.summary_at: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ I/O
    def list_apps(self) -> list[dict[str, Any]]:
        """Every MiniProgramApp, from the operator's watch cache (kept current by the primary watch and our own
        status writes): a LIST of 10,000 apps per tick would cost the API server tens of MB of JSON a minute
        and this process a transient of several hundred MB."""
        store = self.runtime.primaries
        bodies = (store.get(key) for key in store.keys(KIND))
        return [b for b in bodies if b is not None and (not self.namespaces or
                                                        b["metadata"].get("namespace") in self.namespaces)]

    def tick(self, now: float | None = None) -> list[Outcome]:
        started = time.monotonic()
        now = time.time() if now is None else now
        bodies = {}
        inputs: list[AppInput] = []
        for body in self.list_apps():
            a = from_body(body, self.settings.tick_seconds)
            if a is not None:
                inputs.append(a)
                bodies[a.uid] = body
        outcomes = self._guard(self.scaler.tick(inputs, now), bodies, now)
        list(self.pool.map(lambda o: self._write(o, bodies[o.uid], now), outcomes))
        DEGRADED.set(sum(1 for o in outcomes if o.degraded[0] == "True"))
        TICK_SECONDS.observe(time.monotonic() - started)
        for uid in set(self.claimed) - set(bodies):
            self.claimed.discard(uid)
            self.summary_at.pop(uid, None)
        return outcomes

    def _guard(self, outcomes: list[Outcome], bodies: dict[str, Any], now: float) -> list[Outcome]:
        """RiskPolicy's scale-in limits during promotion events (riskpolicy/guardrails.py)."""
        from mpcloud_operator.riskpolicy.guardrails import limit_scale_in
        from mpcloud_operator.riskpolicy.policies import cached_policies

        policies = cached_policies(self.runtime) if any(o.replicas < o.previous for o in outcomes) else []
        if not policies:
            return outcomes
        out, at = [], datetime.fromtimestamp(now, timezone.utc)
        for o in outcomes:
            allowed, findings = limit_scale_in(bodies[o.uid], o.previous, o.replicas, policies,
                                               self.runtime.config.lease_namespace, at)
            for f in findings:
                self.runtime.kube.post_event(bodies[o.uid], "PolicyViolation", format_message(f), "Warning")
            if allowed != o.replicas:
                o = replace(o, replicas=allowed, reason="policy", message=f"policy: {allowed} replicas "
                            f"({findings[-1].message}; scaler wanted {o.replicas})")
            out.append(o)
        return out

    def _write(self, o: Outcome, body: dict[str, Any], now: float) -> None:
        try:
            self._write_one(o, body, now)
        except Exception as exc:  # noqa: BLE001 - one app's failed write must not stop the tick
            log.warning("app %s/%s: scaling write failed: %s", o.namespace, o.name, exc)

    def _write_one(self, o: Outcome, body: dict[str, Any], now: float) -> None:
        if o.observed is not None:
            OBSERVED.labels(o.namespace, o.name).set(o.observed)
        if o.forecast is not None:
            FORECAST.labels(o.namespace, o.name).set(o.forecast)
        if o.changed or o.uid not in self.claimed:
            try:
                set_replicas(self.runtime, o.namespace, o.name, o.replicas)
            except ApiException as exc:
                if exc.status == 404:
                    return  # no Deployment yet: the reconciler creates it; next tick scales it
                raise
            self.claimed.add(o.uid)
        if o.changed:
            DECISIONS.labels(o.reason).inc()
            verb = "ScaledUp" if o.replicas > o.previous else "ScaledDown"
            self.runtime.kube.post_event(body, verb, f"replicas {o.previous} -> {o.replicas}: {o.message}")
            log.info("app %s/%s: %d -> %d (%s)", o.namespace, o.name, o.previous, o.replicas, o.message)
        DESIRED_REPLICAS.labels(o.namespace, o.name).set(o.replicas)

        old = body.get("status") or {}
        conditions = old.get("conditions") or []
        gen = body["metadata"].get("generation")
        new_conditions = set_condition(conditions, CONDITION, *o.degraded, gen, datetime.now(timezone.utc))
        old_reason = (old.get("scalingReason") or "").split(":", 1)[0]
        due = o.summary is not None and now - self.summary_at.get(o.uid, 0) >= 5 * self.settings.tick_seconds
        if not (o.changed or old.get("desiredReplicas") != o.replicas or old_reason != o.reason
                or new_conditions != conditions or due):
            return
        # Server-side apply as mpcloud-scaler: every field it owns, every time (see KubeClient.apply_status).
        status: dict[str, Any] = {"desiredReplicas": o.replicas, "scalingReason": o.message[:1024],
                                  "conditions": [get_condition(new_conditions, CONDITION)]}
        last_scale = _now() if o.changed else old.get("lastScaleTime")
        if last_scale:
            status["lastScaleTime"] = last_scale
        if o.summary is not None:
            status["forecast"] = o.summary
            self.summary_at[o.uid] = now
        elif old.get("forecast"):
            status["forecast"] = old["forecast"]
        self.runtime.kube.apply_status(body, status, manager=SCALER_FIELD_MANAGER)
        before = (get_condition(conditions, CONDITION) or {}).get("status")
        if o.degraded[0] == "True" and before != "True":
            self.runtime.kube.post_event(body, o.degraded[1], o.degraded[2], "Warning")
        elif o.degraded[0] == "False" and before == "True":
            self.runtime.kube.post_event(body, "ScalingRecovered", "metrics and forecasts are back")

    # ------------------------------------------------------------------ thread
    def run(self) -> None:
        tick = self.settings.tick_seconds
        offset = min(0.25 * tick, 5.0)  # let the scrape of the minute that just ended land
        log.info("scaling loop: tick %.3gs, history %d min, startup delay %d min", tick,
                 self.settings.history_minutes, self.settings.startup_delay)
        while not self.stop_event.is_set():
            wake = (time.time() // tick + 1) * tick + offset
            if self.stop_event.wait(max(0.0, wake - time.time())):
                break
            try:
                outcomes = self.tick()
                t = self.scaler.timings
                log.debug("tick: %d apps in %.3fs", len(outcomes), t.get("total", 0))
            except Exception:  # noqa: BLE001 - the loop survives API/Prometheus hiccups
                log.exception("scaling tick failed")

    def start(self) -> ScalingLoop:
        self.thread = threading.Thread(target=self.run, name="mpcloud-scaling", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(timeout=10)
        self.pool.shutdown(wait=False)
