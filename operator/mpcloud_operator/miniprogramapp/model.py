"""MiniProgramApp spec and status as pydantic models: the single source of truth for the CRD.

`python -m mpcloud_operator.crdgen` turns these models into `crds/miniprogramapps.mpcloud.io.yaml`:
attribute docstrings become `description`s, Field bounds become OpenAPI bounds, and every CEL rule
(`x-kubernetes-validations`) is declared once here as a `Rule` and mirrored by a pydantic validator
with the same message, so `model_validate` rejects what the API server rejects.

Python attributes are snake_case; JSON names are camelCase (`model_validate` accepts either,
`model_dump(by_alias=True, exclude_none=True)` produces what the API stores).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from mpcloud_operator.kube.conditions import API_MODEL_CONFIG, Condition

API_VERSION = "mpcloud.io/v1alpha1"
KIND = "MiniProgramApp"
DEFAULT_RUNTIME_CLASS = "kata"
UNSANDBOXED_RUNTIME_CLASSES = ("", "none")

# --- reusable string types (patterns are RE2-compatible: the API server evaluates them in Go) ---
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# IANA_SVC_NAME: at least one letter, no leading/trailing/double hyphen.
PORT_NAME = r"^([a-z0-9]+-)*[a-z0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

Name = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
PortName = Annotated[str, StringConstraints(min_length=1, max_length=15, pattern=PORT_NAME)]
# int-or-string, like resource.Quantity: `cpu: 1` and `cpu: "500m"` are both accepted.
Quantity = int | Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY)]
# int-or-string port: a number, or the name of one of spec.ports.
PortRef = Annotated[int, Field(ge=1, le=65535)] | PortName


class Rule(NamedTuple):
    """A CEL rule for `x-kubernetes-validations`; `message` is shared with the pydantic mirror."""

    rule: str
    message: str
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def check(self, ok: bool) -> None:
        if not ok:
            raise ValueError(self.message)


def to_json(model: BaseModel) -> dict[str, Any]:
    """camelCase dict as stored by the API server (no nulls)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(*rules: Rule, extra: str = "forbid") -> ConfigDict:
    """model_config carrying CEL rules into the generated schema."""
    return ConfigDict(extra=extra, json_schema_extra={"x-kubernetes-validations": [r.as_schema() for r in rules]})


def nested(cls: type[BaseModel], **kw: Any) -> Any:
    """An optional sub-object filled with its own defaults.

    The CRD default is the fully defaulted object, not `{}`: the API server validates a default
    (CEL rules included) without applying the nested defaults first, so `{}` would fail rules
    such as `self.min <= self.max`."""
    return Field(default_factory=cls, json_schema_extra={"default": _compact(to_json(cls()))}, **kw)


def _compact(value: Any) -> Any:
    """Drop empty lists and maps from a default: the API server need not store them."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v not in ([], {})}
    return value


def list_map(*keys: str) -> dict[str, Any]:
    """Schema extras for a list merged by key under server-side apply (keys must be required)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


class _Model(BaseModel):
    model_config = API_MODEL_CONFIG


# ---------------------------------------------------------------- spec: container

PORT_NAMES_UNIQUE = Rule("self.all(p, self.exists_one(q, q.name == p.name))", "ports[].name must be unique")
PORT_NUMBERS_UNIQUE = Rule(
    "self.all(p, self.exists_one(q, q.containerPort == p.containerPort && q.protocol == p.protocol))",
    "ports[].containerPort must be unique per protocol",
)


class Port(_Model):
    """A port the container listens on; exposed by the Service under the same name and number."""

    name: PortName
    """IANA service name (lowercase letters, digits, hyphens; at most 15 characters)."""
    container_port: int = Field(ge=1, le=65535)
    """Port number. The app runs as non-root, so use a port >= 1024."""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    """Transport protocol."""


class KeyRef(_Model):
    """A key in a Secret or ConfigMap of the app's namespace."""

    name: Name
    """Name of the Secret or ConfigMap."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside it."""
    optional: bool = False
    """Start the app even if the object or key is missing."""


ENV_SOURCE_ONE_OF = Rule(
    "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) == 1",
    "valueFrom needs exactly one of secretKeyRef and configMapKeyRef",
)
ENV_VALUE_OR_FROM = Rule("!(has(self.value) && has(self.valueFrom))", "env[] sets value or valueFrom, not both")


class EnvVarSource(_Model):
    """Where an environment variable's value comes from."""

    model_config = cel(ENV_SOURCE_ONE_OF)

    secret_key_ref: KeyRef | None = None
    """A key of a Secret."""
    config_map_key_ref: KeyRef | None = None
    """A key of a ConfigMap."""

    @model_validator(mode="after")
    def _one_of(self) -> EnvVarSource:
        ENV_SOURCE_ONE_OF.check((self.secret_key_ref is None) != (self.config_map_key_ref is None))
        return self


class EnvVar(_Model):
    """An environment variable: a literal value or a reference."""

    model_config = cel(ENV_VALUE_OR_FROM)

    name: str = Field(min_length=1, max_length=256, pattern=ENV_NAME)
    """Variable name."""
    value: str | None = Field(default=None, max_length=32768)
    """Literal value."""
    value_from: EnvVarSource | None = None
    """Value taken from a Secret or ConfigMap key."""

    @model_validator(mode="after")
    def _value_or_from(self) -> EnvVar:
        ENV_VALUE_OR_FROM.check(self.value is None or self.value_from is None)
        return self


class ObjectRef(_Model):
    """A Secret or ConfigMap in the app's namespace, by name."""

    name: Name
    """Object name."""
    optional: bool = False
    """Start the app even if the object is missing."""


ENV_FROM_ONE_OF = Rule(
    "(has(self.secretRef) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) == 1",
    "envFrom[] needs exactly one of secretRef and configMapRef",
)


class EnvFromSource(_Model):
    """All keys of a Secret or ConfigMap as environment variables."""

    model_config = cel(ENV_FROM_ONE_OF)

    secret_ref: ObjectRef | None = None
    """Secret to import."""
    config_map_ref: ObjectRef | None = None
    """ConfigMap to import."""
    prefix: str | None = Field(default=None, max_length=128, pattern=ENV_NAME)
    """Prefix added to every imported variable name."""

    @model_validator(mode="after")
    def _one_of(self) -> EnvFromSource:
        ENV_FROM_ONE_OF.check((self.secret_ref is None) != (self.config_map_ref is None))
        return self


class Requests(_Model):
    """Resources reserved for the container (scheduling)."""

    cpu: Quantity = "100m"
    """CPU request (Kubernetes quantity, e.g. 250m)."""
    memory: Quantity = "128Mi"
    """Memory request (Kubernetes quantity, e.g. 256Mi)."""


class Limits(_Model):
    """Upper bounds for the container. Under Kata they also size the sandbox VM."""

    cpu: Quantity = "1"
    """CPU limit (Kubernetes quantity)."""
    memory: Quantity = "512Mi"
    """Memory limit (Kubernetes quantity)."""


REQUESTS_WITHIN_LIMITS = Rule(
    "quantity(string(self.requests.cpu)).compareTo(quantity(string(self.limits.cpu))) <= 0"
    " && quantity(string(self.requests.memory)).compareTo(quantity(string(self.limits.memory))) <= 0",
    "resources.requests must not exceed resources.limits",
)


class Resources(_Model):
    """Compute resources of the app container. The RuntimeClass overhead of the sandbox is added
    by the API server on top of these."""

    model_config = cel(REQUESTS_WITHIN_LIMITS)

    requests: Requests = nested(Requests)
    """Requested CPU and memory."""
    limits: Limits = nested(Limits)
    """CPU and memory limits."""

    @model_validator(mode="after")
    def _within(self) -> Resources:
        REQUESTS_WITHIN_LIMITS.check(
            parse_quantity(self.requests.cpu) <= parse_quantity(self.limits.cpu)
            and parse_quantity(self.requests.memory) <= parse_quantity(self.limits.memory)
        )
        return self


_SUFFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def parse_quantity(q: int | str) -> float:
    """A Kubernetes quantity as a float (enough to compare requests with limits)."""
    if isinstance(q, int):
        return float(q)
    s = q.strip()
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if s.endswith(suffix) and not (suffix == "E" and "e" in s.lower()[:-1]):
            return float(s[: -len(suffix)]) * _SUFFIX[suffix]
    return float(s)  # plain number or decimal exponent (1e3)


# ---------------------------------------------------------------- spec: sandbox, replicas, scaling

SANDBOX_REQUIRED = Rule(
    "self.allowUnsandboxed || (self.runtimeClassName != '' && self.runtimeClassName != 'none')",
    'sandbox.runtimeClassName may be empty or "none" only when sandbox.allowUnsandboxed is true',
)


class Sandbox(_Model):
    """Isolation of the app's pods. By default every pod runs in a Kata Containers VM."""

    model_config = cel(SANDBOX_REQUIRED)

    runtime_class_name: str = Field(
        default=DEFAULT_RUNTIME_CLASS, max_length=253, pattern=r"^(" + DNS_SUBDOMAIN[1:-1] + r")?$"
    )
    """RuntimeClass for the pods: kata (default), kata-qemu, kata-clh or kata-fc. Empty or "none"
    runs the plain container runtime and needs allowUnsandboxed."""
    allow_unsandboxed: bool = False
    """Must be true to run without a sandbox runtime."""

    @property
    def unsandboxed(self) -> bool:
        return self.runtime_class_name in UNSANDBOXED_RUNTIME_CLASSES

    @model_validator(mode="after")
    def _sandboxed(self) -> Sandbox:
        SANDBOX_REQUIRED.check(self.allow_unsandboxed or not self.unsandboxed)
        return self


MIN_LE_MAX = Rule("self.min <= self.max", "replicas.min must be less than or equal to replicas.max")


class Replicas(_Model):
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


class ScalingEvent(_Model):
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


class ScaleUp(_Model):
    """Scale-up limits (HPA defaults: no stabilization, 100 % or 4 replicas per step)."""

    stabilization_window_seconds: int = Field(default=0, ge=0, le=3600)
    """Use the lowest recommendation of this window before scaling up."""
    max_step_percent: int = Field(default=100, ge=1, le=1000)
    """Largest step as a percentage of current replicas."""
    max_step_replicas: int = Field(default=4, ge=1, le=1000)
    """Largest step in replicas; the allowed step is the larger of this and maxStepPercent."""


class ScaleDown(_Model):
    """Scale-down limits (HPA defaults: 300 s stabilization, 100 % per step)."""

    stabilization_window_seconds: int = Field(default=300, ge=0, le=3600)
    """Use the highest recommendation of this window before scaling down."""
    max_step_percent: int = Field(default=100, ge=1, le=100)
    """Largest step as a percentage of current replicas."""


CAPACITY_REQUIRED = Rule(
    "self.mode == 'reactive' || has(self.capacityPerReplica)",
    "scaling.capacityPerReplica is required when scaling.mode is predictive or scheduled",
)


class Scaling(_Model):
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


# ---------------------------------------------------------------- spec: probes, bindings, exposure


class HTTPGet(_Model):
    """HTTP GET probe: healthy on a 2xx/3xx answer."""

    path: str = Field(default="/", max_length=1024, pattern=r"^/")
    """Request path."""
    port: PortRef | None = None
    """Port number or name; defaults to the first of spec.ports."""


class TCPSocket(_Model):
    """TCP probe: healthy when the port accepts a connection."""

    port: PortRef | None = None
    """Port number or name; defaults to the first of spec.ports."""


PROBE_ONE_ACTION = Rule("!(has(self.httpGet) && has(self.tcpSocket))", "a probe sets httpGet or tcpSocket, not both")


class Probe(_Model):
    """A health check. Without httpGet or tcpSocket it is a TCP check of the first port."""

    model_config = cel(PROBE_ONE_ACTION)

    http_get: HTTPGet | None = None
    """HTTP GET check."""
    tcp_socket: TCPSocket | None = None
    """TCP connect check."""
    initial_delay_seconds: int = Field(default=0, ge=0, le=3600)
    """Delay before the first check."""
    period_seconds: int = Field(default=10, ge=1, le=3600)
    """Interval between checks."""
    timeout_seconds: int = Field(default=1, ge=1, le=3600)
    """Timeout of one check."""
    failure_threshold: int = Field(default=3, ge=1, le=100)
    """Consecutive failures before the check counts as failed."""

    @model_validator(mode="after")
    def _one_action(self) -> Probe:
        PROBE_ONE_ACTION.check(self.http_get is None or self.tcp_socket is None)
        return self


class Probes(_Model):
    """Readiness and liveness checks. Unset ones default to a TCP check of the first port
    (liveness waits 10 s before its first check)."""

    readiness: Probe | None = None
    """Gates traffic from the Service."""
    liveness: Probe | None = None
    """Restarts the container when failing."""
    enabled: bool = True
    """false turns both checks off."""


class SecretBinding(_Model):
    """Credentials of a backing service, as a Secret in the app's namespace."""

    secret_ref: ObjectRef
    """Secret whose keys become environment variables."""


class Bindings(_Model):
    """Backing services; each Secret's keys are injected with a prefix (DATABASE_, STORAGE_)."""

    database: SecretBinding | None = None
    """Database credentials (keys injected as DATABASE_<KEY>)."""
    storage: SecretBinding | None = None
    """Object storage credentials (keys injected as STORAGE_<KEY>)."""


class NamespaceSelector(_Model):
    """Namespaces selected by their labels."""

    match_labels: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, max_length=16
    )
    """Labels a namespace must all carry."""


class Exposure(_Model):
    """Who may reach the app's ports (the NetworkPolicy denies all other ingress)."""

    allow_same_namespace: bool = True
    """Allow pods of the app's own namespace."""
    allowed_namespaces: list[Label] = Field(
        default_factory=list, max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Further namespaces allowed, by name."""
    namespace_selector: NamespaceSelector | None = None
    """Further namespaces allowed, by labels."""


class MiniProgramAppSpec(_Model):
    """Desired state of a MiniProgramApp."""

    image: str = Field(min_length=1, max_length=512)
    """Container image, e.g. nginxinc/nginx-unprivileged:1.27."""
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
    def _ports_unique(self) -> MiniProgramAppSpec:
        PORT_NAMES_UNIQUE.check(len({p.name for p in self.ports}) == len(self.ports))
        PORT_NUMBERS_UNIQUE.check(len({(p.container_port, p.protocol) for p in self.ports}) == len(self.ports))
        if len({e.name for e in self.env}) != len(self.env):
            raise ValueError("env[].name must be unique")
        return self


# ---------------------------------------------------------------- status


class ForecastSummary(_Model):
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


class MiniProgramAppStatus(_Model):
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


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore")

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class MiniProgramApp(_Model):
    """A mini-program app: one container image served as a hardened, sandboxed, autoscaled service.

    The operator creates a ServiceAccount, Deployment (Kata RuntimeClass, Pod Security "restricted"),
    ClusterIP Service, NetworkPolicy and, with replicas.min >= 2, a PodDisruptionBudget.

    Scale subresource: spec.replicas.desired / status.replicas / status.selector, so kubectl scale,
    HPA and KEDA work; the operator clamps spec.replicas.desired to [replicas.min, replicas.max].
    """

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["mpcloud.io/v1alpha1"] = API_VERSION
    kind: Literal["MiniProgramApp"] = KIND
    metadata: ObjectMeta
    spec: MiniProgramAppSpec
    status: MiniProgramAppStatus | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> MiniProgramApp:
        """Validate kopf's `body` (a Mapping of Mappings) or a plain dict."""
        return cls.model_validate(_plain(body))


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj

