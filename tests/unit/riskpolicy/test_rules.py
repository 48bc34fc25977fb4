"""The guardrails as pure functions: one table of objects and the findings each policy makes of them."""

from datetime import datetime, timezone

import pytest

from mpcloud_operator.riskpolicy.model import RiskPolicy
from mpcloud_operator.riskpolicy.rules import applicable, enforces, evaluate

NOW = datetime(2026, 11, 11, 12, 0, tzinfo=timezone.utc)


def policy(spec=None, namespace="team", name="risk"):
    return RiskPolicy.model_validate({"metadata": {"name": name, "namespace": namespace}, "spec": spec or {}})


def app(name="shop", image="registry.example.com/team/shop:1.2", **spec):
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp",
            "metadata": {"name": name, "namespace": "team", "labels": spec.pop("labels", {})},
            "spec": {"image": image, "ports": [{"name": "http", "containerPort": 8080}], **spec}}


def pod(**spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team"},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27", **spec.pop("container", {})}], **spec}}


def rules(findings):
    return sorted({f.rule for f in findings})


RESTRICTED = {"securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                  "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
              "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}

CASES = [
    ("clean app", {}, app(), []),
    ("latest tag", {}, app(image="nginx"), ["admission.images"]),
    ("explicit latest", {}, app(image="nginx:latest"), ["admission.images"]),
    ("latest but pinned", {}, app(image="nginx@sha256:" + "a" * 64), []),
    ("registry allowlist", {"admission": {"images": {"allowedRegistries": ["ghcr.io/team"]}}},
     app(), ["admission.images"]),
    ("registry allowlist ok", {"admission": {"images": {"allowedRegistries": ["registry.example.com"]}}}, app(), []),
    ("docker hub spelled out", {"admission": {"images": {"allowedRegistries": ["docker.io/library"]}}},
     app(image="nginx:1.27"), []),
    ("digest required", {"admission": {"images": {"requireDigest": True}}}, app(), ["admission.images"]),
    ("unsandboxed app", {}, app(sandbox={"runtimeClassName": "none", "allowUnsandboxed": True}),
     ["admission.sandbox"]),
    ("secret env", {}, app(env=[{"name": "DB_PASSWORD", "value": "hunter2"}]), ["admission.secretEnv"]),
    ("secret from ref ok", {}, app(env=[{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s",
                                                                                          "key": "k"}}}]), []),
    ("credential value", {}, app(env=[{"name": "URL", "value": "postgres://u:pw@db:5432/x"}]),
     ["admission.secretEnv"]),
    ("rule switched off", {"admission": {"images": {"enabled": False}}}, app(image="nginx"), []),
    ("admission off", {"admission": {"enabled": False}}, app(image="nginx"), []),
    ("policy off", {"enabled": False}, app(image="nginx"), []),
    ("exception by name", {"exceptions": [{"name": "legacy", "names": ["shop"], "rules": ["admission.images"]}]},
     app(image="nginx"), []),
    ("exception by group", {"exceptions": [{"name": "legacy", "names": ["shop"], "rules": ["admission"]}]},
     app(image="nginx"), []),
    ("exception other rule", {"exceptions": [{"name": "legacy", "names": ["shop"], "rules": ["admission.sandbox"]}]},
     app(image="nginx"), ["admission.images"]),
    ("exception by label", {"exceptions": [{"name": "l", "selector": {"matchLabels": {"risk": "legacy"}}}]},
     app(image="nginx", labels={"risk": "legacy"}), []),
    ("pods ignored without workloads", {}, pod(), []),
    ("restricted pod", {"admission": {"workloads": True}}, pod(runtimeClassName="kata", container=RESTRICTED), []),
    ("bare pod", {"admission": {"workloads": True}}, pod(),
     ["admission.podSecurity", "admission.resources", "admission.sandbox"]),
    ("privileged pod", {"admission": {"workloads": True}},
     pod(runtimeClassName="kata", hostNetwork=True,
         container={**RESTRICTED, "securityContext": {**RESTRICTED["securityContext"], "privileged": True}}),
     ["admission.privileged"]),
]


@pytest.mark.parametrize("spec,obj,want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_admission_rules(spec, obj, want):
    assert rules(evaluate(policy(spec), obj, None, NOW)) == want


def test_modes_and_messages():
    p = policy({"admission": {"mode": "Enforce", "secretEnv": {"mode": "Audit"}}})
    found = evaluate(p, app(image="nginx", env=[{"name": "TOKEN", "value": "x"}]), None, NOW)
    by_rule = {f.rule: f for f in found}
    assert by_rule["admission.images"].result == "fail" and by_rule["admission.secretEnv"].result == "warn"
    assert by_rule["admission.images"].message == "image nginx uses the latest tag (name a version or pin a digest)"
    assert by_rule["admission.images"].policy == "team/risk"
    assert rules(evaluate(p, app(image="nginx"), None, NOW, modes=("Audit",))) == []
    assert enforces(p) and not enforces(policy({})) and not enforces(policy({"enabled": False, **{}}))


def test_pipeline_steps_are_checked():
    pl = {"kind": "Pipeline", "metadata": {"name": "ci", "namespace": "team"},
          "spec": {"tasks": [{"name": "build", "taskSpec": {"steps": [{"name": "compile", "image": "golang"}]}}]}}
    [f] = evaluate(policy(), pl, None, NOW)
    assert f.rule == "admission.images" and "task build step compile" in f.message
    run = {"kind": "PipelineRun", "metadata": {"name": "r", "namespace": "team"},
           "spec": {"pipelineRef": {"name": "ci"}, "sandbox": {"runtimeClassName": "", "allowUnsandboxed": True}}}
    assert rules(evaluate(policy(), run, None, NOW)) == ["admission.sandbox"]


FREEZE = {"opsRisk": {"mode": "Enforce", "freezeWindows": [
    {"name": "double-11", "start": "2026-11-11T00:00:00Z", "end": "2026-11-12T00:00:00Z", "reason": "Double 11"}]}}


def test_freeze_window_blocks_an_image_change_only_inside_it():
    old, new = app(image="shop:1.1"), app(image="shop:1.2")
    [f] = evaluate(policy(FREEZE), new, old, NOW)
    assert f.rule == "opsRisk.freeze" and f.result == "fail"
    assert f.message == ("image rollout shop:1.1 -> shop:1.2 refused: change freeze double-11 (Double 11) until "
                         "2026-11-12T00:00:00+00:00")
    assert evaluate(policy(FREEZE), new, old, datetime(2026, 11, 12, tzinfo=timezone.utc)) == []
    assert evaluate(policy(FREEZE), new, None, NOW) == []  # a new app is no rollout
    assert evaluate(policy(FREEZE), app(image="shop:1.1", replicas={"min": 3}), old, NOW) == []  # no image change
    other = {"opsRisk": {**FREEZE["opsRisk"], "freezeWindows": [{**FREEZE["opsRisk"]["freezeWindows"][0],
                                                                 "apps": ["cart"]}]}}
    assert evaluate(policy(other), new, old, NOW) == []


def test_promotion_event_freezes_the_app():
    events = {"events": [{"name": "flash-sale", "start": "2026-11-11T11:00:00Z", "end": "2026-11-11T13:00:00Z",
                          "expectedMultiplier": 30}]}
    old, new = app(image="shop:1.1", scaling=events), app(image="shop:1.2", scaling={})
    [f] = evaluate(policy({"opsRisk": {"mode": "Enforce"}}), new, old, NOW)
    assert "promotion event flash-sale" in f.message  # removing the event in the same edit does not escape it
    assert evaluate(policy({"opsRisk": {"mode": "Enforce", "freezeDuringEvents": False}}), new, old, NOW) == []


def test_one_rollout_at_a_time():
    old = app(image="shop:1.1")
    old["status"] = {"conditions": [{"type": "Progressing", "status": "True", "reason": "RollingOut",
                                     "message": "1 of 3 updated"}]}
    [f] = evaluate(policy({"opsRisk": {"mode": "Enforce"}}), app(image="shop:1.2"), old, NOW)
    assert f.rule == "opsRisk.rollout" and "still in progress" in f.message


def test_applicable_policies():
    own, default = policy(namespace="team"), policy({"clusterDefault": True}, namespace="mpcloud-system")
    stray = policy({"clusterDefault": True}, namespace="other")
    assert applicable([own, default, stray], "team", "mpcloud-system") == [own, default]
