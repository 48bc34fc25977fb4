"""Reusable spec parts: ports, environment, compute resources, sandbox, health checks and secret bindings.

Every kind that runs a container (MiniProgramApp, CloudFunction, Pipeline stages) builds its spec from these, so
the same field means the same thing, with the same bounds and CEL rules, in every CRD. `reconcile.workload`
renders them into hardened pod specs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mpcloud_operator.api.schema import APIModel, Rule, cel, nested
from mpcloud_operator.api.types import DNS_SUBDOMAIN, ENV_NAME, Name, PortName, PortRef, Quantity, parse_quantity

DEFAULT_RUNTIME_CLASS = "kata"
UNSANDBOXED_RUNTIME_CLASSES = ("", "none")

# ---------------------------------------------------------------- container: ports, environment

PORT_NAMES_UNIQUE = Rule("self.all(p, self.exists_one(q, q.name == p.name))", "ports[].name must be unique")
PORT_NUMBERS_UNIQUE = Rule(
    "self.all(p, self.exists_one(q, q.containerPort == p.containerPort && q.protocol == p.protocol))",
    "ports[].containerPort must be unique per protocol",
)


class Port(APIModel):
    """A port the container listens on; exposed by the Service under the same name and number."""

    name: PortName
    """IANA service name (lowercase letters, digits, hyphens; at most 15 characters)."""
    container_port: int = Field(ge=1, le=65535)
    """Port number. The app runs as non-root, so use a port >= 1024."""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    """Transport protocol."""


class KeyRef(APIModel):
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


class EnvVarSource(APIModel):
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


class EnvVar(APIModel):
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


class ObjectRef(APIModel):
    """A Secret or ConfigMap in the app's namespace, by name."""

    name: Name
    """Object name."""
    optional: bool = False
    """Start the app even if the object is missing."""


ENV_FROM_ONE_OF = Rule(
    "(has(self.secretRef) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) == 1",
    "envFrom[] needs exactly one of secretRef and configMapRef",
)


class EnvFromSource(APIModel):
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


# ---------------------------------------------------------------- container: compute resources


class Requests(APIModel):
    """Resources reserved for the container (scheduling)."""

    cpu: Quantity = "100m"
    """CPU request (Kubernetes quantity, e.g. 250m)."""
    memory: Quantity = "128Mi"
    """Memory request (Kubernetes quantity, e.g. 256Mi)."""


class Limits(APIModel):
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


class Resources(APIModel):
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


# ---------------------------------------------------------------- sandbox

SANDBOX_REQUIRED = Rule(
    "self.allowUnsandboxed || (self.runtimeClassName != '' && self.runtimeClassName != 'none')",
    'sandbox.runtimeClassName may be empty or "none" only when sandbox.allowUnsandboxed is true',
)


class Sandbox(APIModel):
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


# ---------------------------------------------------------------- identity and image policy

DEFAULT_RUN_AS = 10001  # >= 10000: outside the UID range of host users and of most images' built-in users
MAX_ID = 2147483647  # Kubernetes' bound for runAsUser/runAsGroup/fsGroup (int32)


class RunAs(APIModel):
    """The Linux user and group the pods' processes run as: never root. The default, 10001, is a high UID that no
    host user or image-defined user is likely to own."""

    user: int = Field(default=DEFAULT_RUN_AS, ge=1, le=MAX_ID)
    """User ID (runAsUser) of every container; 0 (root) is not allowed."""
    group: int = Field(default=DEFAULT_RUN_AS, ge=1, le=MAX_ID)
    """Primary group ID (runAsGroup), also the group that owns the pod's volumes (fsGroup); 0 is not allowed."""


IMAGE_DIGEST_REQUIRED = Rule(
    "!self.imagePolicy.requireDigest || self.image.contains('@')",
    "imagePolicy.requireDigest is set: image must be pinned by digest (name@sha256:<64 hex digits>)",
    ".image",
)


class ImagePolicy(APIModel):
    """Which image references the spec may use. A spec with this part and an `image` field carries
    IMAGE_DIGEST_REQUIRED as a CEL rule (and calls `check` in its validator)."""

    require_digest: bool = False
    """Only accept an image pinned by digest (@sha256:...), so every pod runs exactly the reviewed bytes
    whatever happens to the tag."""

    pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """The containers' imagePullPolicy. Default: IfNotPresent for a digest-pinned image (its bytes cannot
    change), Always for a tag, so that a moved tag is re-resolved at each start and a node's image cache never
    serves one tenant's private image to a pod without the credentials to pull it."""

    def check(self, image: str) -> None:
        IMAGE_DIGEST_REQUIRED.check(not self.require_digest or "@" in image)

    def pull_policy_for(self, image: str) -> str:
        if self.pull_policy:
            return self.pull_policy
        return "IfNotPresent" if "@" in image else "Always"


# ---------------------------------------------------------------- health checks, bindings


class HTTPGet(APIModel):
    """HTTP GET probe: healthy on a 2xx/3xx answer."""

    path: str = Field(default="/", max_length=1024, pattern=r"^/")
    """Request path."""
    port: PortRef | None = None
    """Port number or name; defaults to the first of spec.ports."""


class TCPSocket(APIModel):
    """TCP probe: healthy when the port accepts a connection."""

    port: PortRef | None = None
    """Port number or name; defaults to the first of spec.ports."""


PROBE_ONE_ACTION = Rule("!(has(self.httpGet) && has(self.tcpSocket))", "a probe sets httpGet or tcpSocket, not both")


class Probe(APIModel):
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


class Probes(APIModel):
    """Readiness and liveness checks. Unset ones default to a TCP check of the first port
    (liveness waits 10 s before its first check)."""

    readiness: Probe | None = None
    """Gates traffic from the Service."""
    liveness: Probe | None = None
    """Restarts the container when failing."""
    enabled: bool = True
    """false turns both checks off."""


class SecretBinding(APIModel):
    """Credentials of a backing service, as a Secret in the app's namespace."""

    secret_ref: ObjectRef
    """Secret whose keys become environment variables."""


DATABASE_ONE_OF = Rule(
    "has(self.secretRef) != (has(self.managed) && self.managed)",
    "bindings.database needs exactly one of secretRef and managed: true",
)


class DatabaseBinding(APIModel):
    """A database: your own (a Secret with its credentials) or one mpcloud provisions for the app."""

    model_config = cel(DATABASE_ONE_OF)

    secret_ref: ObjectRef | None = None
    """Secret whose keys become environment variables."""
    managed: bool = False
    """mpcloud provisions the app's own PostgreSQL database (the one its CloudFunctions' collections live in,
    tenant `<namespace>/<app name>`) and a login role with the owner's rights, and writes the credentials to
    Secret `<app>-database` (keys DSN, HOST, PORT, DATABASE, USER, PASSWORD, SCHEMA)."""

    @model_validator(mode="after")
    def _one_of(self) -> DatabaseBinding:
        DATABASE_ONE_OF.check((self.secret_ref is not None) != self.managed)
        return self


class Bindings(APIModel):
    """Backing services; each Secret's keys are injected with a prefix (DATABASE_, STORAGE_)."""

    database: DatabaseBinding | None = None
    """Database credentials (keys injected as DATABASE_<KEY>)."""
    storage: SecretBinding | None = None
    """Object storage credentials (keys injected as STORAGE_<KEY>)."""
