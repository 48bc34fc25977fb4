"""RiskPolicy: one switch for admission guardrails, ops-risk limits, background scans and abnormal-traffic detection.

A RiskPolicy lives in a namespace and governs the mpcloud objects of that namespace (MiniProgramApp, CloudFunction,
Pipeline, PipelineRun; with `admission.workloads` also plain Pods and Deployments). A RiskPolicy in the operator's
namespace with `clusterDefault: true` applies to every namespace as well; a namespace's own policies add to it (every
applicable policy is evaluated; any Enforce verdict rejects).

Each rule group has `enabled` and a `mode`: `Audit` admits and records a finding (an admission warning, an Event,
the report), `Enforce` rejects (admission) or refuses the change (the scaler). A rule may override its group's mode.
`exceptions` exempt objects by namespace, name or labels, from all rules or from the rules named.

Rule ids (used in messages, exceptions, findings and PolicyReport results) are `<group>.<rule>`, see RULES.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, model_validator

from mpcloud_operator.api.conditions import Condition
from mpcloud_operator.api.schema import APIModel, CustomResource, Rule, cel, list_map, nested
from mpcloud_operator.api.types import Label, Name
from mpcloud_operator.config import GROUP, VERSION

KIND = "RiskPolicy"
PLURAL = "riskpolicies"
API_VERSION = f"{GROUP}/{VERSION}"

Mode = Literal["Audit", "Enforce"]

# Every rule id, by group: the vocabulary of exceptions[].rules, findings and PolicyReport results.
RULES: dict[str, tuple[str, ...]] = {
    "admission": ("sandbox", "images", "privileged", "resources", "podSecurity", "secretEnv"),
    "opsRisk": ("freeze", "scaleIn", "rollout"),
    "scans": ("secrets", "personalData", "content", "images"),
    "traffic": ("anomaly",),
}
RULE_IDS = tuple(f"{group}.{rule}" for group, rules in RULES.items() for rule in rules)
_RULE_ID_PATTERN = r"^(" + "|".join(g for g in RULES) + r")(\.[A-Za-z]+)?$"
GROUPS = tuple(RULES)

RuleId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_RULE_ID_PATTERN)]
Word = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Registry = Annotated[str, StringConstraints(min_length=1, max_length=255)]
ImageText = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class RuleSwitch(APIModel):
    """One rule: on or off, optionally in another mode than its group."""

    enabled: bool = True
    """Evaluate this rule."""
    mode: Mode | None = None
    """Audit or Enforce for this rule only; unset = the group's mode."""


# ---------------------------------------------------------------- exceptions

class LabelSelector(APIModel):
    """Objects whose labels include all of these (matchLabels)."""

    match_labels: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(default_factory=dict, max_length=16)
    """Label key/value pairs that must all be present."""


EXCEPTION_SCOPED = Rule(
    "size(self.namespaces) > 0 || size(self.names) > 0 || has(self.selector)",
    "exceptions[] needs at least one of namespaces, names and selector",
)


class RiskException(APIModel):
    """Objects exempt from some or all rules."""

    model_config = cel(EXCEPTION_SCOPED)

    name: Label
    """Name of the exception (DNS label), unique within the policy; shown in findings it suppresses."""
    rules: list[RuleId] = Field(default_factory=list, max_length=32)
    """Rule ids (`admission.images`) or whole groups (`admission`) it exempts from; empty = every rule."""
    namespaces: list[Label] = Field(default_factory=list, max_length=64)
    """Namespaces whose objects are exempt (useful in a cluster default)."""
    names: list[Name] = Field(default_factory=list, max_length=64)
    """Object names that are exempt (any kind)."""
    selector: LabelSelector | None = None
    """Objects whose labels match are exempt."""
    reason: str | None = Field(default=None, max_length=1024)
    """Why (kept for audits)."""

    @model_validator(mode="after")
    def _scoped(self) -> RiskException:
        EXCEPTION_SCOPED.check(bool(self.namespaces or self.names or self.selector is not None))
        for rule in self.rules:
            group, _, name = rule.partition(".")
            if group not in RULES or (name and name not in RULES[group]):
                raise ValueError(f"exceptions[].rules: unknown rule {rule!r} (known: {', '.join(RULE_IDS)})")
        return self


# ---------------------------------------------------------------- admission

class ImageRule(RuleSwitch):
    """Which image references are accepted."""

    allowed_registries: list[Registry] = Field(default_factory=list, max_length=32)
    """Registry hosts, or registry/path prefixes, images must come from (e.g. registry.example.com,
    ghcr.io/team); empty = any. Docker Hub images without a registry count as docker.io."""
    forbid_latest: bool = True
    """Reject a `:latest` tag or no tag at all (both mean latest), unless pinned by digest."""
    require_digest: bool = False
    """Require images pinned by digest (@sha256:...)."""


class ResourcesRule(RuleSwitch):
    """Containers must declare what they use."""

    require_limits: bool = True
    """Require memory and CPU limits as well as requests."""


class PodSecurityRule(RuleSwitch):
    """Pod Security Standards for Pods and Deployments (mpcloud kinds are always rendered restricted)."""

    level: Literal["baseline", "restricted"] = "restricted"
    """Pod Security level the pod template must meet."""


class SecretEnvRule(RuleSwitch):
    """Secrets must come from Secret references, not literal env values."""

    name_patterns: list[Word] = Field(
        default_factory=lambda: ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "PRIVATE_KEY",
                                 "ACCESS_KEY", "CREDENTIAL", "DSN"], max_length=64)
    """Substrings (case-insensitive) of env names that mark a secret; a literal value under such a name is a finding."""
    detect_values: bool = True
    """Also flag literal values that look like credentials whatever the name (private keys, AWS/GitHub tokens, JWTs)."""


class AdmissionRules(APIModel):
    """Checks made by the operator's validating webhooks when an object is created or updated."""

    enabled: bool = True
    """Run these checks."""
    mode: Mode = "Audit"
    """Audit: admit with a warning and a finding. Enforce: reject (failurePolicy Fail: rejected also while the
    operator's webhook is unreachable)."""
    workloads: bool = False
    """Also check plain Pods and Deployments of the namespace (not only mpcloud's kinds and their task pods)."""
    sandbox: RuleSwitch = nested(RuleSwitch)
    """Apps, functions and pipeline tasks must run in a sandbox RuntimeClass (no allowUnsandboxed / runtimeClassName
    none); Pods/Deployments must name a RuntimeClass."""
    images: ImageRule = nested(ImageRule)
    """Image policy: registry allowlist, no latest, digest when asked."""
    privileged: RuleSwitch = nested(RuleSwitch)
    """No privileged containers, host namespaces, host ports or hostPath volumes, no added capabilities."""
    resources: ResourcesRule = nested(ResourcesRule)
    """Resource requests (and limits) set."""
    pod_security: PodSecurityRule = nested(PodSecurityRule)
    """Pod Security Standards (Pods and Deployments)."""
    secret_env: SecretEnvRule = nested(SecretEnvRule)
    """No Secrets passed as plain env values."""


# ---------------------------------------------------------------- ops risk

FREEZE_END_AFTER_START = Rule("self.end > self.start", "opsRisk.freezeWindows[].end must be after start", ".end")


class FreezeWindow(APIModel):
    """A change freeze: no image rollout of the selected apps between start and end."""

    model_config = cel(FREEZE_END_AFTER_START)

    name: Label
    """Window name (DNS label), unique within the policy."""
    start: AwareDatetime
    """Start, RFC 3339."""
    end: AwareDatetime
    """End, RFC 3339; after start."""
    apps: list[Name] = Field(default_factory=list, max_length=64)
    """Apps (MiniProgramApp names) frozen; empty = every app the policy governs."""
    reason: str | None = Field(default=None, max_length=1024)
    """Shown in the refusal, e.g. "Double 11 freeze"."""

    @model_validator(mode="after")
    def _ordered(self) -> FreezeWindow:
        FREEZE_END_AFTER_START.check(self.end > self.start)
        return self


class ScaleInRule(RuleSwitch):
    """Scale-in limits while a promotion event of the app is running (the app's spec.scaling.events)."""

    min_replicas: int | None = Field(default=None, ge=0, le=1000)
    """Fewest replicas during an event (the scaler never goes below it)."""
    max_step_percent: int | None = Field(default=None, ge=1, le=100)
    """Largest scale-in step during an event, as a percentage of current replicas (at least one replica)."""


class RolloutRule(RuleSwitch):
    """Rollout limits."""

    one_at_a_time: bool = True
    """Refuse a new image while the app's previous rollout is still in progress (Progressing=True)."""


class OpsRiskRules(APIModel):
    """Guardrails on changes to running apps: enforced where the change happens (admission, the scaler)."""

    enabled: bool = True
    """Apply these guardrails."""
    mode: Mode = "Audit"
    """Audit: let the change through with a warning and a finding. Enforce: refuse it."""
    freeze_windows: list[FreezeWindow] = Field(default_factory=list, max_length=32,
                                               json_schema_extra=list_map("name"))
    """Declared change freezes."""
    freeze_during_events: bool = True
    """Treat each promotion event of an app (spec.scaling.events) as a freeze of that app's image."""
    freeze: RuleSwitch = nested(RuleSwitch)
    """The freeze rule itself (windows and events)."""
    scale_in: ScaleInRule = nested(ScaleInRule)
    """Min replicas / max scale-in step during events (the scaler)."""
    rollout: RolloutRule = nested(RolloutRule)
    """Rollout limits (admission)."""

    @model_validator(mode="after")
    def _unique(self) -> OpsRiskRules:
        if len({w.name for w in self.freeze_windows}) != len(self.freeze_windows):
            raise ValueError("opsRisk.freezeWindows[].name must be unique")
        return self


# ---------------------------------------------------------------- scans (background; riskpolicy/scan*)

class PersonalDataRule(RuleSwitch):
    """Personal data in function source and ConfigMaps."""

    phone_numbers: bool = True
    """Mobile/phone numbers (phonenumbers, region CN by default)."""
    resident_ids: bool = True
    """Chinese resident identity numbers (checksum-valid)."""
    bank_cards: bool = True
    """Bank card numbers (Luhn-valid)."""
    region: str = Field(default="CN", min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")
    """Default region for phone numbers without a country code."""


class ContentRule(RuleSwitch):
    """Content checks of text fields and sources against a word list."""

    words: list[Word] = Field(default_factory=list, max_length=1024)
    """Words or phrases (case-insensitive) that make a finding."""
    word_list_config_map: Name | None = None
    """A ConfigMap of the policy's namespace whose values (one word or phrase a line) extend `words`."""


class ImageScanRule(RuleSwitch):
    """Image references of the namespace's objects."""

    known_bad_tags: list[ImageText] = Field(default_factory=list, max_length=256)
    """Image references (name:tag, or name for all tags) known to be bad."""
    require_digest: bool = False
    """A tag-only reference is a finding."""
    outdated_base_label: str | None = Field(default=None, max_length=253)
    """Object label naming the base image release; older than `minBaseVersion` is a finding."""
    min_base_version: str | None = Field(default=None, max_length=64)
    """Oldest acceptable base image release (compared as dotted versions)."""


class ScanRules(APIModel):
    """Background scans of the namespace's objects (function source, ConfigMaps, image references)."""

    enabled: bool = True
    """Run the scans."""
    mode: Mode = "Audit"
    """Scans only report: Enforce marks the findings as failures (result fail) rather than warnings."""
    interval_seconds: int = Field(default=3600, ge=10, le=604800)
    """Full scan period; changed objects are also scanned when they change."""
    secrets: RuleSwitch = nested(RuleSwitch)
    """Secrets in source and ConfigMaps (detect-secrets)."""
    personal_data: PersonalDataRule = nested(PersonalDataRule)
    """Personal data."""
    content: ContentRule = nested(ContentRule)
    """Word-list content checks."""
    images: ImageScanRule = nested(ImageScanRule)
    """Image reference checks."""


# ---------------------------------------------------------------- traffic (riskpolicy/traffic*)

class TrafficRules(APIModel):
    """Abnormal traffic (scalpers, bots, fraud) on the request series of the namespace's apps and functions."""

    enabled: bool = True
    """Run the detector."""
    mode: Mode = "Audit"
    """Audit: findings and Events only. Enforce: also raise the rate-limit signal (if rateLimitSignal)."""
    anomaly: RuleSwitch = nested(RuleSwitch)
    """The anomaly detector."""
    threshold: float | None = Field(default=None, gt=0, le=1)
    """Anomaly score above which a point is abnormal; unset = the detector's shipped threshold."""
    sensitivity: Literal["low", "medium", "high"] = "medium"
    """Shifts the shipped threshold: high reports more (fewer misses), low fewer (fewer false alarms)."""
    rate_limit_signal: bool = False
    """Opt in: on detection publish a rate-limit signal the gateway honours."""


# ---------------------------------------------------------------- spec, status, object

class RiskPolicySpec(APIModel):
    """Desired risk management of a namespace (or, as cluster default, of every namespace)."""

    enabled: bool = True
    """The one switch: false turns every rule group off."""
    cluster_default: bool = False
    """Only in the operator's namespace: apply this policy to every namespace too."""
    exceptions: list[RiskException] = Field(default_factory=list, max_length=64, json_schema_extra=list_map("name"))
    """Objects exempt from some or all rules."""
    admission: AdmissionRules = nested(AdmissionRules)
    """Admission guardrails (validating webhooks)."""
    ops_risk: OpsRiskRules = nested(OpsRiskRules)
    """Ops-risk guardrails: freezes, scale-in during events, rollout limits."""
    scans: ScanRules = nested(ScanRules)
    """Background software-risk and privacy scans."""
    traffic: TrafficRules = nested(TrafficRules)
    """Abnormal-traffic detection."""

    @model_validator(mode="after")
    def _unique(self) -> RiskPolicySpec:
        if len({e.name for e in self.exceptions}) != len(self.exceptions):
            raise ValueError("exceptions[].name must be unique")
        return self


class FindingCounts(APIModel):
    """Findings per rule group. Each group has its own writer (field manager): admission and opsRisk
    mpcloud-risk-admission, scans mpcloud-risk-scan, traffic mpcloud-risk-traffic."""

    admission: int = Field(default=0, ge=0)
    """Admission findings (audit warnings and refusals) in the PolicyViolation Events the API server still keeps
    (an hour by default)."""
    ops_risk: int = Field(default=0, ge=0)
    """Ops-risk findings (refused or audited rollouts and scale-ins), counted the same way."""
    scans: int = Field(default=0, ge=0)
    """Open findings of the last scan."""
    traffic: int = Field(default=0, ge=0)
    """Open abnormal-traffic findings."""


class FindingSummary(APIModel):
    """One recent finding (the full list is the namespace's PolicyReport)."""

    rule: str = Field(max_length=64)
    """Rule id, e.g. admission.images."""
    result: Literal["fail", "warn"]
    """fail: Enforce (refused); warn: Audit (admitted)."""
    resource: str = Field(max_length=512)
    """Kind/name of the object."""
    message: str = Field(max_length=1024)
    """What was found."""
    time: AwareDatetime
    """When."""


class RiskPolicyStatus(APIModel):
    """Observed state of a RiskPolicy. The reconciler (field manager mpcloud) owns conditions and
    observedGeneration; each finding writer owns its own fields (see FindingCounts): recentFindings are the
    admission and ops-risk ones, lastScanTime is the scanner's."""

    model_config = ConfigDict(extra="ignore")

    conditions: list[Condition] = Field(default_factory=list, max_length=16, json_schema_extra=list_map("type"))
    """Ready: the policy is valid and in force."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation last acted on."""
    findings: FindingCounts | None = None
    """Findings per rule group."""
    recent_findings: list[FindingSummary] = Field(default_factory=list, max_length=20)
    """The latest admission and ops-risk findings, newest first."""
    last_scan_time: AwareDatetime | None = None
    """When the last background scan finished."""


class RiskPolicy(CustomResource):
    """Risk management of a namespace's mini-program apps, functions and pipelines behind one switch:
    admission guardrails (validating webhooks), ops-risk guardrails (freezes, scale-in limits during events,
    rollout limits), background scans for secrets, personal data and content, and abnormal-traffic detection.
    Findings are reported as Events, admission warnings and PolicyReports (wgpolicyk8s.io/v1alpha2)."""

    api_version: Literal["mpcloud.io/v1alpha1"] = API_VERSION
    kind: Literal["RiskPolicy"] = KIND
    spec: RiskPolicySpec = Field(default_factory=RiskPolicySpec)
    status: RiskPolicyStatus | None = None
