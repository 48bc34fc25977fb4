"""The function scaler: scale from zero on the gateway's push, by concurrency while busy, to zero when the
keep-alive policy says the instance is not worth keeping, and pre-warm when it expects a call.

Inputs: the gateway POSTs demand to `/demand` (as Knative's activator pushes to its autoscaler: a request that
finds no instance starts one at once, not after a scrape interval) — waiting and in-flight requests, and its
cumulative request and cold-start counters per function. Every second the scaler turns the latest demand into
replicas (`decide`); once a minute the keep-alive policies of `predictors.keepalive` (the very classes the
keep-alive benchmark scores, vectorised over all functions) see the minute's invocations and say which functions
stay warm or are pre-warmed for the next one. Replicas are written through the Deployment's scale subresource
with the scaler's field manager; invocations, cold starts and the reason go to the function's status.

Each tick also sizes the warm pools (`warmpool.WarmPools`) from the same keep-alive policies' forecast.

Demand is in memory; the keep-alive history is saved by the leader every few minutes and on a clean stop, and
restored at start (keepalive_store.py), so a restart does not send every function back to warm-after-use.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mpcloud_operator.cloudfunction.model import KIND, CloudFunction, FunctionScaling
from mpcloud_operator.cloudfunction.resources import child_name, children_name
from mpcloud_operator.config import SCALER_FIELD_MANAGER
from mpcloud_operator.health import send_json
from mpcloud_operator.reconcile.replicas import set_replicas
from mpcloud_operator.runtime import ParsedPrimaries

log = logging.getLogger("mpcloud.cloudfunction.scaler")
# In "minutes" of the scaler's clock (60 s; tests and the live keep-alive replay compress it):
SCALE_DOWN_WINDOW = 0.5  # KPA's scale-to-zero grace / a short stable window: no flapping between requests
WARM_AFTER_USE = 1.0  # the simulator's model: an invoked minute has its instance for the whole minute
STATUS_EVERY_S = 5.0
ACTIVATIONS = Counter("mpcloud_function_activations_total", "Scale-from-zero writes triggered by gateway demand.",
                      ["namespace", "function"])
ACTIVATION_SECONDS = Histogram("mpcloud_function_activation_write_seconds",
                               "From a demand push to the scale write being accepted.",
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


class DemandReport(BaseModel):
    """One gateway push for one function."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    namespace: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
    waiting: int = Field(default=0, ge=0)
    in_flight: int = Field(default=0, ge=0, alias="inFlight")
    requests: int = Field(default=0, ge=0)  # cumulative since the gateway started
    cold_starts: int = Field(default=0, ge=0, alias="coldStarts")
    pool_starts: int = Field(default=0, ge=0, alias="poolStarts")  # of cold_starts, served by a warm pool pod


@dataclass
class Demand:
    waiting: int = 0
    in_flight: int = 0
    reported_at: float = 0.0
    last_request: float | None = None
    invocations: int = 0  # routed requests seen by this scaler
    cold_starts: int = 0
    pool_starts: int = 0
    minute_requests: int = 0  # in the current minute, for the keep-alive policies
    _gateway_requests: int = 0
    _gateway_cold: int = 0
    _gateway_pool: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=64))  # (time, target) for the down window

    def update(self, report: DemandReport, now: float) -> None:
        new = report.requests - self._gateway_requests if report.requests >= self._gateway_requests else report.requests
        cold = report.cold_starts - self._gateway_cold if report.cold_starts >= self._gateway_cold else report.cold_starts
        pool = report.pool_starts - self._gateway_pool if report.pool_starts >= self._gateway_pool else report.pool_starts
        self._gateway_requests, self._gateway_cold, self._gateway_pool = report.requests, report.cold_starts, \
            report.pool_starts
        self.pool_starts += pool
        self.invocations += new
        self.cold_starts += cold
        self.minute_requests += new
        if new > 0 or report.waiting or report.in_flight:
            self.last_request = now
        self.waiting, self.in_flight, self.reported_at = report.waiting, report.in_flight, now


def policy_name(scaling: FunctionScaling) -> str:
    ka = scaling.keep_alive
    return f"fixed-{ka.fixed_minutes}" if ka.policy == "fixed" else ka.policy


class KeepAliveBank:
    """One vectorised keep-alive policy per policy name, a slot per function; stepped once a minute.

    Exactly the simulator's order: `loaded(t)` decides minute t before `observe(t, counts)` shows it."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self.policies: dict[str, Any] = {}
        self.slots: dict[str, dict[tuple[str, str], int]] = {}
        self.loaded: dict[str, np.ndarray] = {}
        self.minute: int | None = None

    def _policy(self, name: str) -> Any:
        from predictors.keepalive import make_policy

        if name not in self.policies or len(self.slots[name]) >= self.capacity_of(name):
            capacity = self.capacity if name not in self.policies else 2 * self.capacity_of(name)
            if name in self.policies:
                log.warning("keep-alive %s: %d functions, growing to %d slots (history restarts)", name,
                            len(self.slots[name]), capacity)
            policy = make_policy(name)
            policy.reset(capacity, np.ones(capacity))
            self.policies[name] = policy
            self.slots.setdefault(name, {})
            self.loaded[name] = np.zeros(capacity, dtype=bool)
            if self.minute is not None:
                self.loaded[name] = np.asarray(policy.loaded(self.minute), dtype=bool)
        return self.policies[name]

    def capacity_of(self, name: str) -> int:
        return len(self.loaded[name])

    def slot(self, name: str, key: tuple[str, str]) -> int:
        slots = self.slots.get(name)
        if slots is None or key not in slots:
            self._policy(name)
            slots = self.slots[name]
            slots[key] = len(slots)
        return slots[key]

    def step(self, minute: int, counts: dict[tuple[str, tuple[str, str]], int]) -> None:
        """Minute `minute` begins: show the previous minute's invocations, then decide this one."""
        for name, policy in self.policies.items():
            if self.minute is not None:
                row = np.zeros(self.capacity_of(name))
                for (pname, key), n in counts.items():
                    if pname == name and key in self.slots[name]:
                        row[self.slots[name][key]] = n
                policy.observe(self.minute, row)
            self.loaded[name] = np.asarray(policy.loaded(minute), dtype=bool)
        self.minute = minute

    def is_loaded(self, name: str, key: tuple[str, str]) -> bool:
        slots = self.slots.get(name) or {}
        return key in slots and bool(self.loaded[name][slots[key]])


def decide(scaling: FunctionScaling, demand: Demand | None, keep_warm: bool, now: float,
           minute_seconds: float = 60.0) -> tuple[int, str]:
    """Replicas for one function now, and why (pure)."""
    waiting = demand.waiting if demand else 0
    in_flight = demand.in_flight if demand else 0
    busy = math.ceil((waiting + in_flight) / scaling.concurrency)
    if busy:
        target, reason = busy, f"demand: {in_flight} in flight, {waiting} waiting (concurrency {scaling.concurrency})"
    elif demand and demand.last_request is not None and now - demand.last_request < WARM_AFTER_USE * minute_seconds:
        target, reason = 1, "warm after use"
    elif keep_warm:
        target, reason = 1, f"keep-alive ({scaling.keep_alive.policy}): a call is expected"
    else:
        target, reason = 0, "idle" if scaling.min_instances == 0 else "idle: minInstances"
    clamped = scaling.clamp(target)
    if clamped != target:
        reason += f"; clamped to [{scaling.min_instances}, {scaling.max_instances}]"
    return clamped, reason


def stabilized(demand: Demand, target: int, now: float, minute_seconds: float = 60.0) -> int:
    """No scale-down below the highest target of the last SCALE_DOWN_WINDOW (scale-up is immediate)."""
    demand.recent.append((now, target))
    window = SCALE_DOWN_WINDOW * minute_seconds
    return max([t for ts, t in demand.recent if now - ts <= window] + [target])


class FunctionScaler:
    """The loop registered by the CloudFunction kind (leader only); `stop()` ends it."""

    def __init__(self, runtime: Any, clock: Any = time.time, tick_seconds: float = 1.0) -> None:
        self.runtime, self.clock, self.tick_seconds = runtime, clock, tick_seconds
        self.minute_seconds = float(runtime.config.function_minute_seconds)
        self.demand: dict[tuple[str, str], Demand] = {}
        self.bank = KeepAliveBank()
        from mpcloud_operator.cloudfunction.keepalive_store import KeepAliveStore

        self.store = KeepAliveStore(runtime)
        self.reasons: dict[tuple[str, str], str] = {}
        # the tick runs every second: validate each version once, not once per tick
        self.functions = ParsedPrimaries(runtime.primaries, KIND, CloudFunction)
        self.status_written: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.schedules = Schedules(runtime.config.gateway_url)
        from mpcloud_operator.cloudfunction.warmpool import WarmPools

        self.pools = WarmPools(runtime)
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # ---------------------------------------------------------------- demand (gateway push)
    def on_demand(self, report: DemandReport) -> int:
        """Record a push; scale from zero at once when requests wait and nothing runs. Returns replicas now."""
        key = (report.namespace, report.name)
        now = self.clock()
        with self._lock:
            self.demand.setdefault(key, Demand()).update(report, now)
        if report.waiting == 0:
            return self._current(key) or 0
        fn = self._function(key)
        if fn is None:
            return 0
        current = self._current(key)
        if not current:
            started = time.monotonic()
            target = fn.spec.scaling.clamp(max(1, math.ceil(report.waiting / fn.spec.scaling.concurrency)))
            set_replicas(self.runtime, report.namespace, child_name(fn), target)
            ACTIVATIONS.labels(*key).inc()
            ACTIVATION_SECONDS.observe(time.monotonic() - started)
            self._remember_replicas(key, target)
            return target
        return current

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self.demand.pop((namespace, name), None)
        self.reasons.pop((namespace, name), None)
        self.status_written.pop((namespace, name), None)
        self.functions.forget((namespace, name))

    # ---------------------------------------------------------------- the tick
    def _function(self, key: tuple[str, str]) -> CloudFunction | None:
        return self.functions.get(key)

    def _current(self, key: tuple[str, str]) -> int | None:
        view = self.runtime.child_views.get(("Deployment", key[0], children_name(key[1])))
        return None if view is None else view.get("replicas")

    def _remember_replicas(self, key: tuple[str, str], replicas: int) -> None:
        view = self.runtime.child_views.get(("Deployment", key[0], children_name(key[1])))
        if view is not None:
            self.runtime.child_views[("Deployment", key[0], children_name(key[1]))] = {**view, "replicas": replicas}

    def tick(self) -> None:
        now = self.clock()
        minute = int(now // self.minute_seconds)
        functions = []
        for _, ns, name in self.runtime.primaries.keys(KIND):
            fn = self._function((ns, name))
            if fn is not None:
                functions.append(fn)
        if self.bank.minute != minute:
            with self._lock:
                counts = {}
                for fn in functions:
                    key = (fn.metadata.namespace, fn.metadata.name)
                    d = self.demand.get(key)
                    counts[(policy_name(fn.spec.scaling), key)] = d.minute_requests if d else 0
                    if d:
                        d.minute_requests = 0
            for fn in functions:  # give every function its slot before the policies step
                self.bank.slot(policy_name(fn.spec.scaling), (fn.metadata.namespace, fn.metadata.name))
            self.bank.step(minute, counts)
            self.store.maybe_save(self.bank)
        self.schedules.tick(functions, now)
        for fn in functions:
            try:
                self._scale(fn, now)
            except Exception as exc:  # noqa: BLE001 - one function's failure must not stop the others
                log.warning("CloudFunction %s/%s: scaling failed: %s", fn.metadata.namespace, fn.metadata.name, exc)
        self.pools.tick(now, functions, self._at_zero, lambda fn: self._expected_cold_start(fn, minute))

    def _at_zero(self, fn: CloudFunction) -> bool:
        return self._current((fn.metadata.namespace or "", fn.metadata.name)) == 0

    def _expected_cold_start(self, fn: CloudFunction, minute: int) -> float:
        """The keep-alive policy's chance that the function is called within the pool's horizon."""
        from mpcloud_operator.cloudfunction.warmpool import expected_cold_start

        name = policy_name(fn.spec.scaling)
        slot = (self.bank.slots.get(name) or {}).get((fn.metadata.namespace or "", fn.metadata.name))
        return expected_cold_start(self.bank.policies.get(name), slot, minute,
                                   self.runtime.config.warm_pool_horizon_minutes)

    def _scale(self, fn: CloudFunction, now: float) -> None:
        key = (fn.metadata.namespace, fn.metadata.name)
        with self._lock:
            demand = self.demand.get(key)
            warm = self.bank.is_loaded(policy_name(fn.spec.scaling), key)
            target, reason = decide(fn.spec.scaling, demand, warm, now, self.minute_seconds)
            if demand is not None:
                target = stabilized(demand, target, now, self.minute_seconds)
        st = (fn.status.model_dump(by_alias=True) if fn.status else {})
        if target == 0 and (not st.get("servingHash") or st.get("servingHash") != st.get("codeHash")):
            # New code is proven by an instance that loads it and turns ready before the function may rest at
            # zero (as Knative's initial scale): a broken deploy shows now, not at the next user's request.
            target, reason = 1, "deploying: waiting for an instance to serve the current code"
        current = self._current(key)
        if current is not None and current != target:
            set_replicas(self.runtime, key[0], child_name(fn), target)
            self._remember_replicas(key, target)
            log.info("CloudFunction %s/%s: %s -> %s instances (%s)", *key, current, target, reason)
        self.reasons[key] = reason
        self._write_status(fn, demand, reason, now)

    def _write_status(self, fn: CloudFunction, demand: Demand | None, reason: str, now: float) -> None:
        key = (fn.metadata.namespace, fn.metadata.name)
        status: dict[str, Any] = {"scalingReason": reason}
        if demand is not None:
            status.update(invocations=demand.invocations, coldStarts=demand.cold_starts)
            if demand.pool_starts:
                status["poolStarts"] = demand.pool_starts
            if demand.last_request is not None:
                status["lastInvocationTime"] = datetime.fromtimestamp(demand.last_request, timezone.utc) \
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
        last = self.status_written.get(key)
        if last is not None and (last[1] == status or now - last[0] < STATUS_EVERY_S):
            return
        body = self.runtime.primaries.get((KIND, *key))
        if body is None:
            return
        self.runtime.kube.apply_status(body, status, manager=SCALER_FIELD_MANAGER)
        self.status_written[key] = (now, status)

    # ---------------------------------------------------------------- process
    def run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep scaling; the next tick retries
                log.exception("function scaler tick failed")

    def start(self) -> FunctionScaler:
        """Start ticking, and listen for demand in the background: a previous leader on this host may hold the
        port for a moment, and kopf's start-up (where this runs) must not wait for it."""
        self.store.restore(self.bank, self.clock())
        self.thread = threading.Thread(target=self.run, name="mpcloud-function-scaler", daemon=True)
        self.thread.start()
        threading.Thread(target=self._listen, name="mpcloud-demand-listen", daemon=True).start()
        return self

    def _listen(self, patience: float = 60.0) -> None:
        deadline = time.monotonic() + patience
        while not self._stop.is_set():
            try:
                self.server = serve_demand(self, self.runtime.config.bind_address, self.runtime.config.demand_port)
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    # Scaling still runs (keep-alive, concurrency); only the push for scale-from-zero is missing.
                    log.error("the /demand endpoint could not listen on :%d (%s): scale-from-zero is not pushed",
                              self.runtime.config.demand_port, exc)
                    return
                self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.store.maybe_save(self.bank, force=True)  # the next leader starts from this minute's history
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class Schedules:
    """spec.triggers.schedules: each cron fires a POST through the gateway (so a timer call is an ordinary
    invocation: counted, buffered from zero, limited by concurrency). Missed fires while the operator was down
    are not replayed (as a Kubernetes CronJob with startingDeadlineSeconds unset would not pile them up)."""

    def __init__(self, gateway_url: str, post: Any = None) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.next_fire: dict[tuple[str, str, str, str], float] = {}
        self.post = post or self._post
        self.fired = 0

    def tick(self, functions: list[CloudFunction], now: float) -> None:
        from croniter import croniter

        live = set()
        for fn in functions:
            for sched in fn.spec.triggers.schedules:
                key = (fn.metadata.namespace or "", fn.metadata.name, sched.name, sched.cron)
                live.add(key)
                if not croniter.is_valid(sched.cron):
                    continue  # the reconciler reports it (spec_problems)
                due = self.next_fire.get(key)
                if due is None:
                    self.next_fire[key] = croniter(sched.cron, now).get_next(float)
                elif now >= due:
                    self.next_fire[key] = croniter(sched.cron, now).get_next(float)
                    self.fired += 1
                    threading.Thread(target=self.post, args=(fn, sched.name, sched.body), daemon=True,
                                     name="cf-schedule").start()
        for key in set(self.next_fire) - live:
            del self.next_fire[key]

    def _post(self, fn: CloudFunction, schedule: str, body: str | None) -> None:
        import urllib.request

        url = f"{self.gateway_url}/{fn.metadata.namespace}/{fn.metadata.name}"
        data = (body or json.dumps({"schedule": schedule})).encode()
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/json", "X-Mpcloud-Trigger": f"schedule/{schedule}"})
        try:
            with urllib.request.urlopen(request, timeout=fn.spec.timeout_seconds + 60) as response:
                response.read()
        except OSError as exc:
            log.warning("CloudFunction %s/%s: schedule %s failed: %s", fn.metadata.namespace, fn.metadata.name,
                        schedule, exc)


def serve_demand(scaler: FunctionScaler, host: str, port: int) -> ThreadingHTTPServer:
    """POST /demand with one report or a list of them; 200 {"replicas": {...}}, 400 with the reason."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") != "/demand":
                self._reply(404, {"error": {"type": "NotFound", "message": self.path}})
                return
            try:
                raw = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                reports = [DemandReport.model_validate(r) for r in (raw if isinstance(raw, list) else [raw])]
            except (ValueError, ValidationError) as exc:
                self._reply(400, {"error": {"type": "BadRequest", "message": str(exc)[:500]}})
                return
            out = {}
            for report in reports:
                try:
                    out[f"{report.namespace}/{report.name}"] = scaler.on_demand(report)
                except Exception as exc:  # noqa: BLE001 - the gateway retries; say why
                    self._reply(503, {"error": {"type": "ScaleFailed", "message": str(exc)[:500]}})
                    return
            self._reply(200, {"replicas": out})

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            send_json(self, code, body)

        def log_message(self, *args: object) -> None:  # a push per second per busy function
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="demand", daemon=True).start()
    return server
