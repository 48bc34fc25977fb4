"""RiskPolicy guardrails on the real API server: enforce, audit, exceptions, freezes, and the operator down."""

from __future__ import annotations

import time
import uuid

import pytest
from kubernetes import client

from tests.integration.conftest import wait_until
from tests.integration.riskpolicy.conftest import utc

pytestmark = pytest.mark.integration

ENFORCE = {"admission": {"mode": "Enforce"}}


def test_enforce_rejects_naming_the_rule_and_the_policy(risk):
    risk.policy(ENFORCE)
    risk.wait_in_force()
    message = risk.refusal(risk.create_app, "latest", image="nginx")
    assert ("MiniProgramApp " + risk.ns + "/latest refused by risk policy: [admission.images] image nginx uses the "
            "latest tag (name a version or pin a digest) (RiskPolicy " + risk.ns + "/risk, Enforce)") in message
    assert "enforce.risk.mpcloud.io" in message  # the API server names the webhook
    unsandboxed = risk.refusal(risk.create_app, "bare", sandbox={"runtimeClassName": "none",
                                                                  "allowUnsandboxed": True})
    assert "[admission.sandbox] pods run without a sandbox" in unsandboxed
    secret = risk.refusal(risk.create_app, "leaky", env=[{"name": "DB_PASSWORD", "value": "hunter2"}])
    assert "[admission.secretEnv] env DB_PASSWORD passes a secret as a plain value" in secret
    risk.create_app("good")  # a clean app is admitted
    assert wait_until(lambda: risk.labels().get("risk.mpcloud.io/enforce") == "true", 30,
                      what="the leader to label the namespace as enforcing")
    # The refusal is a finding: a PolicyViolation Event (on the policy, since the object was never created).
    events = wait_until(lambda: [e for e in risk.findings() if e.involved_object.kind == "RiskPolicy"], 30,
                        what="a PolicyViolation Event")
    assert any(e.message.startswith("[admission.images] image nginx uses the latest tag") for e in events)


def test_audit_admits_with_a_warning_and_an_event(risk):
    risk.policy({"admission": {"mode": "Audit"}})
    attempt = iter(range(10**6))

    def warned():  # the API server returns admission warnings as Warning headers (kubectl prints them)
        name = f"audited-{next(attempt)}"
        _, _, headers = risk.create_app_with_headers(name, image="nginx:latest")
        return (name, headers.get("Warning")) if "[admission.images]" in (headers.get("Warning") or "") else None
    name, warning = wait_until(warned, 30, interval=0.5, what="an admission warning")
    assert (f"[admission.images] image nginx:latest uses the latest tag (name a version or pin a digest) "
            f"(RiskPolicy {risk.ns}/risk, Audit)") in warning
    assert risk.custom.get_namespaced_custom_object("mpcloud.io", "v1alpha1", risk.ns, "miniprogramapps", name)
    events = wait_until(lambda: [e for e in risk.findings() if e.involved_object.name == name], 30,
                        what="a PolicyViolation Event on the app")
    assert events[0].type == "Warning" and events[0].message.endswith(f"(RiskPolicy {risk.ns}/risk, Audit)")
    assert "risk.mpcloud.io/enforce" not in risk.labels()  # audit only: fail open, no label
    # The leader counts the findings into the policy's status.
    def counted():
        status = risk.custom.get_namespaced_custom_object("mpcloud.io", "v1alpha1", risk.ns, "riskpolicies",
                                                          "risk").get("status") or {}
        return status if (status.get("findings") or {}).get("admission") else None
    status = wait_until(counted, 45, what="status.findings.admission")
    assert status["recentFindings"][0]["rule"] == "admission.images"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


def test_exceptions_exempt_by_name_and_label(risk):
    risk.policy({**ENFORCE, "exceptions": [
        {"name": "legacy", "names": ["legacy"], "rules": ["admission.images"], "reason": "migrating"},
        {"name": "labelled", "selector": {"matchLabels": {"risk.mpcloud.io/exempt": "true"}}}]})
    risk.wait_in_force()
    risk.create_app("legacy", image="nginx")  # exempt from the image rule
    message = risk.refusal(risk.create_app, "legacy2", image="nginx")
    assert "[admission.images]" in message
    body = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp",
            "metadata": {"name": "tagged", "labels": {"risk.mpcloud.io/exempt": "true"}},
            "spec": {"image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}}
    risk.custom.create_namespaced_custom_object("mpcloud.io", "v1alpha1", risk.ns, "miniprogramapps", body)


def test_freeze_window_blocks_a_rollout_and_lets_it_through_after(risk):
    risk.create_app("shop", image="nginxinc/nginx-unprivileged:1.26")
    window_end = time.time() + 25
    risk.policy({"opsRisk": {"mode": "Enforce", "rollout": {"enabled": False}, "freezeWindows": [
        {"name": "double-11", "start": utc(-60), "end": utc(25), "reason": "Double 11"}]}})
    tags = iter(range(10**6))  # a new tag per attempt: one admitted before the policy arrived is no conflict
    message = wait_until(lambda: risk.refusal(risk.set_image, "shop", f"nginxinc/nginx-unprivileged:1.27-{next(tags)}"),
                         20, interval=0.5, what="the rollout to be refused")
    assert ("[opsRisk.freeze] image rollout nginxinc/nginx-unprivileged:1.2" in message
            and "refused: change freeze double-11 (Double 11) until" in message)
    risk.custom.patch_namespaced_custom_object("mpcloud.io", "v1alpha1", risk.ns, "miniprogramapps", "shop",
                                               {"spec": {"replicas": {"max": 4}}})  # not a rollout: admitted
    time.sleep(max(0.0, window_end - time.time()) + 1)
    assert risk.refusal(risk.set_image, "shop", "nginxinc/nginx-unprivileged:1.27") is None
    events = wait_until(lambda: [e for e in risk.findings() if e.involved_object.name == "shop"], 30,
                        what="the refused rollout's Event on the app")
    assert events[0].message.startswith("[opsRisk.freeze]")


def test_promotion_event_freezes_the_app_image(risk):
    risk.policy({"opsRisk": {"mode": "Enforce", "rollout": {"enabled": False}}})
    risk.create_app("promo", image="nginxinc/nginx-unprivileged:1.26", scaling={"events": [
        {"name": "flash-sale", "start": utc(-60), "end": utc(3600), "expectedMultiplier": 30}]})
    tags = iter(range(10**6))
    message = wait_until(lambda: risk.refusal(risk.set_image, "promo", f"nginxinc/nginx-unprivileged:1.27-{next(tags)}"),
                         30, interval=0.5, what="the rollout to be refused")
    assert "[opsRisk.freeze]" in message and "promotion event flash-sale" in message


def test_a_pipeline_deploy_in_a_freeze_window_fails_with_the_refusal(risk):
    """The deploy task's change goes through the API server: the freeze refuses it, the run says why."""
    risk.create_app("frozen", image="nginxinc/nginx-unprivileged:1.26")
    risk.policy({"opsRisk": {"mode": "Enforce", "rollout": {"enabled": False}, "freezeWindows": [
        {"name": "year-end", "start": utc(-60), "end": utc(3600), "reason": "year-end close"}]}})
    tags = iter(range(10**6))
    wait_until(lambda: risk.refusal(risk.set_image, "frozen", f"nginxinc/nginx-unprivileged:1.27-{next(tags)}"),
               20, interval=0.5, what="the freeze in force")
    before = risk.custom.get_namespaced_custom_object("mpcloud.io", "v1alpha1", risk.ns, "miniprogramapps",
                                                      "frozen")["spec"]["image"]  # a tag admitted before the freeze
    body = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "PipelineRun", "metadata": {"name": "ship"}, "spec": {
        "pipelineSpec": {"tasks": [{"name": "ship", "deploy": {"app": "frozen",
                                                               "image": "nginxinc/nginx-unprivileged:1.27"}}]}}}
    risk.custom.create_namespaced_custom_object("mpcloud.io", "v1alpha1", risk.ns, "pipelineruns", body)

    def failed():
        st = risk.custom.get_namespaced_custom_object("mpcloud.io", "v1alpha1", risk.ns, "pipelineruns",
                                                      "ship").get("status") or {}
        return next((t for t in st.get("tasks") or [] if t.get("status") == "Failed"), None)
    task = wait_until(failed, 60, what="the deploy task failed")
    assert task["reason"] == "DeployRefused", task
    assert "[opsRisk.freeze]" in task["message"] and "change freeze year-end (year-end close)" in task["message"]
    app = risk.custom.get_namespaced_custom_object("mpcloud.io", "v1alpha1", risk.ns, "miniprogramapps", "frozen")
    assert app["spec"]["image"] == before


def test_operator_down_fails_closed_for_enforce_and_open_for_audit(risk, risk_operator, api_client):
    """Last in the module: stops the operator (and starts it again for nothing after)."""
    risk.policy(ENFORCE)
    risk.wait_in_force()
    wait_until(lambda: risk.labels().get("risk.mpcloud.io/enforce") == "true", 30, what="the enforce label")
    audit_ns = f"t-risk-audit-{uuid.uuid4().hex[:5]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": audit_ns, "labels": {"mpcloud.io/test": "true"}}})
    try:
        audit = type(risk)(api_client, audit_ns)
        audit.policy({"admission": {"mode": "Audit"}})
        risk_operator.stop()
        down = risk.refusal(risk.create_app, "clean-while-down")  # even a clean app: nobody can check it
        assert down and "enforce.risk.mpcloud.io" in down and "failed calling webhook" in down
        assert audit.refusal(audit.create_app, "latest-while-down", image="nginx") is None  # Ignore: admitted
        risk_operator.start()
        wait_until(lambda: risk.refusal(risk.create_app, "clean-after") is None, 60,
                   what="admission back after the operator restarts")
    finally:
        core.delete_namespace(audit_ns, propagation_policy="Background")
