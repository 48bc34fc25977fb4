"""Scale-in limits during promotion events (the scaler's guard), pure."""

from datetime import datetime, timezone

from mpcloud_operator.riskpolicy.guardrails import limit_scale_in
from mpcloud_operator.riskpolicy.model import RiskPolicy

NOW = datetime(2026, 11, 11, 12, 0, tzinfo=timezone.utc)
APP = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp", "metadata": {"name": "shop", "namespace": "team"},
       "spec": {"scaling": {"events": [{"name": "flash-sale", "start": "2026-11-11T11:00:00Z",
                                        "end": "2026-11-11T13:00:00Z", "expectedMultiplier": 30}]}}}


def policy(scale_in, mode="Enforce"):
    return RiskPolicy.model_validate({"metadata": {"name": "risk", "namespace": "team"},
                                      "spec": {"opsRisk": {"mode": mode, "scaleIn": scale_in}}})


def test_min_replicas_and_step_hold_a_scale_in_during_an_event():
    allowed, [f] = limit_scale_in(APP, 20, 5, [policy({"minReplicas": 12})], "mpcloud-system", NOW)
    assert allowed == 12 and f.result == "fail"
    assert f.message == "scale-in 20 -> 5 during promotion event flash-sale exceeds minReplicas 12: held at 12"
    allowed, _ = limit_scale_in(APP, 20, 5, [policy({"maxStepPercent": 10})], "mpcloud-system", NOW)
    assert allowed == 18
    allowed, _ = limit_scale_in(APP, 3, 1, [policy({"maxStepPercent": 10})], "mpcloud-system", NOW)
    assert allowed == 2  # at least one replica per step


def test_no_limit_outside_events_for_scale_up_or_in_audit():
    later = datetime(2026, 11, 12, tzinfo=timezone.utc)
    assert limit_scale_in(APP, 20, 5, [policy({"minReplicas": 12})], "mpcloud-system", later) == (5, [])
    assert limit_scale_in(APP, 5, 20, [policy({"minReplicas": 12})], "mpcloud-system", NOW) == (20, [])
    allowed, [f] = limit_scale_in(APP, 20, 5, [policy({"minReplicas": 12}, mode="Audit")], "mpcloud-system", NOW)
    assert allowed == 5 and f.result == "warn" and f.message.endswith("allowed (Audit)")
    assert limit_scale_in(APP, 20, 13, [policy({"minReplicas": 12})], "mpcloud-system", NOW) == (13, [])
