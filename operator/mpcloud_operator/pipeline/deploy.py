"""The built-in deploy and canary tasks as pure state machines: (status so far, what is observed, now) -> next.

They touch the cluster only through an `Effects` object the caller passes (set the target's image or source,
take one measurement), so the unit tests drive them with a fake and the operator with the real thing
(pipeline/executor.py). Everything a machine needs to go on is in the status it returns — the run's status —
so a restarted operator continues where the last written status left off: a step that was recorded as done is
never repeated, and a step is never skipped (its end is recorded only after it was observed).

Deploy: set the change (once: the target's generation after it is recorded), then wait until the target
reports Ready at that generation; the target's own failure reason fails the task, and so does the deadline.

Canary: steps in order — weight (the canary's replica share; done once its pods are ready), pause (done after
its duration), analysis (the first measurement after initialDelay, each next one interval after the last;
done after `count`, rolled back
as soon as a limit is exceeded) — then promotion (the app's image set, Ready awaited, the canary removed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from mpcloud_operator.api.schema import to_json
from mpcloud_operator.pipeline import condition
from mpcloud_operator.pipeline.deploy_model import (
    MAX_MEASUREMENTS,
    Analysis,
    AnalysisStatus,
    CanaryStatus,
    CanaryTask,
    DeployStatus,
    Measurement,
)
from mpcloud_operator.pipeline.model import seconds

DEFAULT_WAIT = 600.0  # seconds a deploy (or a promotion) waits for Ready when the task sets no timeout
POLL = 2.0  # seconds between looks at a target while waiting (its status events do not wake the run)
SUCCEEDED, FAILED, TIMED_OUT = "Succeeded", "Failed", "TimedOut"
# Ready=False reasons of a target that waiting will not fix (Degraded=True at the new generation fails too).
TERMINAL = ("InvalidSpec", "InvalidSource", "BuildFailed", "RuntimeClassNotFound", "ReferenceNotFound",
            "ReconcileFailed", "ProgressDeadlineExceeded", "ReplicaFailure")


@dataclass(frozen=True)
class Target:
    """A MiniProgramApp or CloudFunction as the watch cache has it (None fields: not reported yet)."""

    kind: str
    name: str
    exists: bool = True
    generation: int | None = None
    observed_generation: int | None = None
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)  # type -> condition
    status: dict[str, Any] = field(default_factory=dict)
    image: str | None = None  # a MiniProgramApp's spec.image
    replicas: int = 1  # the replicas an app runs (a canary's share is of these)

    @classmethod
    def of(cls, kind: str, name: str, body: dict[str, Any] | None, replicas: int = 1) -> Target:
        if body is None:
            return cls(kind, name, exists=False)
        st = body.get("status") or {}
        return cls(kind, name, True, body["metadata"].get("generation"), st.get("observedGeneration"),
                   {c["type"]: c for c in st.get("conditions") or []}, st, (body.get("spec") or {}).get("image"),
                   replicas)

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Verdict:
    state: str  # "ok" | "failed" | "waiting"
    reason: str = ""
    message: str = ""


def _text(cond: dict[str, Any]) -> str:
    return f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")


def readiness(target: Target, generation: int) -> Verdict:
    """Is `target` Ready at `generation` (or a later one)? Its failure reason when it says it cannot get there."""
    if not target.exists:
        return Verdict("failed", "TargetNotFound", f"{target.ref} not found")
    if (target.observed_generation or 0) < generation:
        return Verdict("waiting", "", f"{target.ref}: waiting for generation {generation} to be observed "
                                      f"(at {target.observed_generation})")
    ready = target.conditions.get("Ready") or {}
    degraded = target.conditions.get("Degraded") or {}
    if (ready.get("observedGeneration") or 0) < generation:
        return Verdict("waiting", "", f"{target.ref}: Ready not yet reported for generation {generation}")
    if degraded.get("status") == "True" and (degraded.get("observedGeneration") or 0) >= generation:
        return Verdict("failed", degraded.get("reason") or "Degraded", f"{target.ref}: {_text(degraded)}")
    if ready.get("status") == "False" and ready.get("reason") in TERMINAL:
        return Verdict("failed", ready["reason"], f"{target.ref}: {_text(ready)}")
    if ready.get("status") != "True":
        return Verdict("waiting", "", f"{target.ref}: Ready={ready.get('status')} {_text(ready)}")
    if target.kind == "MiniProgramApp":
        progressing = target.conditions.get("Progressing") or {}
        if progressing.get("status") == "True" and progressing.get("reason") in ("RollingOut", "Creating"):
            return Verdict("waiting", "", f"{target.ref}: {_text(progressing)}")
        return Verdict("ok", "", f"{target.ref} Ready at generation {generation}: {_text(ready)}")
    st = target.status
    if (st.get("servingGeneration") or 0) >= generation or (st.get("codeHash") and st.get("servingHash") == st.get("codeHash")):
        return Verdict("ok", "", f"{target.ref} serves generation {generation}: {_text(ready)}")
    if ready.get("reason") == "ScaledToZero":
        return Verdict("ok", "", f"{target.ref} is scaled to zero: its next instance loads generation {generation}")
    return Verdict("waiting", "", f"{target.ref}: {_text(ready)}")


class Effects(Protocol):
    """What the machines may do to the world (the executor implements it on the cluster and Prometheus)."""

    def set_target(self, target: Target, change: Any) -> tuple[int | None, str]:
        """Apply the change (an image, or a function source) to the target: (its generation, "") on success,
        (None, why) when the API server refused it (admission's message, a 404, an invalid value)."""

    def measure(self, analysis: Analysis) -> tuple[float | None, str]:
        """One instant query: (value, "") or (None, why it has no value)."""


@dataclass
class Step:
    """What one call of a machine decided."""

    status: dict[str, Any]  # the task's deploy/canary status (camelCase), for the run's status
    outcome: tuple[str, str, str] | None = None  # (Succeeded | Failed | TimedOut, reason, message) when done
    wake: float | None = None  # seconds until it should be looked at again
    canary_replicas: int = 0  # >0: the canary Deployment should run this many replicas


def _deadline(started: datetime, timeout: float | None) -> datetime:
    return started + timedelta(seconds=timeout or DEFAULT_WAIT)


def _wait(target: Target, generation: int, started: datetime, now: datetime, timeout: float | None,
          what: str) -> tuple[tuple[str, str, str] | None, float | None]:
    verdict = readiness(target, generation)
    if verdict.state == "ok":
        return (SUCCEEDED, "", verdict.message), None
    if verdict.state == "failed":
        return (FAILED, verdict.reason, f"{what}: {verdict.message}"), None
    deadline = _deadline(started, timeout)
    if now >= deadline:
        waited = (deadline - started).total_seconds()
        return (TIMED_OUT, "TaskTimeout", f"{what}: not Ready within {waited:g}s: {verdict.message}"), None
    return None, min(POLL, (deadline - now).total_seconds())


# ---------------------------------------------------------------- deploy

def advance_deploy(status: dict[str, Any] | None, target: Target, change: Any, started: datetime, now: datetime,
                   timeout: float | None, effects: Effects) -> Step:
    """One look at a deploy task. `change` is the image (an app) or the source (a function), substituted."""
    st = DeployStatus.model_validate(status or {})
    if st.generation is None:
        if not target.exists:
            return Step(to_json(st), (FAILED, "TargetNotFound", f"{target.ref} not found in the run's namespace"))
        generation, why = effects.set_target(target, change)
        if generation is None:
            return Step(to_json(st), (FAILED, "DeployRefused", f"{target.ref}: {why}"))
        st = DeployStatus(target=f"{target.kind}/{target.name}", generation=generation,
                          previous=target.image if target.kind == "MiniProgramApp" else None)
    what = f"deploy of {target.ref} (generation {st.generation})"
    assert st.generation is not None
    outcome, wake = _wait(target, st.generation, started, now, timeout, what)
    return Step(to_json(st), outcome, wake)


# ---------------------------------------------------------------- canary

def canary_replicas(weight: int, stable: int) -> int:
    """The canary's replicas at `weight` percent of the app's `stable` replicas: rounded up, at least 1."""
    return max(1, math.ceil(weight * max(stable, 0) / 100))


def measurement_phase(analysis: Analysis, value: float) -> str:
    """Successful, Failed or Inconclusive (Argo Rollouts' rules for one or both conditions)."""
    ok = condition.parse(analysis.success_condition)(value) if analysis.success_condition else None
    bad = condition.parse(analysis.failure_condition)(value) if analysis.failure_condition else None
    if ok is None:
        return "Failed" if bad else "Successful"
    if bad is None:
        return "Successful" if ok else "Failed"
    return "Successful" if ok else "Failed" if bad else "Inconclusive"


def _value_text(value: float) -> str:
    return f"{value:.6g}"


def _failure(analysis: Analysis, st: AnalysisStatus) -> tuple[str, str] | None:
    """(reason, message) once a limit is exceeded: the metric, its value and the condition that failed."""
    last = st.measurements[-1] if st.measurements else None
    value = last.value if last and last.value is not None else "none"
    conditions = " and ".join(f"{k} {v!r}" for k, v in (("successCondition", analysis.success_condition),
                                                          ("failureCondition", analysis.failure_condition)) if v)
    if st.failed > analysis.failure_limit:
        which = (f"failureCondition {analysis.failure_condition!r} held" if analysis.failure_condition and (
            last and last.value is not None and condition.parse(analysis.failure_condition)(float(last.value)))
                 else f"successCondition {analysis.success_condition!r} did not hold")
        return "AnalysisFailed", (f"analysis {analysis.name}: value {value}: {which} "
                                  f"({st.failed} failed > failureLimit {analysis.failure_limit}, "
                                  f"{st.taken}/{analysis.count} measured)")
    if st.inconclusive > analysis.inconclusive_limit:
        return "AnalysisInconclusive", (f"analysis {analysis.name}: value {value}: neither of {conditions} decided "
                                        f"({st.inconclusive} inconclusive > inconclusiveLimit "
                                        f"{analysis.inconclusive_limit})")
    if st.consecutive_errors > analysis.consecutive_error_limit:
        why = last.message if last and last.message else "no value"
        return "AnalysisError", (f"analysis {analysis.name}: {st.consecutive_errors} consecutive errors > "
                                 f"consecutiveErrorLimit {analysis.consecutive_error_limit}: {why}")
    return None


def _record(analysis: Analysis, st: AnalysisStatus, now: datetime, value: float | None, why: str) -> AnalysisStatus:
    if value is None:
        m = Measurement(time=now, phase="Error", message=why[:512])
    else:
        m = Measurement(time=now, phase=measurement_phase(analysis, value), value=_value_text(value))  # type: ignore[arg-type]
    counts = {"Successful": st.successful, "Failed": st.failed, "Inconclusive": st.inconclusive}
    if m.phase in counts:
        counts[m.phase] += 1
    return AnalysisStatus(metric=st.metric, measurements=[*st.measurements, m][-MAX_MEASUREMENTS:], taken=st.taken + 1,
                          successful=counts["Successful"], failed=counts["Failed"],
                          inconclusive=counts["Inconclusive"],
                          consecutive_errors=st.consecutive_errors + 1 if m.phase == "Error" else 0)


def _next_measurement(analysis: Analysis, step_start: datetime, st: AnalysisStatus) -> datetime:
    """The first after initialDelay, then one interval after the last (an operator that was down measures once
    when it is back, not the ones it missed in a burst)."""
    if st.measurements:
        return st.measurements[-1].time + timedelta(seconds=seconds(analysis.interval) or 0)
    return step_start + timedelta(seconds=seconds(analysis.initial_delay) or 0)


def advance_canary(status: dict[str, Any] | None, spec: CanaryTask, app: Target, canary_ready: Callable[[int], bool],
                   started: datetime, now: datetime, timeout: float | None, effects: Effects) -> Step:
    """One look at a canary task (`spec` substituted). `canary_ready(n)`: the canary Deployment runs n ready pods
    of its current template. Several steps may pass in one call (a pause that is over, then a weight...)."""
    st = CanaryStatus.model_validate(status or {})
    if st.phase in ("Promoted", "RolledBack"):  # done (the outcome was recorded with it)
        return Step(to_json(st))
    if not app.exists:
        st.phase, st.replicas = "RolledBack", 0
        return Step(to_json(st), (FAILED, "TargetNotFound", f"{app.ref} not found in the run's namespace"))
    if st.stable_image is None:
        st.stable_image = app.image
    if timeout is not None and now >= started + timedelta(seconds=timeout):
        return _rollback(st, TIMED_OUT, "TaskTimeout", f"canary of {app.ref} did not finish within {timeout:g}s "
                                                       f"at step {st.step + 1}/{len(spec.steps)}")
    for _ in range(len(spec.steps) + 1):
        if st.phase == "Promoting" or st.step >= len(spec.steps):
            return _promote(st, spec, app, started, now, timeout, effects)
        step = spec.steps[st.step]
        if st.step_start_time is None:
            st.step_start_time = now
        if step.weight is not None:
            st.weight = step.weight
            st.replicas = canary_replicas(step.weight, app.replicas)
            if not canary_ready(st.replicas):
                # its pods becoming ready wake the run; the poll is for the task's deadline
                return Step(to_json(st), wake=POLL, canary_replicas=st.replicas)
        elif step.pause is not None:
            end = st.step_start_time + timedelta(seconds=seconds(step.pause) or 0)
            if now < end:
                return Step(to_json(st), wake=(end - now).total_seconds(), canary_replicas=st.replicas)
        elif step.analysis is not None:
            analysis = step.analysis
            if st.analysis is None or st.analysis.metric != analysis.name:
                st.analysis = AnalysisStatus(metric=analysis.name)
            due = _next_measurement(analysis, st.step_start_time, st.analysis)
            if now < due:
                return Step(to_json(st), wake=(due - now).total_seconds(), canary_replicas=st.replicas)
            value, why = effects.measure(analysis)
            st.analysis = _record(analysis, st.analysis, now, value, why)
            failed = _failure(analysis, st.analysis)
            if failed is not None:
                return _rollback(st, FAILED, *failed)
            if st.analysis.taken < analysis.count:
                due = _next_measurement(analysis, st.step_start_time, st.analysis)
                return Step(to_json(st), wake=max(0.0, (due - now).total_seconds()), canary_replicas=st.replicas)
        st.step += 1
        st.step_start_time = now
    raise AssertionError("unreachable: every pass ends a step or returns")


def _rollback(st: CanaryStatus, state: str, reason: str, message: str) -> Step:
    """Delete the canary, leave the stable Deployment as it is, fail the task."""
    st.phase, st.replicas = "RolledBack", 0
    image = f" (stable image {st.stable_image} kept)" if st.stable_image else ""
    return Step(to_json(st), (state, reason, f"rolled back{image}: {message}"))


def _promote(st: CanaryStatus, spec: CanaryTask, app: Target, started: datetime, now: datetime,
             timeout: float | None, effects: Effects) -> Step:
    if st.phase != "Promoting":
        st.phase, st.step, st.step_start_time = "Promoting", len(spec.steps), now
    if st.promotion is None or st.promotion.generation is None:
        generation, why = effects.set_target(app, spec.image)
        if generation is None:
            return _rollback(st, FAILED, "PromotionRefused", f"setting {app.ref}'s image to {spec.image}: {why}")
        st.promotion = DeployStatus(target=f"{app.kind}/{app.name}", generation=generation, previous=st.stable_image)
    generation = st.promotion.generation
    assert generation is not None and st.step_start_time is not None
    wait_timeout = None if timeout is None else max(1.0, timeout - (st.step_start_time - started).total_seconds())
    outcome, wake = _wait(app, generation, st.step_start_time, now, wait_timeout,
                          f"promotion of {spec.image} to {app.ref} (generation {generation})")
    if outcome is None:  # the canary keeps serving until the stable pods run the new image
        return Step(to_json(st), wake=wake, canary_replicas=st.replicas)
    st.replicas = 0
    if outcome[0] == SUCCEEDED:
        st.phase = "Promoted"
        return Step(to_json(st), (SUCCEEDED, "Promoted", f"promoted {spec.image}: {outcome[2]}"))
    st.phase = "RolledBack"
    return Step(to_json(st), (outcome[0], outcome[1] or "PromotionFailed",
                              f"canary removed; the app keeps image {spec.image}: {outcome[2]}"))
