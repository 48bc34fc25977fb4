"""PolicyReport builder: Kyverno's shape, summary counts, stable timestamps, bounded size; the CRDs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mpcloud_operator.riskpolicy import reports, scan
from mpcloud_operator.riskpolicy.findings import Finding

POLICY = {"metadata": {"name": "risk", "namespace": "ns"}}
T0 = datetime(2026, 12, 4, 4, 0, tzinfo=timezone.utc)


def finding(name="f", rule="scans.secrets", result="warn", line="1"):
    return Finding(rule=rule, message=f"AWS Access Key in spec.x line {line}", result=result, policy="ns/risk",
                   kind="CloudFunction", api_version="mpcloud.io/v1alpha1", namespace="ns", name=name,
                   properties={"field": "spec.x", "line": line})


def test_report_shape_and_summary():
    r = reports.build_report(POLICY, "ns", [finding(), finding("g", result="fail")],
                             passed_rules=["scans.secrets", "scans.images"], now=T0)
    assert (r["apiVersion"], r["kind"], r["metadata"]["name"]) == ("wgpolicyk8s.io/v1alpha2", "PolicyReport",
                                                                    "mpcloud-risk")
    assert r["summary"] == {"pass": 1, "fail": 1, "warn": 1, "error": 0, "skip": 0}
    first = r["results"][0]
    assert first["result"] == "fail" and first["resources"] == [
        {"kind": "CloudFunction", "name": "g", "namespace": "ns", "apiVersion": "mpcloud.io/v1alpha1"}]
    assert first["severity"] == "high" and first["timestamp"] == {"seconds": int(T0.timestamp()), "nanos": 0}
    assert [x["rule"] for x in r["results"] if x["result"] == "pass"] == ["scans.images"]


def test_timestamps_kept_and_fixed_findings_drop_out():
    r1 = reports.build_report(POLICY, "ns", [finding(), finding("g")], now=T0)
    later = T0 + timedelta(hours=1)
    r2 = reports.build_report(POLICY, "ns", [finding()], now=later, first_seen=reports.previous_timestamps(r1))
    assert len(r2["results"]) == 1 and r2["results"][0]["timestamp"]["seconds"] == int(T0.timestamp())
    assert r2["summary"]["warn"] == 1


def test_bounded_and_named_for_cluster_default():
    many = [finding(line=str(i)) for i in range(reports.MAX_RESULTS + 100)] + [finding("z", result="fail")]
    r = reports.build_report({"metadata": {"name": "d", "namespace": "mpcloud-system"}}, "team", many, now=T0)
    assert len(r["results"]) == reports.MAX_RESULTS and r["results"][0]["result"] == "fail"
    assert r["metadata"]["name"] == "mpcloud-mpcloud-system-d"


def test_scan_findings_reach_the_report_redacted():
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"},
           "data": {"a": "AKIAIOSFODNN7EXAMPLE id 11010519491231002X"}}
    s = scan.ScanSettings()
    r = reports.build_report(POLICY, "ns", scan.to_findings(obj, scan.scan_object(obj, s), s, "ns/risk"), now=T0)
    assert r["summary"]["warn"] == 2
    assert "AKIA" not in str(r) and "11010519491231002X" not in str(r)


def test_crds():
    crds = reports.report_crds()
    assert set(crds) == {"policyreports.wgpolicyk8s.io.yaml", "clusterpolicyreports.wgpolicyk8s.io.yaml"}
    v = crds["policyreports.wgpolicyk8s.io.yaml"]["spec"]["versions"][0]
    assert v["name"] == "v1alpha2" and "results" in v["schema"]["openAPIV3Schema"]["properties"]
