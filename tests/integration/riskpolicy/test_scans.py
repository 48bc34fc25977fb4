"""RiskPolicy's background scans and abnormal-traffic detection on the real API server, in the operator process:
PolicyReports appear and update, status counts, Events once per new finding, exceptions.

The traffic test covers the path from the series source on (the risk operator reads a replay file through
riskpolicy/series.py's ReplayFile: 500 past values warm the detector up, the rest play live at 5 a second), not
Prometheus itself: PrometheusRates is unit-tested against the range query's shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

GROUP, VERSION = "mpcloud.io", "v1alpha1"
AWS = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key id: detect-secrets' AWS plugin matches it
RIC = "11010519491231002X"  # a checksum-valid resident ID number (the standard's example)
SCANS_ONLY = {"admission": {"enabled": False}, "traffic": {"enabled": False}}


def leaky_source(extra: str = "") -> str:
    return (f"const AWS_KEY = '{AWS}';\n"
            f"// customer {RIC}\n"
            f"exports.main = async () => ({{ statusCode: 200, body: 'ok' }});\n{extra}")


def create_function(risk, name: str, code: str) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CloudFunction", "metadata": {"name": name},
            "spec": {"runtime": "nodejs20", "source": {"inline": {"files": {"index.js": code}}}}}
    risk.custom.create_namespaced_custom_object(GROUP, VERSION, risk.ns, "cloudfunctions", body)


def set_source(risk, name: str, code: str) -> None:
    risk.custom.patch_namespaced_custom_object(GROUP, VERSION, risk.ns, "cloudfunctions", name,
                                               {"spec": {"source": {"inline": {"files": {"index.js": code}}}}})


def report(risk, name: str = "mpcloud-risk") -> dict | None:
    from kubernetes import client

    try:
        return risk.custom.get_namespaced_custom_object("wgpolicyk8s.io", "v1alpha2", risk.ns, "policyreports", name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def results_for(rep: dict | None, name: str) -> list[dict]:
    return [r for r in (rep or {}).get("results") or [] if r["result"] != "pass"
            and r["resources"][0]["name"] == name]


def policy_status(risk) -> dict:
    return risk.custom.get_namespaced_custom_object(GROUP, VERSION, risk.ns, "riskpolicies", "risk").get("status") or {}


def events(risk, name: str, reason: str) -> list:
    return [e for e in risk.core.list_namespaced_event(risk.ns, field_selector=f"reason={reason}").items
            if e.involved_object.name == name]


def metric(op, sample: str, **labels) -> float:
    """A sample of the operator's /metrics (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(op.metrics()):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_a_planted_secret_and_id_number_are_reported_then_cleared(risk, risk_operator):
    risk.policy(SCANS_ONLY)
    create_function(risk, "checkout", leaky_source())
    rep = wait_until(lambda: (r := report(risk)) and len(results_for(r, "checkout")) == 2 and r, 30,
                     what="the PolicyReport with the function's two findings")
    found = {r["rule"]: r for r in results_for(rep, "checkout")}
    assert set(found) == {"scans.secrets", "scans.personalData"}
    assert found["scans.secrets"]["message"].startswith("AWS Access Key in spec.source.inline.files.index.js line 1")
    assert found["scans.personalData"]["message"].startswith("resident ID number in spec.source.inline.files.index.js "
                                                             "line 2")
    assert {r["result"] for r in found.values()} == {"warn"}  # Audit
    assert AWS not in str(rep) and RIC not in str(rep)  # redacted: a hash prefix, never the text
    assert rep["metadata"]["ownerReferences"][0]["kind"] == "RiskPolicy"
    assert rep["summary"]["warn"] == 2 and rep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mpcloud"
    status = wait_until(lambda: (s := policy_status(risk)) and (s.get("findings") or {}).get("scans") == 2 and s,
                        30, what="status.findings.scans = 2")
    assert status["lastScanTime"]
    # One Warning Event per new finding, not one per scan: let several scan ticks pass.
    warned = wait_until(lambda: len(events(risk, "checkout", "PolicyViolation")) == 2
                        and events(risk, "checkout", "PolicyViolation"), 30, what="two PolicyViolation Events")
    ticks = metric(risk_operator, "mpcloud_risk_scan_tick_seconds_count")
    wait_until(lambda: metric(risk_operator, "mpcloud_risk_scan_tick_seconds_count") >= ticks + 3, 30,
               what="three more scan ticks")
    again = events(risk, "checkout", "PolicyViolation")
    assert len(again) == 2 and all((e.count or 1) == 1 for e in again)
    assert all(e.type == "Warning" and e.message.endswith(f"(RiskPolicy {risk.ns}/risk, Audit)") for e in warned)

    set_source(risk, "checkout", "exports.main = async () => ({ statusCode: 200, body: process.env.GREETING });\n")
    wait_until(lambda: (r := report(risk)) and not results_for(r, "checkout"), 30,
               what="the report without the function's findings")
    wait_until(lambda: (policy_status(risk).get("findings") or {}).get("scans") == 0, 30,
               what="status.findings.scans = 0")
    assert report(risk)["summary"]["pass"] >= 2  # the rules still run and pass


def test_enforce_mode_and_an_exception(risk):
    risk.policy({**SCANS_ONLY, "scans": {"mode": "Enforce"},
                 "exceptions": [{"name": "test-fixtures", "names": ["fixtures"], "rules": ["scans.secrets"],
                                 "reason": "documented example keys"}]})
    create_function(risk, "fixtures", leaky_source())
    create_function(risk, "leaky", leaky_source())
    rep = wait_until(lambda: (r := report(risk)) and len(results_for(r, "leaky")) == 2 and r, 30,
                     what="the leaky function's findings")
    assert {r["result"] for r in results_for(rep, "leaky")} == {"fail"}  # Enforce: fail results
    # The exempt function keeps only the rule it is not exempt from (in the same report write).
    assert [r["rule"] for r in results_for(rep, "fixtures")] == ["scans.personalData"]


def test_a_bot_burst_raises_one_finding_and_an_abnormal_traffic_event(risk, risk_operator):
    risk.policy({"admission": {"enabled": False}, "scans": {"enabled": False}})
    rate = 40 + 2 * np.random.default_rng(0).normal(size=620)  # requests/s; seed 0 raises no false alarm
    rate[560:572] = 480  # the bot burst: 12 ticks at 12x
    risk_operator.replay.add("MiniProgramApp", risk.ns, "shop", rate)
    risk.create_app("shop")
    event = wait_until(lambda: events(risk, "shop", "AbnormalTraffic"), 60, what="an AbnormalTraffic Event")[0]
    assert event.type == "Warning" and event.message.startswith("[traffic.anomaly] abnormal request rate 480/s")
    assert event.message.endswith(f"(RiskPolicy {risk.ns}/risk, Audit)")
    rep = wait_until(lambda: (r := report(risk)) and results_for(r, "shop") and r, 30, what="the traffic finding")
    (res,) = results_for(rep, "shop")
    assert (res["rule"], res["result"], res["resources"][0]["kind"]) == ("traffic.anomaly", "warn", "MiniProgramApp")
    wait_until(lambda: (policy_status(risk).get("findings") or {}).get("traffic") == 1, 30,
               what="status.findings.traffic = 1")
    assert metric(risk_operator, "mpcloud_risk_traffic_anomalies_total", namespace=risk.ns, kind="MiniProgramApp",
                  name="shop") == 1
    # The rest of the burst and of the series (48 more values) plays within the cooldown: still one finding.
    ticks = metric(risk_operator, "mpcloud_risk_traffic_tick_seconds_count")
    wait_until(lambda: metric(risk_operator, "mpcloud_risk_traffic_tick_seconds_count") >= ticks + 60, 60,
               what="the rest of the series to play")
    assert len(results_for(report(risk), "shop")) == 1 and len(events(risk, "shop", "AbnormalTraffic")) == 1
