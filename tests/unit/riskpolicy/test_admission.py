"""The admission review (pure), the webhook configuration builders and the certificate lifecycle."""

import base64
import datetime as dt
from types import SimpleNamespace

from cryptography import x509

from mpcloud_operator.riskpolicy import certs, webhooks
from mpcloud_operator.riskpolicy.admission import event_target, review
from mpcloud_operator.riskpolicy.model import RiskPolicy

NOW = dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc)


def policy(spec, namespace="team", name="risk"):
    return RiskPolicy.model_validate({"metadata": {"name": name, "namespace": namespace}, "spec": spec})


def request(image="nginx", operation="CREATE", namespace="team"):
    obj = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp",
           "metadata": {"name": "shop", "namespace": namespace}, "spec": {"image": image}}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "operation": operation, "namespace": namespace, "object": obj}}


def test_enforce_denies_naming_rule_and_policy():
    answer, found = review(request(), "enforce", [policy({"admission": {"mode": "Enforce"}})], "mpcloud-system", NOW)
    resp = answer["response"]
    assert resp["uid"] == "u1" and resp["allowed"] is False and resp["status"]["code"] == 403
    assert resp["status"]["message"] == (
        "MiniProgramApp team/shop refused by risk policy: [admission.images] image nginx uses the latest tag "
        "(name a version or pin a digest) (RiskPolicy team/risk, Enforce)")
    assert [f.result for f in found] == ["fail"]
    assert event_target(found[0], "CREATE")["kind"] == "RiskPolicy"  # no object yet: the Event goes on the policy
    assert event_target(found[0], "UPDATE")["kind"] == "MiniProgramApp"


def test_audit_admits_with_a_warning_and_each_webhook_sees_its_mode_only():
    audit = policy({"admission": {"mode": "Audit"}})
    answer, found = review(request(), "audit", [audit], "mpcloud-system", NOW)
    assert answer["response"]["allowed"] is True
    assert answer["response"]["warnings"] == [
        "[admission.images] image nginx uses the latest tag (name a version or pin a digest) (RiskPolicy team/risk, Audit)"]
    assert review(request(), "enforce", [audit], "mpcloud-system", NOW)[1] == []
    assert review(request(), "audit", [policy({"admission": {"mode": "Enforce"}})], "mpcloud-system", NOW)[1] == []


def test_other_namespaces_and_cluster_default():
    own = policy({"admission": {"mode": "Enforce"}}, namespace="other")
    assert review(request(), "enforce", [own], "mpcloud-system", NOW)[0]["response"]["allowed"] is True
    default = policy({"clusterDefault": True, "admission": {"mode": "Enforce"}}, namespace="mpcloud-system")
    assert review(request(), "enforce", [default], "mpcloud-system", NOW)[0]["response"]["allowed"] is False
    assert review(request(operation="DELETE"), "enforce", [default], "mpcloud-system", NOW)[0]["response"]["allowed"]


def test_selectors_and_labels_follow_the_policies():
    enforcing, auditing = policy({"admission": {"mode": "Enforce"}}), policy({}, namespace="b")
    sel = webhooks.selectors([enforcing, auditing], "mpcloud-system")
    assert sel["enforce"] == {"matchLabels": {webhooks.ENFORCE_LABEL: "true"}}
    assert webhooks.labelled_namespaces([enforcing, auditing], "mpcloud-system") == {
        webhooks.ENFORCE_LABEL: {"team"}, webhooks.WORKLOADS_LABEL: set()}
    default = policy({"clusterDefault": True, "opsRisk": {"mode": "Enforce"}}, namespace="mpcloud-system")
    assert webhooks.selectors([default], "mpcloud-system")["enforce"]["matchExpressions"][0]["values"] == ["kube-system"]


def test_configuration_failure_policies():
    config = SimpleNamespace(admission_url="https://127.0.0.1:9443", lease_namespace="mpcloud-system")
    conf = webhooks.configuration(webhooks.client_config(config), b"CA", webhooks.selectors([], "mpcloud-system"),
                                  "mpcloud-system")
    by_name = {w["name"]: w for w in conf["webhooks"]}
    assert by_name["enforce.risk.mpcloud.io"]["failurePolicy"] == "Fail"
    assert by_name["audit.risk.mpcloud.io"]["failurePolicy"] == "Ignore"
    assert by_name["workloads.risk.mpcloud.io"]["failurePolicy"] == "Ignore"
    assert by_name["enforce.risk.mpcloud.io"]["clientConfig"] == {"caBundle": base64.b64encode(b"CA").decode(),
                                                                  "url": "https://127.0.0.1:9443/enforce"}
    in_cluster = webhooks.client_config(SimpleNamespace(admission_url=None, lease_namespace="mpcloud-system"))
    assert in_cluster == {"service": {"name": "mpcloud-webhook", "namespace": "mpcloud-system", "port": 443}}


def test_certificates_are_renewed_before_expiry_and_the_ca_overlaps():
    hosts = ["127.0.0.1", "mpcloud-webhook.mpcloud-system.svc"]
    bundle = certs.fresh(hosts, NOW, dt.timedelta(days=90))
    cert = x509.load_pem_x509_certificate(bundle.tls_crt)
    ca = x509.load_pem_x509_certificate(bundle.ca_crt)
    cert.verify_directly_issued_by(ca)
    assert not certs.needs_renewal(bundle, hosts, NOW + dt.timedelta(days=59))
    assert certs.needs_renewal(bundle, hosts, NOW + dt.timedelta(days=61))  # a third of 90 days left
    assert certs.needs_renewal(bundle, hosts + ["new.example"], NOW)  # a new name
    later = NOW + dt.timedelta(days=61)
    renewed = certs.renewed(bundle, hosts, later, dt.timedelta(days=90))
    assert renewed.ca_crt == bundle.ca_crt and renewed.tls_crt != bundle.tls_crt
    x509.load_pem_x509_certificate(renewed.tls_crt).verify_directly_issued_by(ca)
    ca_due = NOW + dt.timedelta(days=certs.CA_DAYS * 2 // 3 + 1)
    rolled = certs.renewed(bundle, hosts, ca_due, dt.timedelta(days=90))
    assert rolled.ca_crt != bundle.ca_crt and rolled.ca_bundle == rolled.ca_crt + bundle.ca_crt  # old CA still trusted
    assert certs.Bundle.from_data(rolled.as_data()) == rolled


def test_finding_counts_from_events():
    from mpcloud_operator.riskpolicy.admission import finding_counts

    events = [
        {"message": "[admission.images] image nginx uses the latest tag (name a version or pin a digest) "
                    "(RiskPolicy team/risk, Enforce)", "count": 3, "lastTimestamp": "2026-12-04T03:00:00Z",
         "involvedObject": {"kind": "RiskPolicy", "name": "risk", "namespace": "team"}},
        {"message": "[opsRisk.freeze] image rollout a -> b refused: change freeze w until x (RiskPolicy team/risk, "
                    "Enforce)", "lastTimestamp": "2026-12-04T03:01:00Z",
         "involvedObject": {"kind": "MiniProgramApp", "name": "shop", "namespace": "team"}},
        {"message": "unrelated", "count": 9},
    ]
    got = finding_counts(events)["team/risk"]
    assert got["findings"] == {"admission": 3, "opsRisk": 1}
    assert [f["rule"] for f in got["recentFindings"]] == ["opsRisk.freeze", "admission.images"]
    assert got["recentFindings"][0]["resource"] == "MiniProgramApp/shop"
    RiskPolicy.model_validate({"metadata": {"name": "risk", "namespace": "team"}, "status": got})


def test_counts_follow_the_watched_violation_events():
    # The leader's counts come from a field-selected watch of PolicyViolation Events (no LIST per round): an
    # event's update replaces it, a deletion (TTL expiry) drops it, and nothing is written before the first sync.
    from mpcloud_operator.riskpolicy.admission import AdmissionServer

    writes = []
    kube = SimpleNamespace(apply_status=lambda obj, status, manager: writes.append((obj["metadata"]["name"], status)))
    config = SimpleNamespace(lease_namespace="mpcloud-system", admission_port=8443, admission_url=None,
                             admission_cert_seconds=86400, bind_address="127.0.0.1")
    server = AdmissionServer(kube, config)
    assert server.violations.field_selector == "reason=PolicyViolation"
    server.violations.start = lambda: server.violations  # the watch itself runs against a real API server only
    event = {"metadata": {"namespace": "team", "name": "shop.1"}, "count": 2, "lastTimestamp": "2026-12-04T03:00:00Z",
             "message": "[admission.images] image nginx uses the latest tag (name a version or pin a digest) "
                        "(RiskPolicy team/risk, Enforce)",
             "involvedObject": {"kind": "MiniProgramApp", "name": "shop", "namespace": "team"}}
    server._on_violation("ADDED", event)
    policies = [policy({})]
    server._write_counts(policies)
    assert writes == []  # not synced yet
    server.violations.synced.set()
    server._write_counts(policies)
    assert writes[-1][1]["findings"] == {"admission": 2, "opsRisk": 0}
    server._on_violation("MODIFIED", {**event, "count": 5})
    server._write_counts(policies)
    assert writes[-1][1]["findings"]["admission"] == 5
    server._on_violation("DELETED", event)
    server._write_counts(policies)
    assert writes[-1][1]["findings"]["admission"] == 0 and len(writes) == 3
