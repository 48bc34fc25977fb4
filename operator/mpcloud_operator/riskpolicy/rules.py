"""The guardrails as pure functions: (policy, object, old object, now) -> findings. No client, no kopf.

Objects are the plain dicts of an AdmissionReview (CRD defaults already applied by the API server), so these
functions keep working when another kind's model gains fields. Each check yields messages; `evaluate` turns them
into Findings with the rule's mode (Audit → warn, Enforce → fail) after the policy's exceptions are applied.

What is checked where:
- MiniProgramApp, CloudFunction, PipelineRun: sandbox (spec.sandbox), images, secret env; the pods mpcloud renders
  for them are always Pod Security "restricted", with resources and no host access, so those rules need no check.
- Pipeline / PipelineRun's embedded pipelineSpec: every step's image and env (the task pods' sandbox is the run's).
- Pod, Deployment (admission.workloads): all admission rules on the pod spec.
- MiniProgramApp image changes: opsRisk.freeze (freeze windows, the app's promotion events), opsRisk.rollout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mpcloud_operator.riskpolicy.findings import Finding
from mpcloud_operator.riskpolicy.model import RiskException, RiskPolicy, RuleSwitch

Object = dict[str, Any]
MPCLOUD_KINDS = ("MiniProgramApp", "CloudFunction", "Pipeline", "PipelineRun")
WORKLOAD_KINDS = ("Pod", "Deployment")
UNSANDBOXED = ("", "none")


@dataclass(frozen=True)
class Container:
    """One container (or a step, or an app's single container) in a uniform view."""

    where: str  # e.g. "spec", "task build step compile", "container app"
    image: str | None
    env: list[Object]
    resources: Object | None = None  # None: rendered by mpcloud (always set)
    security: Object | None = None  # None: rendered by mpcloud (restricted)
    ports: list[Object] | None = None


def _spec(obj: Object) -> Object:
    return obj.get("spec") or {}


def _pipeline_steps(pspec: Object) -> Iterator[Container]:
    for section in ("tasks", "finally"):
        for task in pspec.get(section) or []:
            for step in (task.get("taskSpec") or {}).get("steps") or []:
                yield Container(f"task {task.get('name')} step {step.get('name')}", step.get("image"),
                                step.get("env") or [])


def pod_spec_of(obj: Object) -> Object | None:
    """The pod spec of a Pod or a Deployment's template."""
    if obj.get("kind") == "Pod":
        return _spec(obj)
    if obj.get("kind") == "Deployment":
        return ((_spec(obj).get("template") or {}).get("spec")) or {}
    return None


def containers_of(obj: Object) -> list[Container]:
    kind, spec = obj.get("kind"), _spec(obj)
    if kind == "MiniProgramApp":
        return [Container("spec", spec.get("image"), spec.get("env") or [])]
    if kind == "CloudFunction":
        return [Container("spec", None, spec.get("env") or [])]  # the platform's runtime image
    if kind == "Pipeline":
        return list(_pipeline_steps(spec))
    if kind == "PipelineRun":
        return list(_pipeline_steps(spec.get("pipelineSpec") or {}))
    pod = pod_spec_of(obj)
    if pod is None:
        return []
    return [Container(f"{section[:-1]} {c.get('name')}", c.get("image"), c.get("env") or [], c.get("resources") or {},
                      c.get("securityContext") or {}, c.get("ports") or [])
            for section in ("initContainers", "containers") for c in pod.get(section) or []]


# ---------------------------------------------------------------- admission checks (each yields messages)

def check_sandbox(obj: Object) -> Iterator[str]:
    kind = obj.get("kind")
    if kind in ("MiniProgramApp", "CloudFunction", "PipelineRun"):
        sandbox = _spec(obj).get("sandbox") or {}
        rc = sandbox.get("runtimeClassName", "kata")
        if rc in UNSANDBOXED or sandbox.get("allowUnsandboxed"):
            what = "task pods run" if kind == "PipelineRun" else "pods run"
            yield (f"{what} without a sandbox (sandbox.runtimeClassName {rc!r}, allowUnsandboxed "
                   f"{bool(sandbox.get('allowUnsandboxed'))}): a sandbox RuntimeClass such as kata is required")
    pod = pod_spec_of(obj)
    if pod is not None and (pod.get("runtimeClassName") or "") in UNSANDBOXED:
        yield "the pod names no sandbox RuntimeClass (spec.runtimeClassName): a sandbox such as kata is required"


def _registry_path(image: str) -> str:
    """registry/path of a reference, with Docker Hub's implicit registry and library/ spelled out."""
    name = image.split("@")[0]
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name = name[:colon]
    first, _, rest = name.partition("/")
    if not rest:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def _tag(image: str) -> str | None:
    name = image.split("@")[0]
    colon = name.rfind(":")
    return name[colon + 1:] if colon > name.rfind("/") else None


def check_images(obj: Object, rule: Any) -> Iterator[str]:
    for c in containers_of(obj):
        if not c.image:
            continue
        at = f" ({c.where})" if c.where != "spec" else ""
        pinned = "@" in c.image
        if rule.allowed_registries:
            path = _registry_path(c.image)
            if not any(path == r.rstrip("/") or path.startswith(r.rstrip("/") + "/") for r in rule.allowed_registries):
                yield (f"image {c.image}{at} is not from an allowed registry "
                       f"({', '.join(rule.allowed_registries)})")
        if rule.forbid_latest and not pinned and _tag(c.image) in (None, "latest"):
            yield f"image {c.image}{at} uses the latest tag (name a version or pin a digest)"
        if rule.require_digest and not pinned:
            yield f"image {c.image}{at} is not pinned by digest (name@sha256:<64 hex digits>)"


def check_privileged(obj: Object) -> Iterator[str]:
    pod = pod_spec_of(obj)
    if pod is None:
        return
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            yield f"spec.{field} is true: no host namespaces"
    for vol in pod.get("volumes") or []:
        if "hostPath" in vol:
            yield f"volume {vol.get('name')} is a hostPath: no host filesystem access"
    for c in containers_of(obj):
        sc = c.security or {}
        if sc.get("privileged"):
            yield f"{c.where} is privileged"
        if (sc.get("capabilities") or {}).get("add"):
            yield f"{c.where} adds capabilities {', '.join((sc.get('capabilities') or {}).get('add'))}"
        for port in c.ports or []:
            if port.get("hostPort"):
                yield f"{c.where} uses hostPort {port.get('hostPort')}"


def check_resources(obj: Object, rule: Any) -> Iterator[str]:
    for c in containers_of(obj):
        if c.resources is None:
            continue
        missing = [f"requests.{r}" for r in ("cpu", "memory") if r not in (c.resources.get("requests") or {})]
        if rule.require_limits:
            missing += [f"limits.{r}" for r in ("cpu", "memory") if r not in (c.resources.get("limits") or {})]
        if missing:
            yield f"{c.where} sets no {', '.join(missing)}"


def check_pod_security(obj: Object, rule: Any) -> Iterator[str]:
    """Pod Security Standards, the parts that matter here (the privileged/host checks are `check_privileged`)."""
    pod = pod_spec_of(obj)
    if pod is None or rule.level != "restricted":
        return
    psc = pod.get("securityContext") or {}
    for c in containers_of(obj):
        sc = c.security or {}
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            yield f"{c.where} must set runAsNonRoot: true (Pod Security restricted)"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{c.where} must set allowPrivilegeEscalation: false (Pod Security restricted)"
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            yield f"{c.where} must drop ALL capabilities (Pod Security restricted)"
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"{c.where} must set seccompProfile RuntimeDefault or Localhost (Pod Security restricted)"


_CREDENTIAL_VALUES = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),  # GitHub tokens
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"),  # JWT
    re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),  # URL with a password (DSN)
)


def check_secret_env(obj: Object, rule: Any) -> Iterator[str]:
    patterns = [p.upper() for p in rule.name_patterns]
    for c in containers_of(obj):
        at = f" ({c.where})" if c.where != "spec" else ""
        for env in c.env:
            value = env.get("value")
            if not value:
                continue
            name = str(env.get("name", ""))
            if any(p in name.upper() for p in patterns):
                yield (f"env {name}{at} passes a secret as a plain value: use valueFrom.secretKeyRef")
            elif rule.detect_values and any(r.search(value) for r in _CREDENTIAL_VALUES):
                yield f"env {name}{at} holds what looks like a credential: use valueFrom.secretKeyRef"


# ---------------------------------------------------------------- ops risk (app image rollouts)

def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def image_change(obj: Object, old: Object | None) -> tuple[str, str] | None:
    """(old image, new image) when an update of a MiniProgramApp rolls out a new image."""
    if obj.get("kind") != "MiniProgramApp" or not old:
        return None
    before, after = _spec(old).get("image"), _spec(obj).get("image")
    return (before, after) if before and after and before != after else None


def active_events(app: Object, now: datetime) -> list[Object]:
    """The app's declared promotion events (spec.scaling.events) running at `now`."""
    out = []
    for event in (_spec(app).get("scaling") or {}).get("events") or []:
        start, end = _parse_time(event.get("start")), _parse_time(event.get("end"))
        if start and end and start <= now < end:
            out.append(event)
    return out


def check_freeze(policy: RiskPolicy, obj: Object, old: Object | None, now: datetime) -> Iterator[str]:
    change = image_change(obj, old)
    if change is None:
        return
    name = (obj.get("metadata") or {}).get("name", "")
    rollout = f"image rollout {change[0]} -> {change[1]}"
    for w in policy.spec.ops_risk.freeze_windows:
        if w.start <= now < w.end and (not w.apps or name in w.apps):
            why = f" ({w.reason})" if w.reason else ""
            yield f"{rollout} refused: change freeze {w.name}{why} until {w.end.isoformat()}"
    if policy.spec.ops_risk.freeze_during_events:
        seen = {e.get("name") for e in active_events(old or {}, now)}
        for event in active_events(old or {}, now) + [e for e in active_events(obj, now) if e.get("name") not in seen]:
            yield f"{rollout} refused: promotion event {event.get('name')} runs until {event.get('end')}"


def check_rollout(policy: RiskPolicy, obj: Object, old: Object | None) -> Iterator[str]:
    change = image_change(obj, old)
    if change is None or not policy.spec.ops_risk.rollout.one_at_a_time:
        return
    for cond in ((old or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("status") == "True":
            yield (f"image rollout {change[0]} -> {change[1]} refused: the previous rollout is still in progress "
                   f"({cond.get('reason')}: {cond.get('message', '')[:200]})")


# ---------------------------------------------------------------- exceptions, modes, evaluation

def exempt(exc: RiskException, rule: str, obj: Object) -> bool:
    if exc.rules and not any(r == rule or r == rule.partition(".")[0] for r in exc.rules):
        return False
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return bool((exc.namespaces and meta.get("namespace") in exc.namespaces)
                or (exc.names and meta.get("name") in exc.names)
                or (exc.selector is not None and all(labels.get(k) == v
                                                     for k, v in exc.selector.match_labels.items())))


def exemption(policy: RiskPolicy, rule: str, obj: Object) -> str | None:
    """Name of the exception that exempts `obj` from `rule`, or None."""
    return next((e.name for e in policy.spec.exceptions if exempt(e, rule, obj)), None)


def _mode(group_mode: str, switch: RuleSwitch) -> str:
    return switch.mode or group_mode


def _checks(policy: RiskPolicy, obj: Object, old: Object | None, now: datetime) -> Iterator[tuple[str, str, Any]]:
    """(rule id, mode, messages) of every enabled rule that applies to the object's kind."""
    spec, kind = policy.spec, obj.get("kind")
    adm, ops = spec.admission, spec.ops_risk
    if adm.enabled and (kind in MPCLOUD_KINDS or (adm.workloads and kind in WORKLOAD_KINDS)):
        table = (("sandbox", adm.sandbox, lambda: check_sandbox(obj)),
                 ("images", adm.images, lambda: check_images(obj, adm.images)),
                 ("privileged", adm.privileged, lambda: check_privileged(obj)),
                 ("resources", adm.resources, lambda: check_resources(obj, adm.resources)),
                 ("podSecurity", adm.pod_security, lambda: check_pod_security(obj, adm.pod_security)),
                 ("secretEnv", adm.secret_env, lambda: check_secret_env(obj, adm.secret_env)))
        for name, switch, run in table:
            if switch.enabled:
                yield f"admission.{name}", _mode(adm.mode, switch), run
    if ops.enabled and kind == "MiniProgramApp":
        if ops.freeze.enabled:
            yield "opsRisk.freeze", _mode(ops.mode, ops.freeze), lambda: check_freeze(policy, obj, old, now)
        if ops.rollout.enabled:
            yield "opsRisk.rollout", _mode(ops.mode, ops.rollout), lambda: check_rollout(policy, obj, old)


def evaluate(policy: RiskPolicy, obj: Object, old: Object | None, now: datetime,
             modes: tuple[str, ...] = ("Audit", "Enforce")) -> list[Finding]:
    """Every finding of `policy` on `obj` (an admission request's object; `old` on UPDATE), for rules in `modes`."""
    if not policy.spec.enabled:
        return []
    meta = obj.get("metadata") or {}
    ref = f"{policy.metadata.namespace}/{policy.metadata.name}"
    out = []
    for rule, mode, run in _checks(policy, obj, old, now):
        if mode not in modes or exemption(policy, rule, obj):
            continue
        for message in run():
            out.append(Finding(rule=rule, message=message, result="fail" if mode == "Enforce" else "warn",
                               policy=ref, kind=obj.get("kind", ""), api_version=obj.get("apiVersion", ""),
                               namespace=meta.get("namespace", ""), name=meta.get("name", "")))
    return out


def applicable(policies: list[RiskPolicy], namespace: str, operator_namespace: str) -> list[RiskPolicy]:
    """The policies that govern objects of `namespace`: its own, plus cluster defaults of the operator's namespace."""
    return [p for p in policies if p.metadata.namespace == namespace
            or (p.spec.cluster_default and p.metadata.namespace == operator_namespace)]


def enforces(policy: RiskPolicy) -> bool:
    """Whether any admission-time rule of the policy is in Enforce mode (its namespace then fails closed)."""
    spec = policy.spec
    if not spec.enabled:
        return False
    adm, ops = spec.admission, spec.ops_risk
    admission = adm.enabled and any(s.enabled and _mode(adm.mode, s) == "Enforce" for s in (
        adm.sandbox, adm.images, adm.privileged, adm.resources, adm.pod_security, adm.secret_env))
    opsrisk = ops.enabled and any(s.enabled and _mode(ops.mode, s) == "Enforce" for s in (ops.freeze, ops.rollout))
    return admission or opsrisk
