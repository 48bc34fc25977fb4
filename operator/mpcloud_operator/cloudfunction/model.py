"""CloudFunction spec and status as pydantic models: the single source of truth for the CRD.

A function is source code (inline, a ConfigMap, or an archive), a runtime that loads it at start-up (one image
per language: no image build per function), triggers, scale-to-zero bounds with a keep-alive policy, and
bindings to the tenant's document collections and file bucket. The container parts every kind shares (env,
resources, sandbox) come from `mpcloud_operator.api`; CEL rules are declared once as `Rule`s and mirrored by
validators with the same message.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, model_validator

from mpcloud_operator.api.conditions import Condition
from mpcloud_operator.api.parts import EnvFromSource, EnvVar, ObjectRef, Resources, Sandbox
from mpcloud_operator.api.schema import APIModel, CustomResource, Rule, cel, list_map, nested
from mpcloud_operator.api.types import Label

API_VERSION = "mpcloud.io/v1alpha1"
KIND = "CloudFunction"
RUNTIMES = ("python3.11", "nodejs20")
INLINE_MAX_BYTES = 512 * 1024  # inline source lands in a ConfigMap (1 MiB limit, with room for metadata)

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z_$][A-Za-z0-9_$]*$")]
CollectionName = Annotated[str, StringConstraints(min_length=1, max_length=48, pattern=r"^[a-z][a-z0-9_]*$")]
FieldPath = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]
HTTPPath = Annotated[str, StringConstraints(min_length=2, max_length=256, pattern=r"^/[-._~/a-zA-Z0-9]+$")]


# ---------------------------------------------------------------- source

FILE_NAMES = Rule(
    "self.files.all(f, size(f) <= 253 && f.matches('^[-._a-zA-Z0-9]+$'))",
    "source.inline.files: names are plain file names (letters, digits, - . _; no directories)",
)
INLINE_SIZE = Rule(
    "self.files.all(f, size(self.files[f]) <= 524288)",
    "source.inline.files: each file is at most 512 KiB (use source.archive for larger code)",
)


class InlineSource(APIModel):
    """Code written into the object itself (small functions; the operator stores it in a ConfigMap)."""

    model_config = cel(FILE_NAMES, INLINE_SIZE)

    files: dict[str, Annotated[str, StringConstraints(max_length=INLINE_MAX_BYTES)]] = Field(
        min_length=1, max_length=32)
    """File name -> content, e.g. {"index.js": "exports.main = async (event) => 'hi'"}."""

    @model_validator(mode="after")
    def _size(self) -> InlineSource:
        FILE_NAMES.check(all(len(f) <= 253 and re.fullmatch(r"[-._a-zA-Z0-9]+", f) for f in self.files))
        INLINE_SIZE.check(all(len(v) <= INLINE_MAX_BYTES for v in self.files.values()))
        total = sum(len(v.encode()) for v in self.files.values())
        if total > INLINE_MAX_BYTES:
            raise ValueError(f"source.inline.files total {total} bytes; at most {INLINE_MAX_BYTES} (use source.archive)")
        return self


class ArchiveSource(APIModel):
    """A .tar.gz or .zip of the code, fetched by an init container and verified against its digest."""

    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://")
    """Where to download it from (the file bucket's pre-signed URL, an artifact server)."""
    sha256: str = Field(min_length=64, max_length=64, pattern=r"^[a-f0-9]{64}$")
    """SHA-256 of the archive: the download is refused when it differs; also the deployed code hash."""


SOURCE_ONE_OF = Rule(
    "[has(self.inline), has(self.configMapRef), has(self.archive)].filter(x, x).size() == 1",
    "source sets exactly one of inline, configMapRef or archive",
)


class Source(APIModel):
    """Where the function's code comes from: exactly one of inline, configMapRef, archive."""

    model_config = cel(SOURCE_ONE_OF)

    inline: InlineSource | None = None
    """Files in the spec."""
    config_map_ref: ObjectRef | None = None
    """A ConfigMap in the function's namespace whose keys are the files."""
    archive: ArchiveSource | None = None
    """An archive fetched at start-up."""

    @model_validator(mode="after")
    def _one_of(self) -> Source:
        SOURCE_ONE_OF.check(sum(x is not None for x in (self.inline, self.config_map_ref, self.archive)) == 1)
        return self


# ---------------------------------------------------------------- triggers

class HTTPTrigger(APIModel):
    """Invocation over HTTP through the gateway, always at /<namespace>/<name>."""

    path: HTTPPath | None = None
    """An extra route on the gateway (e.g. /todo/add); unique across the cluster."""
    methods: list[Literal["GET", "POST", "PUT", "PATCH", "DELETE"]] = Field(
        default_factory=list, max_length=5, json_schema_extra={"x-kubernetes-list-type": "set"})
    """Methods accepted (empty: all)."""


class ScheduleTrigger(APIModel):
    """Invocation on a timer (a POST with the given body)."""

    name: Label
    """Name of the schedule (unique within the function)."""
    cron: str = Field(min_length=9, max_length=128)
    """Five-field cron expression in UTC, e.g. "*/5 * * * *"."""
    body: str | None = Field(default=None, max_length=4096)
    """JSON sent as the event body."""


class Triggers(APIModel):
    """How the function is invoked."""

    http: HTTPTrigger = nested(HTTPTrigger)
    """HTTP through the gateway (always on)."""
    schedules: list[ScheduleTrigger] = Field(default_factory=list, max_length=8, json_schema_extra=list_map("name"))
    """Timers."""


# ---------------------------------------------------------------- scaling

class KeepAlive(APIModel):
    """How long an idle function keeps a warm instance, and when one is pre-warmed."""

    policy: Literal["mpcloud", "hybrid", "fixed"] = "mpcloud"
    """mpcloud: the forecasting keep-alive of predictors/keepalive (pre-warms before expected calls);
    hybrid: the histogram policy of "Serverless in the Wild"; fixed: keep fixedMinutes after the last call."""
    fixed_minutes: int = Field(default=10, ge=1, le=1440)
    """Keep-alive of the fixed policy (and the fall-back while a function has no history)."""


class WarmPool(APIModel):
    """Whether a cold start of this function may be served by a pre-started generic instance of its runtime
    (a warm pool pod the gateway specialises with this function's code, ~0.1 s instead of a pod start)."""

    enabled: bool | None = None
    """true / false; unset: on when keepAlive.policy is mpcloud (the pool is sized by that policy's forecast),
    off for the fixed and hybrid baselines (so they stay what `mpcloud keepalive` scores). Only functions
    without bindings, envFrom or env valueFrom, with an inline or archive source, can use the pool (the pool
    pod holds no Secret of theirs); for others it is a no-op."""


MIN_LE_MAX = Rule("self.minInstances <= self.maxInstances",
                  "scaling.minInstances must be less than or equal to scaling.maxInstances")


class FunctionScaling(APIModel):
    """Instances between minInstances (0: scale to zero) and maxInstances, from the gateway's demand."""

    model_config = cel(MIN_LE_MAX)

    min_instances: int = Field(default=0, ge=0, le=100)
    """Instances kept even when idle (0 allows scale to zero)."""
    max_instances: int = Field(default=10, ge=1, le=100)
    """Most instances."""
    concurrency: int = Field(default=10, ge=1, le=1000)
    """Requests one instance serves at once; the gateway queues beyond concurrency x instances."""
    keep_alive: KeepAlive = nested(KeepAlive)
    """Keep-alive and pre-warm policy."""
    warm_pool: WarmPool = nested(WarmPool)
    """Cold starts from a warm pool of generic instances."""

    @model_validator(mode="after")
    def _bounds(self) -> FunctionScaling:
        MIN_LE_MAX.check(self.min_instances <= self.max_instances)
        return self

    def clamp(self, n: int) -> int:
        return max(self.min_instances, min(self.max_instances, n))


# ---------------------------------------------------------------- bindings

class CollectionBinding(APIModel):
    """A document collection of the function's app, and what the function may do with it."""

    name: CollectionName
    """Collection name (shared by every function of the same app)."""
    access: Literal["read", "readWrite"] = "read"
    """read: get/query/count; readWrite: also add/update/delete. Enforced by PostgreSQL grants."""
    indexes: list[FieldPath] = Field(default_factory=list, max_length=8, json_schema_extra={"x-kubernetes-list-type": "set"})
    """Document fields to index (for filters and sorts on them)."""


class DatabaseBinding(APIModel):
    """Document collections on the platform's PostgreSQL (a database per app; a role per function)."""

    collections: list[CollectionBinding] = Field(min_length=1, max_length=32, json_schema_extra=list_map("name"))
    """Collections the function may use; others are refused."""


class StorageBinding(APIModel):
    """The app's file bucket on the platform's S3 server (a bucket per app; a key per function)."""

    access: Literal["read", "readWrite"] = "read"
    """read: get/list/pre-signed GET; readWrite: also put/delete/pre-signed PUT."""


class FunctionBindings(APIModel):
    """Backing services of the function's app."""

    database: DatabaseBinding | None = None
    """Document collections."""
    storage: StorageBinding | None = None
    """File bucket."""


# ---------------------------------------------------------------- spec

class CloudFunctionSpec(APIModel):
    """Desired state of a CloudFunction."""

    app: Label = "default"
    """The mini-program this function belongs to, within the namespace: functions of one app share its
    collections and bucket; different apps (and namespaces) never see each other's data."""
    runtime: Literal["python3.11", "nodejs20"]
    """Language runtime."""
    handler: str = Field(default="index.main", min_length=3, max_length=128,
                         pattern=r"^[-_a-zA-Z0-9]+(\.[-_a-zA-Z0-9]+)*\.[A-Za-z_$][A-Za-z0-9_$]*$")
    """<file without extension>.<exported function>, e.g. index.main (index.py / index.js)."""
    source: Source
    """The code."""
    timeout_seconds: int = Field(default=10, ge=1, le=900)
    """Longest an invocation may run; then it is stopped and answered 504 with a structured error."""
    env: list[EnvVar] = Field(default_factory=list, max_length=64, json_schema_extra=list_map("name"))
    """Environment variables."""
    env_from: list[EnvFromSource] = Field(default_factory=list, max_length=16)
    """Secrets and ConfigMaps imported as environment variables."""
    resources: Resources = nested(Resources)
    """CPU and memory of one instance."""
    sandbox: Sandbox = nested(Sandbox)
    """Sandbox runtime (Kata Containers by default)."""
    triggers: Triggers = nested(Triggers)
    """HTTP route and timers."""
    scaling: FunctionScaling = nested(FunctionScaling)
    """Instances, concurrency and keep-alive."""
    bindings: FunctionBindings = nested(FunctionBindings)
    """Document collections and file bucket."""

    @model_validator(mode="after")
    def _spec_rules(self) -> CloudFunctionSpec:
        if len({e.name for e in self.env}) != len(self.env):
            raise ValueError("env[].name must be unique")
        if len({s.name for s in self.triggers.schedules}) != len(self.triggers.schedules):
            raise ValueError("triggers.schedules[].name must be unique")
        return self

    @property
    def handler_file_stem(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def handler_function(self) -> str:
        return self.handler.rpartition(".")[2]


# ---------------------------------------------------------------- status

class CloudFunctionStatus(APIModel):
    """Observed state of a CloudFunction, written by the operator only."""

    model_config = ConfigDict(extra="ignore")

    conditions: list[Condition] = Field(default_factory=list, max_length=16, json_schema_extra=list_map("type"))
    """Ready (reasons: Serving, ScaledToZero, Deploying, InvalidSource, BuildFailed, BackingServiceUnavailable)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation last acted on."""
    code_hash: str | None = Field(default=None, max_length=64)
    """SHA-256 of the source the current generation asks for."""
    serving_hash: str | None = Field(default=None, max_length=64)
    """SHA-256 of the source every running instance serves (equals codeHash once a rollout finished)."""
    serving_generation: int | None = Field(default=None, ge=0)
    """Generation whose code is served."""
    url: str | None = Field(default=None, max_length=512)
    """Gateway URL of the function."""
    instances: int | None = Field(default=None, ge=0)
    """Ready instances."""
    desired_instances: int | None = Field(default=None, ge=0)
    """Instances the scaler asked for."""
    sandbox: str | None = Field(default=None, max_length=300)
    """The RuntimeClass instances run in, or "unsandboxed (opt-out)"."""
    bindings: list[Literal["database", "storage"]] = Field(default_factory=list, max_length=2,
                                                           json_schema_extra={"x-kubernetes-list-type": "set"})
    """Backing services the function holds credentials for (a binding removed from the spec is revoked)."""
    last_invocation_time: AwareDatetime | None = None
    """When the gateway last routed a request to the function."""
    invocations: int | None = Field(default=None, ge=0)
    """Requests routed by the gateway (since the operator started observing)."""
    cold_starts: int | None = Field(default=None, ge=0)
    """Requests that waited for an instance to start."""
    pool_starts: int | None = Field(default=None, ge=0)
    """Cold starts served by a warm pool instance specialised for the function (counted in coldStarts too)."""
    scaling_reason: str | None = Field(default=None, max_length=1024)
    """Why the scaler chose desiredInstances."""


class CloudFunction(CustomResource):
    """A function run from source by a language runtime, scaled to zero and pre-warmed by forecast.

    The operator stores inline code in a ConfigMap, runs the runtime image in a Deployment (sandbox
    RuntimeClass, Pod Security "restricted"), exposes it through a Service the gateway routes to, provisions
    the app's collections and bucket with a database role and access key of the function's own, and scales
    the Deployment between minInstances and maxInstances from the gateway's demand.
    """

    api_version: Literal["mpcloud.io/v1alpha1"] = API_VERSION
    kind: Literal["CloudFunction"] = KIND
    spec: CloudFunctionSpec
    status: CloudFunctionStatus | None = None


__all__ = ["CloudFunction", "CloudFunctionSpec", "CloudFunctionStatus", "RUNTIMES", "AwareDatetime"]
