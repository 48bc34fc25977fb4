"""PolicyReports (wgpolicyk8s.io/v1alpha2, the shape Kyverno writes): pure builders of the report and its CRDs.

One PolicyReport per namespace per RiskPolicy, named `mpcloud-<policy>` (a cluster-default policy's report in each
namespace it covers is named `mpcloud-<policy-namespace>-<policy>`), labelled as Kyverno labels its own
(`app.kubernetes.io/managed-by`), so report tooling (policy-reporter, kubectl get polr) reads it. The operator
server-side applies the whole object with its own field manager: results that are gone simply drop out.

The CRD schema here is written for mpcloud with the field names and enums of the working group's v1alpha2 API
(kubernetes-sigs/wg-policy-prototypes, Apache-2.0); it is not a copy of the upstream YAML. A cluster that already
has the upstream (or Kyverno's) CRD keeps it: installing ours over it is only needed where none exists.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone

from .findings import Finding

GROUP = "wgpolicyk8s.io"
VERSION = "v1alpha2"
API_VERSION = f"{GROUP}/{VERSION}"
SOURCE = "mpcloud"
FIELD_MANAGER = "mpcloud-risk-report"
MAX_RESULTS = 500  # bounded: an object is at most ~1.5 MiB; ~1 KiB a result leaves ample room
SEVERITY = {"scans.secrets": "high", "scans.personalData": "high", "traffic.anomaly": "high",
            "scans.images": "medium", "scans.content": "medium"}
RESULTS = ("pass", "fail", "warn", "error", "skip")


def report_name(policy_namespace: str, policy_name: str, namespace: str) -> str:
    name = f"mpcloud-{policy_name}" if policy_namespace == namespace else f"mpcloud-{policy_namespace}-{policy_name}"
    if len(name) > 253:
        name = name[:242] + "-" + hashlib.sha256(name.encode()).hexdigest()[:10]
    return name


def result_of(f: Finding, when: datetime) -> dict:
    res = {"kind": f.kind, "name": f.name, "namespace": f.namespace}
    if f.api_version:
        res["apiVersion"] = f.api_version
    return {
        "source": SOURCE, "policy": f.policy, "rule": f.rule, "category": f.group,
        "result": f.result, "severity": SEVERITY.get(f.rule, "medium"), "scored": True,
        "message": f.message[:1024], "resources": [res],
        "properties": {k: str(v)[:256] for k, v in sorted(f.properties.items())},
        "timestamp": {"seconds": int(when.timestamp()), "nanos": 0},
    }


def _key(r: dict) -> tuple:
    res = r["resources"][0]
    return (r["rule"], res["kind"], res["name"], r["properties"].get("field", ""), r["properties"].get("line", ""),
            r["message"])


def build_report(policy: dict, namespace: str, findings: Iterable[Finding], passed_rules: Iterable[str] = (),
                 now: datetime | None = None, first_seen: dict | None = None) -> dict:
    """The PolicyReport for `namespace` from one RiskPolicy's current findings there.

    `passed_rules`: rules that ran in this namespace and found nothing (one `pass` result each, as Kyverno reports
    a passing rule). `first_seen`: the previous report's results by _key, so a finding keeps its timestamp across
    scans (the report changes only when the findings do). Results beyond MAX_RESULTS are dropped, fail before warn.
    """
    now = now or datetime.now(timezone.utc)
    meta = policy.get("metadata") or {}
    pname, pns = meta.get("name", ""), meta.get("namespace", "")
    results = {}
    for f in findings:
        r = result_of(f, now)
        k = _key(r)
        if first_seen and k in first_seen:
            r["timestamp"] = first_seen[k]
        results.setdefault(k, r)
    ordered = sorted(results.values(), key=lambda r: (r["result"] != "fail", _key(r)))[:MAX_RESULTS]
    failing = {r["rule"] for r in ordered}
    for rule in sorted(set(passed_rules) - failing):
        ordered.append({"source": SOURCE, "policy": f"{pns}/{pname}", "rule": rule, "category": rule.partition(".")[0],
                        "result": "pass", "scored": True, "message": "no findings",
                        "timestamp": {"seconds": int(now.timestamp()), "nanos": 0}})
    counts = Counter(r["result"] for r in ordered)
    return {
        "apiVersion": API_VERSION, "kind": "PolicyReport",
        "metadata": {"name": report_name(pns, pname, namespace), "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "mpcloud",
                                "mpcloud.io/riskpolicy": pname[:63], "mpcloud.io/riskpolicy-namespace": pns[:63]}},
        "results": ordered,
        "summary": {k: counts.get(k, 0) for k in RESULTS},
    }


def previous_timestamps(report: dict | None) -> dict:
    return {_key(r): r["timestamp"] for r in (report or {}).get("results") or [] if r.get("result") != "pass"
            and r.get("resources")}


def summary_line(report: dict) -> str:
    s = report.get("summary") or {}
    return " ".join(f"{k}={s.get(k, 0)}" for k in RESULTS)


# --- CRDs ----------------------------------------------------------------------------------------------------------

def _s(t="string", **kw):
    return {"type": t, **kw}


_REF = {"type": "object", "properties": {k: _s() for k in (
    "apiVersion", "kind", "name", "namespace", "uid", "resourceVersion", "fieldPath")}}
_SELECTOR = {"type": "object", "properties": {
    "matchLabels": {"type": "object", "additionalProperties": _s()},
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"], "properties": {
        "key": _s(), "operator": _s(), "values": {"type": "array", "items": _s()}}}}}}
_RESULT = {"type": "object", "required": ["policy"], "properties": {
    "source": _s(), "policy": _s(), "rule": _s(), "category": _s(), "message": _s(), "scored": _s("boolean"),
    "result": _s(enum=list(RESULTS)), "severity": _s(enum=["critical", "high", "low", "medium", "info"]),
    "properties": {"type": "object", "additionalProperties": _s()},
    "resources": {"type": "array", "items": _REF}, "resourceSelector": _SELECTOR,
    "timestamp": {"type": "object", "properties": {"seconds": _s("integer", format="int64"),
                                                   "nanos": _s("integer", format="int32")}}}}
_SUMMARY = {"type": "object", "properties": {k: _s("integer") for k in RESULTS}}


def _crd(kind: str, plural: str, short: str, scope: str) -> dict:
    cols = [{"name": "Kind", "type": "string", "jsonPath": ".scope.kind", "priority": 1},
            {"name": "Name", "type": "string", "jsonPath": ".scope.name", "priority": 1},
            *({"name": k.title(), "type": "integer", "jsonPath": f".summary.{k}"} for k in RESULTS),
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    schema = {"type": "object", "description": f"{kind}: results of policy rules (wgpolicyk8s.io v1alpha2 shape).",
              "properties": {"apiVersion": _s(), "kind": _s(), "metadata": {"type": "object"},
                             "scope": _REF, "scopeSelector": _SELECTOR, "summary": _SUMMARY,
                             "results": {"type": "array", "items": _RESULT}}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}"},
            "spec": {"group": GROUP, "scope": scope,
                     "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                               "singular": kind.lower(), "shortNames": [short]},
                     "versions": [{"name": VERSION, "served": True, "storage": True, "additionalPrinterColumns": cols,
                                   "schema": {"openAPIV3Schema": schema}}]}}


def report_crds() -> dict[str, dict]:
    """PolicyReport and ClusterPolicyReport CRDs, by file name under crds/."""
    return {f"{c['metadata']['name']}.yaml": c for c in (
        _crd("PolicyReport", "policyreports", "polr", "Namespaced"),
        _crd("ClusterPolicyReport", "clusterpolicyreports", "cpolr", "Cluster"))}
