"""The admission webhooks: served by every operator replica, over TLS, from a cache of RiskPolicies.

Why not `@kopf.on.validate`: kopf's handlers run inside `kopf.run`, which main.py starts only once the leader
Lease is held; admission must not wait for (or stop with) leadership, or a standby replica and every failover
would reject fail-closed requests. So each replica runs kopf's `WebhookServer` (aiohttp over TLS; it reloads
the certificate files when they change) in a thread of its own, in front of the pure `review()` below.

Three webhooks (riskpolicy/webhooks.py builds their configuration):
- `enforce`: Enforce-mode rules on mpcloud's kinds, failurePolicy Fail (closed): only in namespaces labelled
  risk.mpcloud.io/enforce=true (the leader labels those with an enforcing policy) or everywhere when a cluster
  default enforces. With the operator down those namespaces reject changes of these kinds; the rest admit.
- `audit`: Audit-mode rules, failurePolicy Ignore: admitted with warnings, a finding recorded as an Event.
- `workloads`: Pods and Deployments of namespaces whose policy has admission.workloads, both modes,
  failurePolicy Ignore (never block the cluster's own pods on an unreachable operator).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from mpcloud_operator.kube.client import ApiException, KubeClient
from mpcloud_operator.reconcile.informer import Informer
from mpcloud_operator.riskpolicy import webhooks
from mpcloud_operator.riskpolicy.certs import CertStore
from mpcloud_operator.riskpolicy.findings import REASON, Finding, format_message, parse_message
from mpcloud_operator.riskpolicy.model import API_VERSION, KIND, PLURAL, RiskPolicy
from mpcloud_operator.riskpolicy.rules import applicable, evaluate

log = logging.getLogger("mpcloud.risk.admission")

REVIEWS = Histogram("mpcloud_admission_review_seconds", "Time to evaluate one admission review.", ["webhook"],
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
VERDICTS = Counter("mpcloud_admission_findings_total", "Admission findings by rule and result.", ["rule", "result"])

MODES = {"enforce": ("Enforce",), "audit": ("Audit",), "workloads": ("Audit", "Enforce")}
MAX_WARNING = 256  # the API server truncates longer warnings
COUNT_SECONDS = 15.0  # how often the leader refreshes the policies' finding counts
COUNTS_MANAGER = "mpcloud-risk-admission"
RECENT = 20


# ---------------------------------------------------------------- the pure part

def review(body: dict[str, Any], webhook: str, policies: list[RiskPolicy], operator_namespace: str,
           now: dt.datetime) -> tuple[dict[str, Any], list[Finding]]:
    """(AdmissionReview response, findings) for one request: Enforce findings deny, Audit ones warn."""
    request = body.get("request") or {}
    uid = request.get("uid", "")
    obj = request.get("object") or {}
    old = request.get("oldObject") or None
    namespace = request.get("namespace") or (obj.get("metadata") or {}).get("namespace") or ""
    if request.get("operation") == "DELETE" or not obj:
        return _answer(uid, True), []
    obj.setdefault("metadata", {}).setdefault("namespace", namespace)
    modes = MODES.get(webhook or "", ())
    findings = [f for p in applicable(policies, namespace, operator_namespace)
                for f in evaluate(p, obj, old, now, modes)]
    denied = [f for f in findings if f.result == "fail"]
    warnings = [format_message(f)[:MAX_WARNING] for f in findings if f.result == "warn"]
    if denied:
        what = f"{obj.get('kind')} {namespace}/{(obj.get('metadata') or {}).get('name', '')}"
        message = f"{what} refused by risk policy: " + "; ".join(format_message(f) for f in denied)
        return _answer(uid, False, message, warnings), findings
    return _answer(uid, True, None, warnings), findings


def _answer(uid: str, allowed: bool, message: str | None = None, warnings: list[str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if message:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": message}
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def event_target(f: Finding, operation: str) -> dict[str, Any]:
    """The object a finding's Event is about: the object, or for a refused CREATE (no object) the policy."""
    if f.result == "fail" and operation == "CREATE":
        ns, _, name = f.policy.partition("/")
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"namespace": ns, "name": name}}
    return {"apiVersion": f.api_version, "kind": f.kind, "metadata": {"namespace": f.namespace, "name": f.name}}


def finding_counts(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """policy "ns/name" -> {findings: {admission, opsRisk}, recentFindings: [...]} from PolicyViolation Events
    (an Event's count is how often the same finding repeated)."""
    out: dict[str, dict[str, Any]] = {}
    recent: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for e in events:
        f = parse_message(e.get("message", ""), e.get("involvedObject") or {})
        if f is None or f.group not in ("admission", "opsRisk"):
            continue
        entry = out.setdefault(f.policy, {"findings": {"admission": 0, "opsRisk": 0}, "recentFindings": []})
        entry["findings"][f.group] += int(e.get("count") or 1)
        when = e.get("lastTimestamp") or e.get("eventTime") or (e.get("metadata") or {}).get("creationTimestamp")
        if when:
            recent.setdefault(f.policy, []).append((str(when)[:19] + "Z", {
                "rule": f.rule, "result": f.result, "resource": f"{f.kind}/{f.name}"[:512],
                "message": f.message[:1024], "time": str(when)[:19] + "Z"}))
    for ref, items in recent.items():
        out[ref]["recentFindings"] = [i for _, i in sorted(items, key=lambda t: t[0], reverse=True)[:RECENT]]
    return out


# ---------------------------------------------------------------- policies, as every replica sees them

class PolicyCache:
    """Every RiskPolicy of the cluster, parsed once per change (a lean informer; invalid ones are skipped)."""

    def __init__(self, kube: KubeClient, on_change: Callable[[], None] | None = None) -> None:
        self._policies: dict[tuple[str, str], RiskPolicy] = {}
        self._lock = threading.Lock()
        self.on_change = on_change
        self.informer = Informer(kube, f"/apis/{API_VERSION}/{PLURAL}", self._on_event, name="riskpolicies-admission",
                                 on_synced=self._changed)

    def _on_event(self, type_: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            if type_ == "DELETED":
                self._policies.pop(key, None)
            else:
                try:
                    self._policies[key] = RiskPolicy.model_validate(obj)
                except ValueError as exc:
                    log.warning("RiskPolicy %s/%s ignored: %s", *key, exc)
                    self._policies.pop(key, None)
        if self.informer.synced.is_set():
            self._changed()

    def _changed(self) -> None:
        if self.on_change:
            self.on_change()

    def policies(self) -> list[RiskPolicy]:
        with self._lock:
            return list(self._policies.values())

    def start(self) -> PolicyCache:
        self.informer.start()
        return self


# ---------------------------------------------------------------- the server

class AdmissionServer:
    """TLS webhook server + policy cache + certificate upkeep + webhook configuration, in every replica.

    `is_leader()` gates the one cluster-wide write that needs a single writer: namespace labels."""

    def __init__(self, kube: KubeClient, config: Any, is_leader: Callable[[], bool] = lambda: False) -> None:
        self.kube, self.config, self.is_leader = kube, config, is_leader
        self.operator_namespace = config.lease_namespace
        self.port = config.admission_port
        self.client_config = webhooks.client_config(config)
        self.certs = CertStore(kube, self.operator_namespace, webhooks.TLS_SECRET, webhooks.hostnames(config),
                               tempfile.mkdtemp(prefix="mpcloud-webhook-"),
                               dt.timedelta(seconds=config.admission_cert_seconds))
        self._wake = threading.Event()
        self.cache = PolicyCache(kube, on_change=self._wake.set)
        self._stop = threading.Event()
        self._applied: dict[str, Any] | None = None
        self._next_count = 0.0
        self._counts: dict[str, dict[str, Any]] = {}
        # The PolicyViolation Events every replica posted, reduced to what finding_counts reads: a watch with a
        # field selector (the API server's watch cache filters it) instead of a cluster-wide LIST per round.
        # Started on the first round as leader: standbys never need it.
        self._violations: dict[tuple[str, str], dict[str, Any]] = {}
        self._violations_lock = threading.Lock()
        self.violations = Informer(kube, "/api/v1/events", self._on_violation, field_selector=f"reason={REASON}",
                                   name="policy-violations")
        self.serving = threading.Event()

    # -- admission requests (on the server's event loop)
    async def _handle(self, body: dict[str, Any], webhook: str | None = None, **_: Any) -> dict[str, Any]:
        started = time.perf_counter()
        if webhook == "enforce" and not self.cache.informer.synced.is_set():  # fail closed, like an unreachable one
            uid = (body.get("request") or {}).get("uid", "")
            return _answer(uid, False, "risk policies not loaded yet by this operator replica: retry shortly")
        response, findings = review(body, webhook or "", self.cache.policies(), self.operator_namespace,
                                    dt.datetime.now(dt.timezone.utc))
        REVIEWS.labels(webhook or "").observe(time.perf_counter() - started)
        request = body.get("request") or {}
        for f in findings:
            VERDICTS.labels(f.rule, f.result).inc()
            if not request.get("dryRun"):  # sideEffects: NoneOnDryRun
                self.kube.post_event(event_target(f, request.get("operation", "")), REASON, format_message(f),
                                     "Warning")
        return response

    def _serve(self) -> None:
        from kopf import WebhookServer

        async def main() -> None:
            server = WebhookServer(addr=self.config.bind_address, port=self.port, certfile=self.certs.certfile(),
                                   pkeyfile=self.certs.keyfile(), file_check_interval=5.0)
            async for _ in server(self._handle):  # one iteration per (re)load of the certificate
                self.serving.set()
                log.info("admission webhooks served on %s:%d", self.config.bind_address, self.port)

        asyncio.run(main())

    # -- upkeep: certificates, webhook configuration, namespace labels
    def _upkeep(self) -> None:
        next_cert = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_cert:
                    self.certs.ensure()
                    next_cert = time.monotonic() + self.config.admission_cert_check_seconds
                self._sync()
            except Exception:  # noqa: BLE001 - a failed round is retried; admission keeps serving
                log.exception("admission upkeep failed; retrying")
                next_cert = 0.0
                self._stop.wait(2.0)
            self._wake.wait(min(10.0, self.config.admission_cert_check_seconds))
            self._wake.clear()

    def _sync(self) -> None:
        if not self.cache.informer.synced.is_set() or self.certs.bundle is None:
            return
        policies = self.cache.policies()
        selectors = webhooks.selectors(policies, self.operator_namespace)
        desired = webhooks.configuration(self.client_config, self.certs.bundle.ca_bundle, selectors,
                                         self.operator_namespace, self.config.admission_timeout_seconds)
        if desired != self._applied:
            self.kube.request("PATCH", f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
                              f"{webhooks.CONFIGURATION}", body=desired, content_type="application/apply-patch+yaml",
                              query=[("fieldManager", "mpcloud-risk"), ("force", "true")])
            self._applied = desired
        if self.is_leader():
            self._label_namespaces(webhooks.labelled_namespaces(policies, self.operator_namespace))
            if time.monotonic() >= self._next_count:
                self._next_count = time.monotonic() + COUNT_SECONDS
                self._write_counts(policies)

    def _on_violation(self, type_: str, event: dict[str, Any]) -> None:
        meta = event.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._violations_lock:
            if type_ == "DELETED":
                self._violations.pop(key, None)
            else:
                self._violations[key] = {
                    "message": event.get("message", ""), "involvedObject": event.get("involvedObject") or {},
                    "count": event.get("count"), "lastTimestamp": event.get("lastTimestamp"),
                    "eventTime": event.get("eventTime"),
                    "metadata": {"creationTimestamp": meta.get("creationTimestamp")}}

    def _write_counts(self, policies: list[RiskPolicy]) -> None:
        """status.findings.{admission,opsRisk} and recentFindings of each policy, from the PolicyViolation Events
        every replica posted (field manager mpcloud-risk-admission; written only when changed)."""
        if not self.violations.started:
            self.violations.start()
        if not self.violations.synced.is_set():
            return  # counts from a partial list would shrink and grow back: wait for the first full one
        with self._violations_lock:
            events = list(self._violations.values())
        counted = finding_counts(events)
        for p in policies:
            ref = f"{p.metadata.namespace}/{p.metadata.name}"
            status = counted.get(ref, {"findings": {"admission": 0, "opsRisk": 0}, "recentFindings": []})
            if self._counts.get(ref) == status:
                continue
            self.kube.apply_status({"apiVersion": API_VERSION, "kind": KIND, "metadata": {
                "namespace": p.metadata.namespace, "name": p.metadata.name}}, status, manager=COUNTS_MANAGER)
            self._counts[ref] = status

    def _label_namespaces(self, wanted: dict[str, set[str]]) -> None:
        for label, namespaces in wanted.items():
            have = {n["metadata"]["name"] for n in self.kube.request(
                "GET", "/api/v1/namespaces", query=[("labelSelector", label)]).get("items") or []}
            for ns, value in [(n, "true") for n in namespaces - have] + [(n, None) for n in have - namespaces]:
                try:
                    self.kube.request("PATCH", f"/api/v1/namespaces/{ns}",
                                      body={"metadata": {"labels": {label: value}}},
                                      content_type="application/merge-patch+json")
                    log.info("namespace %s: %s=%s", ns, label, value)
                except ApiException as exc:
                    if exc.status != 404:
                        raise

    def _serve_when_certified(self) -> None:
        while self.certs.bundle is None and not self._stop.is_set():  # the files must exist before the server loads
            try:
                self.certs.ensure()
            except Exception:  # noqa: BLE001 - an API hiccup at start: keep trying, the process stays up
                log.exception("webhook certificate not available yet; retrying")
                self._stop.wait(2.0)
        if not self._stop.is_set():
            self._serve()

    def start(self) -> AdmissionServer:
        self.cache.start()
        threading.Thread(target=self._serve_when_certified, name="admission-server", daemon=True).start()
        threading.Thread(target=self._upkeep, name="admission-upkeep", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.violations.stop()
