"""The deploy and canary state machines (pure): readiness of a target, the deploy wait, canary steps, analysis
limits, promotion, rollback, and that a status written and read back continues without repeating a step."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from mpcloud_operator.pipeline import deploy
from mpcloud_operator.pipeline.deploy_model import Analysis, CanaryTask

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def app(generation=2, observed=2, ready="True", reason="ReplicasAvailable", progressing=("False", "RolloutComplete"),
        degraded=("False", "AsExpected"), image="shop:1", replicas=4, exists=True, kind="MiniProgramApp",
        status=None) -> deploy.Target:
    if not exists:
        return deploy.Target(kind, "shop", exists=False)
    conds = {"Ready": {"type": "Ready", "status": ready, "reason": reason, "message": "2/2", "observedGeneration": observed},
             "Progressing": {"type": "Progressing", "status": progressing[0], "reason": progressing[1],
                             "observedGeneration": observed},
             "Degraded": {"type": "Degraded", "status": degraded[0], "reason": degraded[1], "message": "bad",
                          "observedGeneration": observed}}
    return deploy.Target(kind, "shop", True, generation, observed, conds, status or {}, image, replicas)


class Effects:
    def __init__(self, generation=3, refuse="", values=()):
        self.generation, self.refuse = generation, refuse
        self.values = list(values)
        self.set: list = []
        self.measured: list[str] = []

    def set_target(self, target, change):
        self.set.append((target.name, change))
        return (None, self.refuse) if self.refuse else (self.generation, "")

    def measure(self, analysis):
        self.measured.append(analysis.name)
        value = self.values.pop(0)
        return (None, value) if isinstance(value, str) else (value, "")


# ---------------------------------------------------------------- readiness

@pytest.mark.parametrize("target, state, reason", [
    (app(), "ok", ""),
    (app(observed=1), "waiting", ""),
    (app(progressing=("True", "RollingOut")), "waiting", ""),
    (app(progressing=("True", "Scaling")), "ok", ""),  # the rollout is done; only replicas move
    (app(ready="False", reason="NoReplicasAvailable"), "waiting", ""),
    (app(ready="False", reason="InvalidSpec"), "failed", "InvalidSpec"),
    (app(degraded=("True", "ProgressDeadlineExceeded")), "failed", "ProgressDeadlineExceeded"),
    (app(exists=False), "failed", "TargetNotFound"),
    (app(kind="CloudFunction", reason="Serving", status={"servingGeneration": 2}), "ok", ""),
    (app(kind="CloudFunction", reason="Serving", status={"servingGeneration": 1, "codeHash": "b",
                                                          "servingHash": "a"}), "waiting", ""),
    (app(kind="CloudFunction", reason="ScaledToZero", status={"servingGeneration": 1}), "ok", ""),
    (app(kind="CloudFunction", ready="False", reason="BuildFailed"), "failed", "BuildFailed"),
])
def test_readiness(target, state, reason):
    verdict = deploy.readiness(target, 2)
    assert (verdict.state, verdict.reason) == (state, reason), verdict


# ---------------------------------------------------------------- deploy

def test_deploy_sets_the_image_once_then_waits_for_ready_at_the_new_generation():
    fx = Effects(generation=3)
    step = deploy.advance_deploy(None, app(image="shop:1"), "shop:2", T0, T0, None, fx)
    assert fx.set == [("shop", "shop:2")] and step.outcome is None and step.wake == deploy.POLL
    assert step.status == {"target": "MiniProgramApp/shop", "generation": 3, "previous": "shop:1"}
    # read back from the run's status (an operator restart): not set again
    stored = json.loads(json.dumps(step.status))
    step = deploy.advance_deploy(stored, app(generation=3, observed=3, image="shop:2",
                                             progressing=("True", "RollingOut")), "shop:2", T0, T0, None, fx)
    assert fx.set == [("shop", "shop:2")] and step.outcome is None
    step = deploy.advance_deploy(stored, app(generation=3, observed=3), "shop:2", T0, T0 + timedelta(seconds=9), None, fx)
    assert step.outcome[0] == "Succeeded" and "Ready at generation 3" in step.outcome[2]


def test_deploy_refused_by_admission_fails_with_its_message():
    fx = Effects(refuse="MiniProgramApp t/shop refused by risk policy: image rollout shop:1 -> shop:2 refused: "
                        "change freeze black-friday until 2026-12-05T00:00:00+00:00")
    step = deploy.advance_deploy(None, app(), "shop:2", T0, T0, None, fx)
    assert step.outcome[:2] == ("Failed", "DeployRefused")
    assert "change freeze black-friday" in step.outcome[2]


def test_deploy_fails_with_the_targets_reason_or_on_timeout():
    st = {"target": "MiniProgramApp/shop", "generation": 3}
    step = deploy.advance_deploy(st, app(generation=3, observed=3, degraded=("True", "ProgressDeadlineExceeded")),
                                 "x", T0, T0, 60, Effects())
    assert step.outcome[:2] == ("Failed", "ProgressDeadlineExceeded")
    waiting = app(generation=3, observed=3, progressing=("True", "RollingOut"))
    step = deploy.advance_deploy(st, waiting, "x", T0, T0 + timedelta(seconds=59), 60, Effects())
    assert step.outcome is None and step.wake == 1
    step = deploy.advance_deploy(st, waiting, "x", T0, T0 + timedelta(seconds=60), 60, Effects())
    assert step.outcome[:2] == ("TimedOut", "TaskTimeout") and "not Ready within 60s" in step.outcome[2]
    assert "RollingOut" in step.outcome[2]
    step = deploy.advance_deploy(None, app(exists=False), "x", T0, T0, 60, Effects())
    assert step.outcome[:2] == ("Failed", "TargetNotFound")


# ---------------------------------------------------------------- canary

def analysis(**kw) -> dict:
    return {"name": "error-rate", "query": "q", "interval": "10s", "count": 3, "successCondition": "result < 0.05",
            **kw}


CANARY = CanaryTask.model_validate({"app": "shop", "image": "shop:2", "steps": [
    {"weight": 25}, {"pause": "30s"}, {"analysis": analysis()}, {"weight": 50}]})


class Run:
    """Drives advance_canary the way the executor does, round-tripping the status through JSON each time."""

    def __init__(self, spec=CANARY, fx=None, target=None, timeout=None):
        self.spec, self.fx = spec, fx or Effects()
        self.target = target or app()
        self.status = None
        self.ready_replicas = 0
        self.timeout = timeout

    def at(self, seconds: float) -> deploy.Step:
        step = deploy.advance_canary(self.status, self.spec, self.target, lambda n: self.ready_replicas >= n,
                                     T0, T0 + timedelta(seconds=seconds), self.timeout, self.fx)
        self.status = json.loads(json.dumps(step.status, default=str))
        return step


def test_canary_replicas_are_a_share_of_the_apps():
    assert [deploy.canary_replicas(w, 4) for w in (1, 25, 50, 100)] == [1, 1, 2, 4]
    assert deploy.canary_replicas(20, 0) == 1


def test_canary_goes_through_its_steps_and_is_promoted():
    r = Run(fx=Effects(generation=3, values=[0.01, 0.02, 0.0]))
    step = r.at(0)
    assert step.canary_replicas == 1 and r.status["step"] == 0 and step.outcome is None  # weight 25 of 4
    assert r.status["stableImage"] == "shop:1"
    r.ready_replicas = 1
    step = r.at(1)  # ready: on to the pause
    assert r.status["step"] == 1 and step.wake == 30 and step.canary_replicas == 1
    step = r.at(31)  # pause over, first measurement at once
    assert r.status["step"] == 2 and r.fx.measured == ["error-rate"] and step.wake == 10
    assert r.status["analysis"]["successful"] == 1
    r.at(35)  # not due: nothing measured
    assert r.fx.measured == ["error-rate"]
    r.at(41)
    step = r.at(51)
    assert r.fx.measured == ["error-rate"] * 3 and r.status["step"] == 3 and step.canary_replicas == 2
    r.ready_replicas = 2
    step = r.at(52)
    assert r.status["phase"] == "Promoting" and r.fx.set == [("shop", "shop:2")]
    assert step.canary_replicas == 2  # serves until the stable pods run the new image
    r.target = app(generation=3, observed=3, progressing=("True", "RollingOut"))
    assert r.at(53).outcome is None and r.fx.set == [("shop", "shop:2")]  # set once
    r.target = app(generation=3, observed=3, image="shop:2")
    step = r.at(60)
    assert step.outcome[:2] == ("Succeeded", "Promoted") and step.canary_replicas == 0
    assert r.status["phase"] == "Promoted" and r.status["promotion"]["generation"] == 3


def test_failed_analysis_rolls_back_naming_metric_value_and_condition():
    spec = CanaryTask.model_validate({"app": "shop", "image": "shop:2", "steps": [
        {"weight": 25}, {"analysis": analysis(failureLimit=1)}]})
    r = Run(spec, Effects(values=[0.01, 0.31, 0.42]))
    r.ready_replicas = 1
    r.at(0)
    r.at(10)
    assert r.status["analysis"]["failed"] == 1 and r.status["phase"] == "Progressing"  # within failureLimit 1
    step = r.at(20)
    state, reason, message = step.outcome
    assert (state, reason) == ("Failed", "AnalysisFailed") and step.canary_replicas == 0
    assert "analysis error-rate: value 0.42" in message and "successCondition 'result < 0.05' did not hold" in message
    assert "stable image shop:1 kept" in message and r.fx.set == []  # the app is never touched
    assert r.status["phase"] == "RolledBack"
    assert r.at(30).outcome is None and r.fx.measured == ["error-rate"] * 3  # done: nothing more happens


def test_failure_condition_and_inconclusive_and_errors():
    both = CanaryTask.model_validate({"app": "shop", "image": "shop:2", "steps": [{"analysis": analysis(
        successCondition="result < 0.05", failureCondition="result > 0.2", count=5)}]})
    r = Run(both, Effects(values=[0.5]))
    assert "failureCondition 'result > 0.2' held" in r.at(0).outcome[2]
    r = Run(both, Effects(values=[0.1]))
    assert r.at(0).outcome[1] == "AnalysisInconclusive"
    errors = CanaryTask.model_validate({"app": "shop", "image": "shop:2", "steps": [{"analysis": analysis(
        count=5, consecutiveErrorLimit=1)}]})
    r = Run(errors, Effects(values=["the query returned no series", 0.01, "down", "down"]))
    r.at(0)
    r.at(10)
    r.at(20)
    assert r.status["analysis"]["consecutiveErrors"] == 1
    step = r.at(30)
    assert step.outcome[1] == "AnalysisError" and "2 consecutive errors" in step.outcome[2] and "down" in step.outcome[2]


def test_initial_delay_and_measurements_are_bounded_in_status():
    spec = CanaryTask.model_validate({"app": "shop", "image": "shop:2", "steps": [{"analysis": analysis(
        count=15, initialDelay="1m", interval="1s")}]})
    r = Run(spec, Effects(values=[0.0] * 15))
    assert r.at(0).wake == 60 and r.fx.measured == []
    for t in range(60, 75):
        r.at(t)
    assert len(r.status["analysis"]["measurements"]) == 10 and r.status["analysis"]["taken"] == 15


def test_a_restart_between_two_looks_neither_repeats_nor_skips():
    """The status is all that survives: each look from the stored status takes the step where it was."""
    r = Run(fx=Effects(values=[0.01, 0.01, 0.01]))
    r.ready_replicas = 1
    r.at(0)
    r.at(0)  # same instant, read back: the pause started once
    assert r.status["step"] == 1 and r.status["stepStartTime"].startswith("2026-12-04T12:00:00")
    r.at(31)
    stored = json.dumps(r.status)
    r.at(31)  # a second look at the same instant (a restarted operator): not measured again
    assert r.fx.measured == ["error-rate"]
    assert json.loads(stored)["analysis"]["taken"] == 1


def test_promotion_refused_rolls_back_and_a_timeout_rolls_back():
    spec = CanaryTask.model_validate({"app": "shop", "image": "shop:2", "steps": [{"pause": "1s"}]})
    r = Run(spec, Effects(refuse="refused by risk policy: change freeze"))
    r.at(0)
    step = r.at(2)
    assert step.outcome[:2] == ("Failed", "PromotionRefused") and "change freeze" in step.outcome[2]
    r = Run(spec, timeout=60)
    step = r.at(61)
    assert step.outcome[:2] == ("TimedOut", "TaskTimeout") and r.status["phase"] == "RolledBack"


def test_model_rules():
    with pytest.raises(ValueError, match="exactly one of weight, pause and analysis"):
        CanaryTask.model_validate({"app": "a", "image": "i", "steps": [{"weight": 5, "pause": "1s"}]})
    with pytest.raises(ValueError, match="successCondition, failureCondition or both"):
        Analysis.model_validate({"name": "m", "query": "q"})


def test_after_an_outage_the_next_measurement_is_one_interval_later_not_a_burst():
    spec = CanaryTask.model_validate({"app": "shop", "image": "shop:2", "steps": [{"analysis": analysis(count=3)}]})
    r = Run(spec, Effects(values=[0.0, 0.0, 0.0]))
    r.at(0)
    step = r.at(45)  # the operator was down for 35 s past the due time
    assert r.fx.measured == ["error-rate"] * 2 and step.wake == 10
