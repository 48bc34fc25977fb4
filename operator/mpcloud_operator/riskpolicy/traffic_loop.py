"""Abnormal-traffic detection in the leader: request series -> traffic.py's detector -> findings, Events, metric.

Every `MPCLOUD_RISK_TRAFFIC_SECONDS` (15 s by default) the loop takes each MiniProgramApp and CloudFunction that a
RiskPolicy with `traffic` on governs (and no exception exempts), reads one request rate per series from the sources
(riskpolicy/series.py: Prometheus for apps, the gateway's counts for functions, or a replay file) and feeds it to a
`TrafficWatch` (one per distinct sensitivity/threshold in use). A series seen for the first time is warmed up on its
history where the source has one (2 x the detector's warm-up ticks), so a restart does not blind the detector for an
hour. An alarm, at most once per series per cooldown (`MPCLOUD_RISK_TRAFFIC_COOLDOWN_SECONDS`, 10 minutes: one burst
is one finding), becomes:
- a Warning Event `AbnormalTraffic` on the app or function (message in the findings format),
- `mpcloud_risk_traffic_anomalies_total{namespace,kind,name}`,
- a `traffic.anomaly` result in the policy's PolicyReport for the namespace (through the scan loop's ReportBook, the
  report's one writer) and status.findings.traffic (field manager mpcloud-risk-traffic), for
  `MPCLOUD_RISK_TRAFFIC_OPEN_SECONDS` (an hour).
Not done here: the Enforce-mode rate-limit signal to the gateway (`traffic.rateLimitSignal`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from mpcloud_operator.riskpolicy.findings import format_message
from mpcloud_operator.riskpolicy.model import RiskPolicy
from mpcloud_operator.riskpolicy.rules import applicable, exemption
from mpcloud_operator.riskpolicy.scan_loop import ReportBook, policy_ref, report_book, valid_policies
from mpcloud_operator.riskpolicy.series import Sources, sources_for
from mpcloud_operator.riskpolicy.traffic import RULE, Series, TrafficWatch, to_finding

log = logging.getLogger("mpcloud.risk.traffic")

REASON = "AbnormalTraffic"
KINDS = ("MiniProgramApp", "CloudFunction")
ANOMALIES = Counter("mpcloud_risk_traffic_anomalies_total", "Abnormal-traffic findings (one per burst per series).",
                    ["namespace", "kind", "name"])

TICK_SECONDS = Histogram("mpcloud_risk_traffic_tick_seconds", "Duration of one abnormal-traffic tick (all series).",
                         buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))

WatchKey = tuple[str, float | None]  # (sensitivity, threshold)


def watch_key(p: RiskPolicy) -> WatchKey:
    return p.spec.traffic.sensitivity, p.spec.traffic.threshold


def detecting(p: RiskPolicy) -> bool:
    return p.spec.enabled and p.spec.traffic.enabled and p.spec.traffic.anomaly.enabled


def governed(policies: list[RiskPolicy], objects: list[dict[str, Any]], operator_namespace: str
             ) -> dict[Series, list[RiskPolicy]]:
    """Each app's and function's series -> the detecting policies that govern it and do not exempt it."""
    out: dict[Series, list[RiskPolicy]] = {}
    if not any(detecting(p) for p in policies):
        return out
    live = [p for p in policies if detecting(p)]
    for obj in objects:
        meta = obj["metadata"]
        ps = [p for p in applicable(live, meta.get("namespace", ""), operator_namespace)
              if not exemption(p, RULE, obj)]
        if ps:
            out[Series(obj["kind"], obj.get("apiVersion", ""), meta.get("namespace", ""), meta["name"])] = ps
    return out


class TrafficLoop:
    def __init__(self, runtime: Any, book: ReportBook, sources: Sources, tick_seconds: float,
                 cooldown_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.runtime, self.book, self.sources = runtime, book, sources
        self.tick_seconds, self.cooldown = tick_seconds, cooldown_seconds
        self.clock = clock
        self.watches: dict[WatchKey, TrafficWatch] = {}
        self.quiet_until: dict[Series, float] = {}  # cooldown after an alarm
        self.uids: dict[tuple[str, str, str], str | None] = {}  # for the Events (kubectl describe selects by uid)
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _objects(self) -> list[dict[str, Any]]:
        store, watched = self.runtime.primaries, set(self.runtime.config.namespaces or ())
        out = []
        for kind in KINDS:
            for key in store.keys(kind):
                if watched and key[1] not in watched:
                    continue
                body = store.get(key)
                if body is not None and not body["metadata"].get("deletionTimestamp"):
                    out.append(body)
        return out

    def tick(self) -> list[tuple[Series, float]]:
        """One tick; returns the (series, score) alarms that became findings."""
        with TICK_SECONDS.time():
            return self._tick()

    def _tick(self) -> list[tuple[Series, float]]:
        now = self.clock()
        policies = valid_policies(self.runtime)
        objects = self._objects()
        series = governed(policies, objects, self.runtime.config.lease_namespace)
        self.uids = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"].get("uid")
                     for o in objects}
        groups: dict[WatchKey, list[Series]] = {}
        for s, ps in series.items():
            for key in {watch_key(p) for p in ps}:
                groups.setdefault(key, []).append(s)
        for key in set(self.watches) - set(groups):
            del self.watches[key]
        for key, members in groups.items():
            watch = self.watches.get(key)
            if watch is None:
                watch = self.watches[key] = TrafficWatch(sensitivity=key[0], threshold=key[1])
            new = [s for s in members if not watch.knows(s)]
            if new:
                for s, past in self.sources.history(new, 2 * watch.params.warmup).items():
                    watch.warm(s, past)
        values = self.sources.current(list(series))
        raised = []
        for key, members in groups.items():
            alarms = self.watches[key].tick({s: values[s] for s in members if s in values})
            for s, score in alarms.items():
                if now < self.quiet_until.get(s, float("-inf")):
                    continue
                self.quiet_until[s] = now + self.cooldown
                self._alarm(s, score, values[s], [p for p in series[s] if watch_key(p) == key], now)
                raised.append((s, score))
        for s in [s for s, until in self.quiet_until.items() if until <= now and s not in series]:
            del self.quiet_until[s]
        self._write(policies, self.book.expire_traffic() | {(policy_ref(p), s.namespace)
                                                            for s, _ in raised for p in series[s]})
        return raised

    def _alarm(self, s: Series, score: float, value: float, policies: list[RiskPolicy], now: float) -> None:
        findings = [to_finding(s, score, value, policy_ref(p), p.spec.traffic.mode) for p in policies]
        for p, f in zip(policies, findings):
            self.book.add_traffic(p, s.namespace, f, now)
        ANOMALIES.labels(s.namespace, s.kind, s.name).inc()
        involved = {"apiVersion": s.api_version, "kind": s.kind, "metadata": {
            "namespace": s.namespace, "name": s.name, "uid": self.uids.get((s.kind, s.namespace, s.name))}}
        self.runtime.kube.post_event(involved, REASON, format_message(findings[0]), "Warning")
        log.info("%s %s/%s: abnormal traffic %.3g/s (score %.3f)", s.kind, s.namespace, s.name, value, score)

    def _write(self, policies: list[RiskPolicy], reports: set[tuple[str, str]]) -> None:
        for key in reports:
            try:
                self.book.flush(key)
            except Exception as exc:  # noqa: BLE001 - retried with the next change or scan tick
                log.warning("PolicyReport of %s in %s not written: %s", key[0], key[1], exc)
        for p in policies:
            if detecting(p):
                self.book.write_status(p, scans=False, traffic=True)

    # -- thread
    def run(self) -> None:
        log.info("risk traffic loop: every %.3gs", self.tick_seconds)
        while not self._stop.wait(max(0.0, self.tick_seconds - self.clock() % self.tick_seconds)):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - sources or the API down: the next tick retries
                log.exception("risk traffic tick failed")

    def start(self) -> TrafficLoop:
        self.thread = threading.Thread(target=self.run, name="mpcloud-risk-traffic", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread:
            self.thread.join(timeout=10)


def traffic_loop(runtime: Any) -> TrafficLoop:
    """Kind.loops entry of the RiskPolicy kind (leader only)."""
    config = runtime.config
    return runtime.service("risk-traffic", lambda: TrafficLoop(
        runtime, report_book(runtime), sources_for(runtime), float(config.risk_traffic_seconds),
        float(config.risk_traffic_cooldown_seconds))).start()
