import pytest
from pydantic import ValidationError

from mpcloud_operator.riskpolicy.findings import Finding, format_message, parse_message
from mpcloud_operator.riskpolicy.model import RULE_IDS, RiskPolicy


def policy(spec):
    return RiskPolicy.model_validate({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})


def test_defaults_cover_every_group_in_audit():
    p = policy({})
    assert p.spec.enabled and p.spec.admission.mode == "Audit" and p.spec.ops_risk.mode == "Audit"
    assert p.spec.scans.interval_seconds == 3600 and not p.spec.traffic.rate_limit_signal
    assert "admission.images" in RULE_IDS and "opsRisk.freeze" in RULE_IDS


def test_exception_needs_a_scope_and_known_rules():
    with pytest.raises(ValidationError, match="at least one of namespaces"):
        policy({"exceptions": [{"name": "e", "rules": ["admission"]}]})
    with pytest.raises(ValidationError, match="unknown rule"):
        policy({"exceptions": [{"name": "e", "names": ["a"], "rules": ["admission.nope"]}]})
    policy({"exceptions": [{"name": "e", "names": ["a"], "rules": ["admission", "opsRisk.freeze"]}]})


def test_freeze_window_order():
    with pytest.raises(ValidationError, match="end must be after start"):
        policy({"opsRisk": {"freezeWindows": [{"name": "w", "start": "2026-01-02T00:00:00Z",
                                               "end": "2026-01-01T00:00:00Z"}]}})


def test_finding_message_round_trip():
    f = Finding(rule="admission.images", message="image nginx:latest uses the latest tag", result="fail",
                policy="ns/p", kind="MiniProgramApp", namespace="ns", name="a")
    text = format_message(f)
    assert text == "[admission.images] image nginx:latest uses the latest tag (RiskPolicy ns/p, Enforce)"
    back = parse_message(text, {"kind": "MiniProgramApp", "namespace": "ns", "name": "a"})
    assert back == Finding(rule="admission.images", message="image nginx:latest uses the latest tag",
                           result="fail", policy="ns/p", kind="MiniProgramApp", namespace="ns", name="a")
    assert parse_message("something else") is None
