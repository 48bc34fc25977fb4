"""The scan loop and the report book over the fake client: reports, exceptions, modes, Events once, status once."""

from __future__ import annotations

from mpcloud_operator.config import OperatorConfig
from mpcloud_operator.kinds import KINDS
from mpcloud_operator.riskpolicy import scan_loop
from mpcloud_operator.runtime import Runtime
from tests.fakes.kube import FakeClient

AWS = "AKIAIOSFODNN7EXAMPLE"
RIC = "11010519491231002X"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def policy(spec: dict | None = None, name: str = "risk", namespace: str = "shop") -> dict:
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "RiskPolicy",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
            "spec": spec or {}}


def function(name: str, code: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction",
            "metadata": {"name": name, "namespace": "shop", "labels": labels or {}},
            "spec": {"runtime": "nodejs20", "source": {"inline": {"files": {"index.js": code}}}}}


def setup(*objects: dict, clock: Clock | None = None) -> tuple[Runtime, FakeClient, scan_loop.ScanLoop]:
    kube = FakeClient(list(objects))
    rt = Runtime.for_kinds(kube, KINDS, config=OperatorConfig(risk_scan_seconds=5))
    for obj in kube.objects.values():
        if obj["apiVersion"].startswith("mpcloud.io/"):
            rt.primaries.put((obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]), obj)
    clock = clock or Clock()
    loop = scan_loop.ScanLoop(rt, scan_loop.ReportBook(kube, clock=clock), clock=clock)
    return rt, kube, loop


def report(kube: FakeClient, name: str = "mpcloud-risk", namespace: str = "shop") -> dict:
    return kube.objects[("PolicyReport", namespace, name)]


def failing(rep: dict) -> list[tuple[str, str, str]]:
    return sorted((r["rule"], r["resources"][0]["name"], r["result"]) for r in rep["results"] if r["result"] != "pass")


def test_findings_in_the_report_owned_by_the_policy_with_status_and_one_event_each():
    _, kube, loop = setup(policy(), function("leaky", f"const k = '{AWS}';\n// owner {RIC}\n"), function("ok", "x=1"))
    loop.tick()
    rep = report(kube)
    assert failing(rep) == [("scans.personalData", "leaky", "warn"), ("scans.secrets", "leaky", "warn")]
    assert rep["metadata"]["ownerReferences"][0]["uid"] == "uid-risk"
    assert {r["rule"] for r in rep["results"] if r["result"] == "pass"} == {"scans.content", "scans.images",
                                                                           "traffic.anomaly"}
    assert AWS not in str(rep) and RIC not in str(rep)
    assert sorted(kube.events()) == [("PolicyViolation", "Warning")] * 2
    scans, traffic = kube.status_writes()  # each group by its own field manager (the fake merges shallowly)
    assert scans["findings"] == {"scans": 2} and scans["lastScanTime"].endswith("Z")
    assert traffic == {"findings": {"traffic": 0}}
    writes = len(kube.writes())
    loop.tick()  # nothing changed: no report, status or Event write, and nothing rescanned
    assert len(kube.writes()) == writes


def test_a_cleaned_source_updates_the_report_and_an_exception_suppresses():
    _, kube, loop = setup(policy({"exceptions": [{"name": "fixture", "names": ["fixture"],
                                                  "rules": ["scans.secrets"]}]}),
                          function("leaky", f"k = '{AWS}'"), function("fixture", f"k = '{AWS}'"))
    loop.tick()
    assert failing(report(kube)) == [("scans.secrets", "leaky", "warn")]
    kube.put(function("leaky", "k = process.env.KEY"))  # a new resourceVersion: rescanned
    loop.tick()
    assert failing(report(kube)) == []
    assert kube.status_writes()[-1]["findings"] == {"scans": 0}


def test_rule_modes_and_a_rescan_when_the_policy_changes():
    rt, kube, loop = setup(policy({"scans": {"mode": "Enforce", "personalData": {"mode": "Audit"}}}),
                           function("leaky", f"k = '{AWS}'; id = '{RIC}'"))
    loop.tick()
    assert failing(report(kube)) == [("scans.personalData", "leaky", "warn"), ("scans.secrets", "leaky", "fail")]
    changed = policy({"scans": {"secrets": {"enabled": False}}})
    changed["metadata"]["generation"] = 2
    rt.primaries.put(("RiskPolicy", "shop", "risk"), changed)
    assert loop._policies_changed()
    loop.tick()
    assert failing(report(kube)) == [("scans.personalData", "leaky", "warn")]


def test_a_new_leader_reads_the_report_back_and_posts_no_second_event():
    _, kube, loop = setup(policy(), function("leaky", f"k = '{AWS}'"))
    loop.tick()
    events = len(kube.events())
    rt2 = Runtime.for_kinds(kube, KINDS, config=OperatorConfig())
    for key in (("RiskPolicy", "shop", "risk"), ("CloudFunction", "shop", "leaky")):
        rt2.primaries.put(key, kube.objects[key])
    scan_loop.ScanLoop(rt2, scan_loop.ReportBook(kube)).tick()
    assert len(kube.events()) == events


def test_reports_of_a_deleted_policy_are_deleted_and_derived_config_maps_skipped():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "leaky-source", "namespace": "shop",
          "ownerReferences": [{"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction", "name": "leaky"}]},
          "data": {"index.js": f"k = '{AWS}'"}}
    plain = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"},
             "data": {"owner": f"id {RIC}"}}
    rt, kube, loop = setup(policy(), cm, plain)
    loop.tick()
    assert failing(report(kube)) == [("scans.personalData", "settings", "warn")]
    rt.primaries.pop(("RiskPolicy", "shop", "risk"))
    loop.tick()
    assert ("PolicyReport", "shop", "mpcloud-risk") not in kube.objects


def test_a_cluster_default_covers_namespaces_with_mpcloud_objects():
    fn = function("leaky", f"k = '{AWS}'")
    _, kube, loop = setup(policy({"clusterDefault": True}, name="default", namespace="mpcloud-system"), fn)
    loop.tick()
    rep = report(kube, "mpcloud-mpcloud-system-default", "shop")
    assert failing(rep) == [("scans.secrets", "leaky", "warn")] and "ownerReferences" not in rep["metadata"]
