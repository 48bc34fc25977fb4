"""RiskPolicy's background scans in the leader, and the PolicyReports they (and the traffic detector) fill.

`ScanLoop` (registered on the RiskPolicy kind's `loops`, so it runs only in the Lease holder) ticks every
`MPCLOUD_RISK_SCAN_SECONDS`, and at once when a RiskPolicy is created, changed or deleted (it compares the policies'
generations in the watch cache every second). Per tick, for each enabled policy and each namespace it covers (its
own; a cluster default also every namespace holding mpcloud objects): LIST the namespace's MiniProgramApps,
CloudFunctions, Pipelines and ConfigMaps in bounded pages, scan the objects whose resourceVersion (or the policy's
scan settings) changed since the last tick with riskpolicy/scan.py, and keep the rest's findings; every
`spec.scans.intervalSeconds` a full rescan ignores that cache. Exceptions drop a hit; the rule's mode makes it a
`fail` (Enforce) or `warn` (Audit) result.

`ReportBook` is the one writer of PolicyReports (field manager mpcloud-risk-scan; results are one atomic list, so
the traffic detector hands its findings here instead of writing the report itself): one report per namespace per
policy, named as reports.py says, owned by the policy when in its namespace (a cluster default's reports elsewhere
are deleted by this loop when the policy goes: owner references cannot cross namespaces). It applies a report only
when its results changed, posts a Warning Event (`PolicyViolation`, the admission message format) on an object for
a finding the previous report did not hold, and writes status.findings.scans + lastScanTime (mpcloud-risk-scan) and
status.findings.traffic (mpcloud-risk-traffic) only when they change. On start it reads the reports back, so a new
leader neither repeats Events nor forgets open traffic findings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from prometheus_client import Counter, Histogram

from mpcloud_operator.config import RISK_SCAN_FIELD_MANAGER, RISK_TRAFFIC_FIELD_MANAGER
from mpcloud_operator.kube.client import ApiException
from mpcloud_operator.riskpolicy import reports, scan
from mpcloud_operator.riskpolicy.findings import REASON, Finding, format_message
from mpcloud_operator.riskpolicy.model import API_VERSION, KIND, RiskPolicy
from mpcloud_operator.riskpolicy.rules import applicable, exemption

log = logging.getLogger("mpcloud.risk.scan")

SCANNED_KINDS = ("MiniProgramApp", "CloudFunction", "Pipeline", "ConfigMap")
OBJECT_KINDS = ("MiniProgramApp", "CloudFunction", "Pipeline")  # what makes a namespace one a cluster default scans
PAGE = 200
MAX_PAGES = 50  # per kind and namespace: 10,000 objects, then the rest waits for a later tick (logged)
SCAN_RULES = {"scans.secrets": "secrets", "scans.personalData": "personal_data", "scans.content": "content",
              "scans.images": "images"}
TRAFFIC_RULE = "traffic.anomaly"

SCANNED = Counter("mpcloud_risk_scanned_objects_total", "Objects scanned by the RiskPolicy background scan.",
                  ["kind"])
SCAN_SECONDS = Histogram("mpcloud_risk_scan_tick_seconds", "Duration of one RiskPolicy scan tick (all policies).",
                         buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300))

ReportKey = tuple[str, str]  # ("<policy namespace>/<policy name>", report namespace)


def policy_ref(p: RiskPolicy) -> str:
    return f"{p.metadata.namespace}/{p.metadata.name}"


# ---------------------------------------------------------------- pure parts

def reports_wanted(p: RiskPolicy) -> bool:
    return p.spec.enabled and (p.spec.scans.enabled or p.spec.traffic.enabled)


def covered_namespaces(p: RiskPolicy, operator_namespace: str, object_namespaces: set[str]) -> set[str]:
    """The namespaces a policy reports on: its own; a cluster default also every namespace with mpcloud objects."""
    own = {p.metadata.namespace or ""}
    if p.spec.cluster_default and p.metadata.namespace == operator_namespace:
        return own | object_namespaces
    return own


def rules_run(p: RiskPolicy) -> tuple[str, ...]:
    """Rule ids that run for the policy (a rule with nothing found is a `pass` result)."""
    out = []
    if p.spec.scans.enabled:
        out += [rule for rule, attr in SCAN_RULES.items() if getattr(p.spec.scans, attr).enabled]
    if p.spec.traffic.enabled and p.spec.traffic.anomaly.enabled:
        out.append(TRAFFIC_RULE)
    return tuple(out)


def settings_fingerprint(p: RiskPolicy, words: tuple[str, ...]) -> str:
    """Changes when anything that decides a scan's findings does: scan rules, exceptions, the word list."""
    body = p.model_dump(mode="json", by_alias=True, include={"spec": {"scans", "exceptions"}})
    return hashlib.sha256(json.dumps([body, words], sort_keys=True).encode()).hexdigest()[:16]


def skipped(obj: dict[str, Any], p: RiskPolicy) -> bool:
    """Objects not scanned: being deleted; ConfigMaps mpcloud derives from a scanned object (a function's inline
    source: the function is scanned), the API server's CA bundle, and the policy's own word list."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return True
    if obj.get("kind") != "ConfigMap":
        return False
    if meta.get("name") in ("kube-root-ca.crt", p.spec.scans.content.word_list_config_map):
        return True
    return any(str(o.get("apiVersion", "")).startswith("mpcloud.io/") for o in meta.get("ownerReferences") or [])


def scan_findings(p: RiskPolicy, obj: dict[str, Any], settings: scan.ScanSettings) -> list[Finding]:
    """The policy's findings on one object: the scanners' hits less those an exception exempts."""
    hits = [h for h in scan.scan_object(obj, settings) if not exemption(p, h.rule, obj)]
    return scan.to_findings(obj, hits, settings, policy_ref(p))


def result_key(f: Finding) -> tuple:
    return reports._key(reports.result_of(f, datetime.fromtimestamp(0, timezone.utc)))


def finding_of_result(r: dict[str, Any], policy: str) -> Finding | None:
    """A non-pass PolicyReport result back as a Finding (a new leader's memory of what was reported)."""
    res = (r.get("resources") or [{}])[0]
    if r.get("result") not in ("fail", "warn"):
        return None
    return Finding(rule=r.get("rule", ""), message=r.get("message", ""), result=r["result"], policy=policy,
                   kind=res.get("kind", ""), api_version=res.get("apiVersion", ""),
                   namespace=res.get("namespace", ""), name=res.get("name", ""),
                   properties=dict(r.get("properties") or {}))


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report without the `pass` results' timestamps (they say when the rule last ran, not what it found)."""
    results = [{k: v for k, v in r.items() if not (r.get("result") == "pass" and k == "timestamp")}
               for r in report.get("results") or []]
    meta = report.get("metadata") or {}
    return {"labels": meta.get("labels"), "owners": meta.get("ownerReferences"), "results": results,
            "summary": report.get("summary")}


# ---------------------------------------------------------------- the reports

@dataclass
class _Report:
    policy: RiskPolicy
    namespace: str
    scans: list[Finding] = field(default_factory=list)
    traffic: dict[tuple, tuple[Finding, float]] = field(default_factory=dict)  # result key -> (finding, when)
    rules: tuple[str, ...] = ()
    known: set[tuple] = field(default_factory=set)  # result keys already reported (no second Event)
    live: dict[str, Any] | None = None  # the report as last read or applied
    loaded: bool = False


class ReportBook:
    """Every PolicyReport this leader writes, and the finding counts of each policy's status."""

    def __init__(self, kube: Any, open_seconds: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        self.kube, self.open_seconds, self.clock = kube, open_seconds, clock
        self.lock = threading.RLock()
        self._reports: dict[ReportKey, _Report] = {}
        self._status_sent: dict[tuple[str, str], dict[str, Any]] = {}  # (policy, manager) -> status sent
        self._scan_time: dict[str, str] = {}  # policy -> lastScanTime

    def _report(self, p: RiskPolicy, namespace: str) -> _Report:
        key = (policy_ref(p), namespace)
        r = self._reports.get(key)
        if r is None:
            r = self._reports[key] = _Report(p, namespace)
        r.policy = p
        if not r.loaded:
            self._load(r)
        return r

    def _load(self, r: _Report) -> None:
        name = reports.report_name(r.policy.metadata.namespace or "", r.policy.metadata.name, r.namespace)
        live = self.kube.get("PolicyReport", r.namespace, name)
        r.loaded, r.live = True, live
        ref, now = policy_ref(r.policy), self.clock()
        for res in (live or {}).get("results") or []:
            f = finding_of_result(res, ref)
            if f is None:
                continue
            key = result_key(f)
            r.known.add(key)
            when = float((res.get("timestamp") or {}).get("seconds") or 0)
            if f.rule == TRAFFIC_RULE and now - when < self.open_seconds:
                r.traffic[key] = (f, when)

    # -- what the loops hand in
    def set_scan(self, p: RiskPolicy, namespace: str, findings: list[Finding], rules: tuple[str, ...]
                 ) -> list[Finding]:
        """The namespace's current scan findings for `p`; returns those not reported before (to post Events for)."""
        with self.lock:
            r = self._report(p, namespace)
            r.scans, r.rules = findings, rules
            new = [f for f in findings if result_key(f) not in r.known]
            r.known = {result_key(f) for f in findings} | set(r.traffic)
            return new

    def add_traffic(self, p: RiskPolicy, namespace: str, finding: Finding, when: float) -> None:
        with self.lock:
            r = self._report(p, namespace)
            key = result_key(finding)
            r.traffic[key] = (finding, when)
            r.known.add(key)
            r.rules = rules_run(p)

    def expire_traffic(self) -> set[ReportKey]:
        """Drop traffic findings older than open_seconds; returns the reports that changed."""
        now, changed = self.clock(), set()
        with self.lock:
            for key, r in self._reports.items():
                old = [k for k, (_, when) in r.traffic.items() if now - when >= self.open_seconds]
                for k in old:
                    del r.traffic[k]
                if old:
                    changed.add(key)
        return changed

    def keys(self) -> set[ReportKey]:
        with self.lock:
            return set(self._reports)

    # -- writes
    def build(self, key: ReportKey) -> dict[str, Any]:
        r = self._reports[key]
        p = r.policy
        policy_body = {"metadata": {"name": p.metadata.name, "namespace": p.metadata.namespace}}
        body = reports.build_report(policy_body, r.namespace, [*r.scans, *(f for f, _ in r.traffic.values())],
                                    passed_rules=r.rules, now=datetime.fromtimestamp(self.clock(), timezone.utc),
                                    first_seen=reports.previous_timestamps(r.live))
        alarms = {k: when for k, (_, when) in r.traffic.items()}
        for res in body["results"]:  # a traffic finding is dated by its alarm, not by the write
            when = alarms.get(reports._key(res)) if res.get("rule") == TRAFFIC_RULE and res.get("resources") else None
            if when is not None:
                res["timestamp"] = {"seconds": int(when), "nanos": 0}
        if p.metadata.namespace == r.namespace and p.metadata.uid:
            body["metadata"]["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": KIND, "name": p.metadata.name,
                                                    "uid": p.metadata.uid}]
        return body

    def flush(self, key: ReportKey) -> bool:
        """Apply the report if its results changed; True when written."""
        with self.lock:
            if key not in self._reports:
                return False
            r = self._reports[key]
            body = self.build(key)
            if r.live is not None and _comparable(r.live) == _comparable(body):
                return False
            r.live = self.kube.apply(body, manager=RISK_SCAN_FIELD_MANAGER) or body
            return True

    def forget(self, key: ReportKey, delete: bool = True) -> None:
        with self.lock:
            r = self._reports.pop(key, None)
        if r is not None and delete:
            name = reports.report_name(r.policy.metadata.namespace or "", r.policy.metadata.name, r.namespace)
            self.kube.delete("PolicyReport", r.namespace, name)

    def counts(self, ref: str) -> tuple[int, int]:
        with self.lock:
            mine = [r for (p, _), r in self._reports.items() if p == ref]
            return sum(len(r.scans) for r in mine), sum(len(r.traffic) for r in mine)

    def scanned(self, p: RiskPolicy, when: float) -> None:
        self._scan_time[policy_ref(p)] = datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def write_status(self, p: RiskPolicy, scans: bool = True, traffic: bool = True) -> None:
        """status.findings.scans + lastScanTime, and status.findings.traffic, each by its own field manager and
        only when it changed since this process last wrote it."""
        with self.lock:
            self._write_status(p, scans, traffic)

    def _write_status(self, p: RiskPolicy, scans: bool, traffic: bool) -> None:
        ref = policy_ref(p)
        n_scans, n_traffic = self.counts(ref)
        owner = {"apiVersion": API_VERSION, "kind": KIND,
                 "metadata": {"namespace": p.metadata.namespace, "name": p.metadata.name}}
        wanted = []
        if scans and ref in self._scan_time:
            wanted.append((RISK_SCAN_FIELD_MANAGER, {"findings": {"scans": n_scans},
                                                     "lastScanTime": self._scan_time[ref]}))
        if traffic:
            wanted.append((RISK_TRAFFIC_FIELD_MANAGER, {"findings": {"traffic": n_traffic}}))
        for manager, status in wanted:
            if self._status_sent.get((ref, manager)) == status:
                continue
            try:
                self.kube.apply_status(owner, status, manager=manager)
            except ApiException as exc:
                if exc.status != 404:  # the policy is gone: nothing to write
                    raise
            self._status_sent[(ref, manager)] = status

    def forget_policy(self, ref: str) -> None:
        self._scan_time.pop(ref, None)
        for k in [k for k in self._status_sent if k[0] == ref]:
            del self._status_sent[k]


def report_book(runtime: Any) -> ReportBook:
    return runtime.service("risk-reports", lambda: ReportBook(runtime.kube, runtime.config.risk_traffic_open_seconds))


# ---------------------------------------------------------------- the loop

def valid_policies(runtime: Any) -> list[RiskPolicy]:
    """Every valid RiskPolicy in the watch cache, each resourceVersion validated once."""
    from mpcloud_operator.runtime import ParsedPrimaries

    parsed = runtime.service("riskpolicy-parsed", lambda: ParsedPrimaries(runtime.primaries, KIND, RiskPolicy))
    out = []
    for _, ns, name in runtime.primaries.keys(KIND):
        p = parsed.get((ns, name))
        if p is not None:
            out.append(p)
    return out


class ScanLoop:
    def __init__(self, runtime: Any, book: ReportBook, clock: Callable[[], float] = time.time) -> None:
        self.runtime, self.book, self.clock = runtime, book, clock
        self.kube = runtime.kube
        self.period = float(runtime.config.risk_scan_seconds)
        # (policy, kind, namespace, name) -> (resourceVersion, settings fingerprint, findings)
        self._cache: dict[tuple[str, str, str, str], tuple[str, str, list[Finding]]] = {}
        self._full_at: dict[str, float] = {}  # policy -> when its last full scan started
        self._generations: dict[str, int | None] = {}
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    # -- I/O
    def _pages(self, kind: str, namespace: str) -> Iterator[dict[str, Any]]:
        token = None
        for _ in range(MAX_PAGES):
            query = [("limit", str(PAGE))] + ([("continue", token)] if token else [])
            page = self.kube.list(kind, namespace, query=query)
            for item in page.get("items") or []:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", "v1" if kind == "ConfigMap" else API_VERSION)
                yield item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
        log.warning("%s in %s: more than %d objects; the rest are scanned on a later tick", kind, namespace,
                    PAGE * MAX_PAGES)

    def _words(self, p: RiskPolicy) -> tuple[str, ...]:
        name = p.spec.scans.content.word_list_config_map
        if not (name and p.spec.scans.content.enabled):
            return ()
        try:
            return scan.words_from_config_map(self.kube.get("ConfigMap", p.metadata.namespace, name))
        except ApiException as exc:
            log.warning("RiskPolicy %s: word list ConfigMap %s unreadable: %s", policy_ref(p), name, exc)
            return ()

    def _object_namespaces(self) -> set[str]:
        watched = set(self.runtime.config.namespaces or ())
        out = {ns for kind in OBJECT_KINDS for _, ns, _ in self.runtime.primaries.keys(kind)}
        return {ns for ns in out if ns and (not watched or ns in watched)}

    # -- one tick
    def tick(self) -> None:
        started = self.clock()
        policies = [p for p in valid_policies(self.runtime) if reports_wanted(p)]
        operator_ns = self.runtime.config.lease_namespace
        object_namespaces = self._object_namespaces()
        wanted: dict[ReportKey, RiskPolicy] = {}
        for p in policies:
            for ns in covered_namespaces(p, operator_ns, object_namespaces):
                wanted[(policy_ref(p), ns)] = p
        self._drop_unwanted(set(wanted))
        listed: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for p in policies:
            self._scan_policy(p, [ns for (ref, ns) in wanted if ref == policy_ref(p)], listed, started)
        SCAN_SECONDS.observe(self.clock() - started)

    def _scan_policy(self, p: RiskPolicy, namespaces: list[str], listed: dict, started: float) -> None:
        ref = policy_ref(p)
        full = started - self._full_at.get(ref, float("-inf")) >= p.spec.scans.interval_seconds
        if full:
            self._full_at[ref] = started
        changed, seen = False, set()
        if p.spec.scans.enabled:
            words = self._words(p)
            settings = scan.from_rules(p.spec.scans, words)
            fingerprint = settings_fingerprint(p, words)
        for ns in sorted(namespaces):
            findings: list[Finding] = []
            if p.spec.scans.enabled:
                for kind in SCANNED_KINDS:
                    if (kind, ns) not in listed:
                        listed[(kind, ns)] = list(self._pages(kind, ns))
                    for obj in listed[(kind, ns)]:
                        if skipped(obj, p):
                            continue
                        found, rescanned = self._scan_object(ref, p, obj, settings, fingerprint, full)
                        seen.add((ref, kind, ns, obj["metadata"]["name"]))
                        findings += found
                        changed |= rescanned
            new = self.book.set_scan(p, ns, findings, rules_run(p))
            uids = {(o["kind"], o["metadata"]["name"]): o["metadata"].get("uid")
                    for kind in SCANNED_KINDS for o in listed.get((kind, ns), ())} if new else {}
            for f in new:  # with the uid, as `kubectl describe` selects an object's Events by it
                self.kube.post_event({"apiVersion": f.api_version, "kind": f.kind, "metadata": {
                    "namespace": f.namespace, "name": f.name, "uid": uids.get((f.kind, f.name))}},
                    REASON, format_message(f), "Warning")
            changed |= self.book.flush((ref, ns))
        for key in [k for k in self._cache if k[0] == ref and k not in seen]:  # objects deleted since
            del self._cache[key]
        if p.spec.scans.enabled and (full or changed):
            self.book.scanned(p, self.clock())
        self.book.write_status(p, scans=p.spec.scans.enabled, traffic=p.spec.traffic.enabled)

    def _scan_object(self, ref: str, p: RiskPolicy, obj: dict[str, Any], settings: scan.ScanSettings,
                     fingerprint: str, full: bool) -> tuple[list[Finding], bool]:
        meta = obj["metadata"]
        key = (ref, obj["kind"], meta.get("namespace", ""), meta["name"])
        version = meta.get("resourceVersion", "")
        cached = self._cache.get(key)
        if not full and cached is not None and cached[0] == version and cached[1] == fingerprint:
            return cached[2], False
        found = scan_findings(p, obj, settings)
        SCANNED.labels(obj["kind"]).inc()
        self._cache[key] = (version, fingerprint, found)
        return found, cached is None or cached[2] != found

    def _drop_unwanted(self, wanted: set[ReportKey]) -> None:
        """Reports of policies (or namespaces) no longer covered: this process's, and any a previous leader left."""
        for key in self.book.keys() - wanted:
            self.book.forget(key)
        wanted_refs = {ref for ref, _ in wanted}
        for ref in [r for r in self._full_at if r not in wanted_refs]:
            self._full_at.pop(ref, None)
            self.book.forget_policy(ref)
            for k in [k for k in self._cache if k[0] == ref]:
                del self._cache[k]
        query = [("labelSelector", "app.kubernetes.io/managed-by=mpcloud")]
        namespaces = self.runtime.config.namespaces or [None]
        for ns in namespaces:
            for item in self.kube.list("PolicyReport", ns, query=query).get("items") or []:
                labels = item["metadata"].get("labels") or {}
                ref = f"{labels.get('mpcloud.io/riskpolicy-namespace', '')}/{labels.get('mpcloud.io/riskpolicy', '')}"
                if (ref, item["metadata"]["namespace"]) not in wanted:
                    log.info("deleting PolicyReport %s/%s (policy %s gone or not covering it)",
                             item["metadata"]["namespace"], item["metadata"]["name"], ref)
                    self.kube.delete("PolicyReport", item["metadata"]["namespace"], item["metadata"]["name"])

    # -- thread
    def _policies_changed(self) -> bool:
        now = {f"{ns}/{name}": (self.runtime.primaries.get((KIND, ns, name)) or {}).get("metadata", {}).get(
            "generation") for _, ns, name in self.runtime.primaries.keys(KIND)}
        if now != self._generations:
            for ref, gen in now.items():
                if self._generations.get(ref) != gen:
                    self._full_at.pop(ref, None)  # a changed policy is rescanned in full
            self._generations = now
            return True
        return False

    def run(self) -> None:
        log.info("risk scan loop: every %.3gs, and when a RiskPolicy changes", self.period)
        last = float("-inf")
        while not self._stop.wait(min(1.0, self.period)):
            try:
                if self._policies_changed() or time.monotonic() - last >= self.period:
                    last = time.monotonic()
                    self.tick()
            except Exception:  # noqa: BLE001 - the loop survives API hiccups; the next tick retries
                log.exception("risk scan tick failed")

    def start(self) -> ScanLoop:
        self.thread = threading.Thread(target=self.run, name="mpcloud-risk-scan", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread:
            self.thread.join(timeout=10)


def scan_loop(runtime: Any) -> ScanLoop:
    """Kind.loops entry of the RiskPolicy kind (leader only)."""
    return runtime.service("risk-scan", lambda: ScanLoop(runtime, report_book(runtime))).start()
