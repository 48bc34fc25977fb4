"""The built-in deploy tasks of a pipeline: spec and status parts (the operator runs them itself, no Job).

A pipeline task names a built-in instead of a `taskSpec`, as Tekton's custom tasks do:

- `deploy`: set a MiniProgramApp's image, or a CloudFunction's source (inline files or a ConfigMap), through the
  API server (so admission, e.g. a RiskPolicy freeze window, can refuse it), then wait until the target reports
  Ready at the new generation;
- `canary`: for a MiniProgramApp, a second Deployment with the new image beside the stable one, driven through
  `steps` (weight = replica share, pause, analysis against Prometheus as Argo Rollouts' AnalysisTemplate, inline);
  promoted at the end (the app's image is set, the canary Deployment deleted), rolled back when an analysis fails
  (the canary deleted, the stable Deployment untouched).

Their string fields take pipeline-level references ($(params.x), $(tasks.t.results.r), $(context...)); inline
file contents are code and are not substituted. Progress lives in the run's status (`TaskRunStatus.deploy` /
`.canary`), so an operator restarted mid-canary neither repeats nor skips a step.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, model_validator

from mpcloud_operator.api.schema import APIModel, Rule, cel

# A target name or an image: may hold $(...) references, checked once substituted (the API server has the last word).
RefText = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Duration = Annotated[str, StringConstraints(min_length=2, max_length=32, pattern=r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$")]
INLINE_FILES_MAX = 16
INLINE_FILE_BYTES = 65536
MAX_CANARY_STEPS = 16
MAX_MEASUREMENTS = 10  # kept in the status per analysis step (counters keep the totals)


class InlineFiles(APIModel):
    """The function's code, file name -> content (not substituted: code is code). File names and sizes are the
    CloudFunction's to check: its CRD refuses bad ones, and the task fails with that message."""

    files: dict[str, Annotated[str, StringConstraints(max_length=INLINE_FILE_BYTES)]] = Field(
        min_length=1, max_length=INLINE_FILES_MAX)
    """File name -> content (a CloudFunction's source.inline.files)."""


class ConfigMapName(APIModel):
    """A ConfigMap of the run's namespace."""

    name: RefText
    """Its name (may be a reference, e.g. to a result of the task that built it)."""


FUNCTION_SOURCE_ONE_OF = Rule("has(self.inline) != has(self.configMapRef)",
                              "deploy.source sets exactly one of inline and configMapRef")


class FunctionSource(APIModel):
    """The CloudFunction source to deploy: inline files, or a ConfigMap whose keys are the files."""

    model_config = cel(FUNCTION_SOURCE_ONE_OF)

    inline: InlineFiles | None = None
    """Files written into the function's spec.source.inline."""
    config_map_ref: ConfigMapName | None = None
    """A ConfigMap whose keys are the files (the function's spec.source.configMapRef)."""

    @model_validator(mode="after")
    def _one_of(self) -> FunctionSource:
        FUNCTION_SOURCE_ONE_OF.check((self.inline is None) != (self.config_map_ref is None))
        return self


DEPLOY_TARGET = Rule(
    "has(self.app) ? (has(self.image) && !has(self.source) && !has(self.function)) "
    ": (has(self.function) && has(self.source) && !has(self.image))",
    "deploy sets app with image (a MiniProgramApp), or function with source (a CloudFunction)")


class DeployTask(APIModel):
    """Update one app or function of the run's namespace and wait for it to be Ready at its new generation."""

    model_config = cel(DEPLOY_TARGET)

    app: RefText | None = None
    """MiniProgramApp to update (same namespace as the run)."""
    image: RefText | None = None
    """The app's new image, e.g. $(params.image)."""
    function: RefText | None = None
    """CloudFunction to update (same namespace as the run)."""
    source: FunctionSource | None = None
    """The function's new source."""

    @model_validator(mode="after")
    def _target(self) -> DeployTask:
        DEPLOY_TARGET.check((self.image is not None and self.source is None and self.function is None)
                            if self.app is not None else
                            (self.function is not None and self.source is not None and self.image is None))
        return self


CONDITION_GIVEN = Rule("has(self.successCondition) || has(self.failureCondition)",
                       "an analysis sets successCondition, failureCondition or both")


class Analysis(APIModel):
    """One metric measured `count` times, `interval` apart (Argo Rollouts' AnalysisTemplate metric, inline).

    Each measurement is a PromQL instant query that must return one number (one series, or a scalar): it is
    `result` in the conditions — a small expression language (numbers, result, + - * /, comparisons, && || !,
    isNaN(), isInf(), abs()), parsed, never evaluated as code. With both conditions a measurement is Successful
    when successCondition holds, Failed when failureCondition holds, otherwise Inconclusive; with one, the
    other outcome is its negation. A failed query (or no series) is an Error. The step fails — and the canary
    rolls back — once Failed measurements exceed failureLimit, Inconclusive ones exceed inconclusiveLimit, or
    consecutive Errors exceed consecutiveErrorLimit; it passes after `count` measurements otherwise."""

    model_config = cel(CONDITION_GIVEN)

    name: Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    """The metric's name (it names the metric in the run's failure message)."""
    query: str = Field(min_length=1, max_length=4096)
    """PromQL; may use pipeline references, e.g. {namespace="$(context.pipelineRun.namespace)"}."""
    address: RefText | None = None
    """Prometheus base URL, http(s)://... (may be a reference; default: the operator's MPCLOUD_PROMETHEUS_URL)."""
    interval: Duration = "30s"
    """Time between measurements."""
    initial_delay: Duration | None = None
    """Wait before the first measurement (e.g. for the canary's first scrape)."""
    count: int = Field(default=3, ge=1, le=60)
    """Measurements to take."""
    success_condition: str | None = Field(default=None, min_length=1, max_length=256)
    """e.g. result < 0.05."""
    failure_condition: str | None = Field(default=None, min_length=1, max_length=256)
    """e.g. result >= 0.2."""
    failure_limit: int = Field(default=0, ge=0, le=60)
    """Failed measurements tolerated."""
    inconclusive_limit: int = Field(default=0, ge=0, le=60)
    """Inconclusive measurements tolerated."""
    consecutive_error_limit: int = Field(default=4, ge=0, le=60)
    """Consecutive Errors (query failed, no number) tolerated."""

    @model_validator(mode="after")
    def _conditions(self) -> Analysis:
        CONDITION_GIVEN.check(self.success_condition is not None or self.failure_condition is not None)
        return self


STEP_ONE_OF = Rule("[has(self.weight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",
                   "a canary step sets exactly one of weight, pause and analysis")


class CanaryStep(APIModel):
    """One step: set the canary's replica share, wait, or measure."""

    model_config = cel(STEP_ONE_OF)

    weight: int | None = Field(default=None, ge=1, le=100)
    """Canary replicas as a percentage of the app's replica count (rounded up, at least 1), beside the stable
    replicas (untouched): the canary serves about canary / (stable + canary) of the Service's traffic. The step
    ends once the canary's pods are ready."""
    pause: Duration | None = None
    """Wait this long (e.g. 30s)."""
    analysis: Analysis | None = None
    """Measure a metric; a failure rolls the canary back."""

    @model_validator(mode="after")
    def _one_of(self) -> CanaryStep:
        STEP_ONE_OF.check(sum(x is not None for x in (self.weight, self.pause, self.analysis)) == 1)
        return self


class CanaryTask(APIModel):
    """A canary release of a MiniProgramApp, promoted when every step passed."""

    app: RefText
    """MiniProgramApp (same namespace as the run)."""
    image: RefText
    """The canary's image; the app's image once promoted."""
    steps: list[CanaryStep] = Field(min_length=1, max_length=MAX_CANARY_STEPS)
    """Run in order; then the canary is promoted."""


# ---------------------------------------------------------------- status

class DeployStatus(APIModel):
    """A deploy task's progress (or the promotion of a canary)."""

    model_config = ConfigDict(extra="ignore")

    target: str | None = Field(default=None, max_length=320)
    """Kind/name of what was updated."""
    generation: int | None = Field(default=None, ge=0)
    """The target's .metadata.generation after the update: Ready must be reported at it."""
    previous: str | None = Field(default=None, max_length=512)
    """The image (or source) it had before."""


Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]


class Measurement(APIModel):
    """One analysis measurement."""

    model_config = ConfigDict(extra="ignore")

    time: AwareDatetime
    """When it was taken."""
    phase: Phase
    """Successful, Failed, Inconclusive or Error."""
    value: str | None = Field(default=None, max_length=64)
    """The query's value."""
    message: str | None = Field(default=None, max_length=512)
    """Why it is an Error."""


class AnalysisStatus(APIModel):
    """The running analysis step's measurements (the latest few) and counts."""

    model_config = ConfigDict(extra="ignore")

    metric: str = Field(max_length=63)
    """The analysis' name."""
    measurements: list[Measurement] = Field(default_factory=list, max_length=MAX_MEASUREMENTS)
    """The latest measurements."""
    taken: int = Field(default=0, ge=0)
    """Measurements taken."""
    successful: int = Field(default=0, ge=0)
    """Successful ones."""
    failed: int = Field(default=0, ge=0)
    """Failed ones."""
    inconclusive: int = Field(default=0, ge=0)
    """Inconclusive ones."""
    consecutive_errors: int = Field(default=0, ge=0)
    """Errors since the last measurement that was not one."""


class CanaryStatus(APIModel):
    """A canary task's progress: everything it needs to go on after an operator restart."""

    model_config = ConfigDict(extra="ignore")

    phase: Literal["Progressing", "Promoting", "Promoted", "RolledBack"] = "Progressing"
    """Progressing through steps, Promoting (the app's image set, waiting for it), Promoted or RolledBack."""
    step: int = Field(default=0, ge=0)
    """Index of the current step (= number of steps while promoting)."""
    step_start_time: AwareDatetime | None = None
    """When the current step started."""
    weight: int = Field(default=0, ge=0, le=100)
    """The current replica share (percent)."""
    replicas: int = Field(default=0, ge=0)
    """Canary replicas at that share."""
    deployment: str | None = Field(default=None, max_length=253)
    """The canary Deployment."""
    stable_image: str | None = Field(default=None, max_length=512)
    """The app's image when the canary started (what stays if it rolls back)."""
    analysis: AnalysisStatus | None = None
    """The current (or failed) analysis step."""
    promotion: DeployStatus | None = None
    """The app update that promoted it."""
