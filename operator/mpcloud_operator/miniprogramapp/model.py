"""MiniProgramApp spec and status as pydantic models: the single source of truth for the CRD.

`python -m mpcloud_operator.crdgen` turns these models into `crds/miniprogramapps.mpcloud.io.yaml`:
attribute docstrings become `description`s, Field bounds become OpenAPI bounds, and every CEL rule
(`x-kubernetes-validations`) is declared once here as a `Rule` and mirrored by a pydantic validator
with the same message, so `model_validate` rejects what the API server rejects.

Only what is specific to MiniProgramApp lives here (replicas, scaling, exposure, status); the container
parts every kind shares (ports, env, resources, sandbox, probes, bindings) come from `mpcloud_operator.api`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, model_validator

from mpcloud_operator.api.conditions import Condition
from mpcloud_operator.api.parts import (
    IMAGE_DIGEST_REQUIRED,
    PORT_NAMES_UNIQUE,
    PORT_NUMBERS_UNIQUE,
    Bindings,
    EnvFromSource,
    EnvVar,
    ImagePolicy,
    Port,
    Probes,
    Resources,
    RunAs,
    Sandbox,
)
from mpcloud_operator.api.schema import APIModel, CustomResource, Rule, cel, list_map, nested
from mpcloud_operator.api.types import ImageRef, Label

API_VERSION = "mpcloud.io/v1alpha1"
KIND = "MiniProgramApp"


# ---------------------------------------------------------------- spec: replicas, scaling

MIN_LE_MAX = Rule("self.min <= self.max", "replicas.min must be less than or equal to replicas.max")


class Replicas(APIModel):
    """Replica bounds, and the replica count set through the scale subresource.

    `desired` is the CRD's scale subresource `specReplicasPath` (`kubectl scale`, HPA, KEDA and the
    mpcloud scaling loop write it). The operator clamps it to [min, max], so a larger `min` wins.
    It defaults to 1 rather than being optional because the API server answers GET .../scale with
    an error while the field is absent, and HPA/KEDA read the scale subresource first."""

    model_config = cel(MIN_LE_MAX)

    min: int = Field(default=1, ge=0, le=1000)
    """Fewest replicas (0 allows scale to zero)."""
    max: int = Field(default=10, ge=1, le=1000)
    """Most replicas."""
    desired: int = Field(default=1, ge=0, le=1000)
    """Replica count requested through the scale subresource (kubectl scale, HPA, the mpcloud
    scaler); the app runs this clamped to [min, max]."""

    @model_validator(mode="after")
    def _bounds(self) -> Replicas:
        MIN_LE_MAX.check(self.min <= self.max)
        return self

    def clamp(self, n: int) -> int:
        return max(self.min, min(self.max, n))

    @property
    def effective(self) -> int:
        """What the Deployment should run now."""
        return self.clamp(self.desired)


EVENT_END_AFTER_START = Rule("self.end > self.start", "scaling.events[].end must be after start", ".end")


class ScalingEvent(APIModel):
    """A declared traffic event (promotion, launch): the scaler pre-scales for it."""

    model_config = cel(EVENT_END_AFTER_START)

    name: Label
    """Event name (DNS label), unique within the app."""
    start: AwareDatetime
    """Start time, RFC 3339 (e.g. 2025-11-11T00:00:00+08:00)."""
    end: AwareDatetime
    """End time, RFC 3339; after start."""
    expected_multiplier: float = Field(gt=0, le=1000)
    """Expected traffic during the event relative to normal (30 means 30x)."""

    @model_validator(mode="after")
    def _ordered(self) -> ScalingEvent:
        EVENT_END_AFTER_START.check(self.end > self.start)
        return self


class ScaleUp(APIModel):
    """Scale-up limits (HPA defaults: no stabilization, 100 % or 4 replicas per step)."""

    stabilization_window_seconds: int = Field(default=0, ge=0, le=3600)
    """Use the lowest recommendation of this window before scaling up."""
    max_step_percent: int = Field(default=100, ge=1, le=1000)
    """Largest step as a percentage of current replicas."""
    max_step_replicas: int = Field(default=4, ge=1, le=1000)
    """Largest step in replicas; the allowed step is the larger of this and maxStepPercent."""


class ScaleDown(APIModel):
    """Scale-down limits (HPA defaults: 300 s stabilization, 100 % per step)."""

    stabilization_window_seconds: int = Field(default=300, ge=0, le=3600)
    """Use the highest recommendation of this window before scaling down."""
    max_step_percent: int = Field(default=100, ge=1, le=100)
    """Largest step as a percentage of current replicas."""


CAPACITY_REQUIRED = Rule(
    "self.mode == 'reactive' || has(self.capacityPerReplica)",
    "scaling.capacityPerReplica is required when scaling.mode is predictive or scheduled",
)


class Scaling(APIModel):
    """How the mpcloud scaler picks the replica count within spec.replicas bounds."""

    model_config = cel(CAPACITY_REQUIRED)

    mode: Literal["reactive", "predictive", "scheduled"] = "reactive"
    """reactive: follow observed load; predictive: also pre-scale for forecast load;
    scheduled: reactive plus pre-scaling for declared events only."""
    capacity_per_replica: float | None = Field(default=None, gt=0)
    """Requests per minute one replica serves at full utilization; needed to turn a traffic
    forecast into replicas."""
    target_utilization: float = Field(default=0.7, gt=0, le=1)
    """Fraction of capacityPerReplica to plan for."""
    metric_query: str | None = Field(default=None, min_length=1, max_length=4096)
    """PromQL giving the app's load in requests per minute (predictive/scheduled modes). It must return
    series labelled `namespace` and `app` (one query serves every app that uses it), or a single series
    when only this app uses it. `{window}` and `{minute}` are replaced by two scaler ticks as a duration
    and the tick length in seconds. Default: sum by (namespace, app)
    (rate(mpcloud_app_requests_total[{window}])) * {minute}."""
    events: list[ScalingEvent] = Field(default_factory=list, max_length=32, json_schema_extra=list_map("name"))
    """Declared traffic events."""
    scale_up: ScaleUp = nested(ScaleUp)
    """Scale-up limits."""
    scale_down: ScaleDown = nested(ScaleDown)
    """Scale-down limits."""

    @model_validator(mode="after")
    def _capacity(self) -> Scaling:
        CAPACITY_REQUIRED.check(self.mode == "reactive" or self.capacity_per_replica is not None)
        if len({e.name for e in self.events}) != len(self.events):
            raise ValueError("scaling.events[].name must be unique")
        return self


# ---------------------------------------------------------------- spec: exposure


class NamespaceSelector(APIModel):
    """Namespaces selected by their labels."""

    match_labels: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, max_length=16
    )
    """Labels a namespace must all carry."""


class Exposure(APIModel):
    """Who may reach the app's ports (the NetworkPolicy denies all other ingress)."""

    allow_same_namespace: bool = True
    """Allow pods of the app's own namespace."""
    allowed_namespaces: list[Label] = Field(
        default_factory=list, max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Further namespaces allowed, by name."""
    namespace_selector: NamespaceSelector | None = None
    """Further namespaces allowed, by labels."""


class MiniProgramAppSpec(APIModel):
    """Desired state of a MiniProgramApp."""

    model_config = cel(IMAGE_DIGEST_REQUIRED)

    image: ImageRef
    """Container image, e.g. nginxinc/nginx-unprivileged:1.27 or registry.example.com/team/app@sha256:<digest>."""
    image_policy: ImagePolicy = nested(ImagePolicy)
    """Constraints on image (e.g. requireDigest)."""
    ports: list[Port] = Field(
        min_length=1, max_length=8,
        json_schema_extra={"x-kubernetes-validations": [PORT_NAMES_UNIQUE.as_schema(), PORT_NUMBERS_UNIQUE.as_schema()]},
    )
    """Ports the container listens on; the first one is the default for probes and the URL."""
    env: list[EnvVar] = Field(default_factory=list, max_length=64, json_schema_extra=list_map("name"))
    """Environment variables."""
    env_from: list[EnvFromSource] = Field(default_factory=list, max_length=16)
    """Secrets and ConfigMaps imported as environment variables."""
    resources: Resources = nested(Resources)
    """CPU and memory of the app container."""
    sandbox: Sandbox = nested(Sandbox)
    """Sandbox runtime (Kata Containers by default)."""
    run_as: RunAs = nested(RunAs)
    """User and group of the app's processes (non-root, 10001 by default)."""
    replicas: Replicas = nested(Replicas)
    """Replica bounds and the scale subresource's replica count."""
    scaling: Scaling = nested(Scaling)
    """Autoscaling policy."""
    probes: Probes = nested(Probes)
    """Health checks."""
    bindings: Bindings | None = None
    """Backing services (database, storage)."""
    exposure: Exposure = nested(Exposure)
    """Network exposure."""

    @model_validator(mode="after")
    def _spec_rules(self) -> MiniProgramAppSpec:
        self.image_policy.check(self.image)
        PORT_NAMES_UNIQUE.check(len({p.name for p in self.ports}) == len(self.ports))
        PORT_NUMBERS_UNIQUE.check(len({(p.container_port, p.protocol) for p in self.ports}) == len(self.ports))
        if len({e.name for e in self.env}) != len(self.env):
            raise ValueError("env[].name must be unique")
        return self


# ---------------------------------------------------------------- status


class ForecastSummary(APIModel):
    """Short summary of the latest traffic forecast (predictive mode)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, max_length=128)
    """Forecasting model used."""
    generated_at: AwareDatetime | None = None
    """When the forecast was made."""
    horizon_minutes: int | None = Field(default=None, ge=0)
    """How far ahead it looks."""
    peak_requests_per_minute: float | None = Field(default=None, ge=0)
    """Highest forecast load within the horizon."""
    peak_at: AwareDatetime | None = None
    """When that peak is expected."""
    recommended_replicas: int | None = Field(default=None, ge=0)
    """Replicas the forecast asks for."""


class MiniProgramAppStatus(APIModel):
    """Observed state of a MiniProgramApp, written by the operator only."""

    model_config = ConfigDict(extra="ignore")

    conditions: list[Condition] = Field(default_factory=list, max_length=16, json_schema_extra=list_map("type"))
    """Ready, Progressing and Degraded."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation last acted on."""
    replicas: int | None = Field(default=None, ge=0)
    """Pods of the app's Deployment (the scale subresource's statusReplicasPath)."""
    ready_replicas: int | None = Field(default=None, ge=0)
    """Ready pods."""
    desired_replicas: int | None = Field(default=None, ge=0)
    """Replica count the operator last set on the Deployment."""
    url: str | None = Field(default=None, max_length=512)
    """In-cluster URL of the app's Service."""
    last_scale_time: AwareDatetime | None = None
    """When the replica count last changed."""
    selector: str | None = Field(default=None, max_length=1024)
    """Label selector of the app's pods as a string (the scale subresource's labelSelectorPath)."""
    scaling_reason: str | None = Field(default=None, max_length=1024)
    """Why the scaler chose desiredReplicas."""
    forecast: ForecastSummary | None = None
    """Latest forecast (predictive mode)."""


# ---------------------------------------------------------------- the whole object


class MiniProgramApp(CustomResource):
    """A mini-program app: one container image served as a hardened, sandboxed, autoscaled service.

    The operator creates a ServiceAccount, Deployment (Kata RuntimeClass, Pod Security "restricted"),
    ClusterIP Service, NetworkPolicy and, with replicas.min >= 2, a PodDisruptionBudget.

    Scale subresource: spec.replicas.desired / status.replicas / status.selector, so kubectl scale,
    HPA and KEDA work; the operator clamps spec.replicas.desired to [replicas.min, replicas.max].
    """

    api_version: Literal["mpcloud.io/v1alpha1"] = API_VERSION
    kind: Literal["MiniProgramApp"] = KIND
    spec: MiniProgramAppSpec
    status: MiniProgramAppStatus | None = None
