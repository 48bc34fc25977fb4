"""Workload hardening shared by every kind that runs pods: pure functions from spec parts to pod-spec fragments.

Every pod mpcloud creates meets Pod Security "restricted" the same way: non-root with the RuntimeDefault seccomp
profile, no privilege escalation, no capabilities, a read-only root filesystem with a size-limited /tmp, no API
token, and the sandbox RuntimeClass unless the spec explicitly opts out. Kinds compose these fragments in their
own builders (`miniprogramapp/resources.py`), so a hardening change lands once for all of them.
"""

from __future__ import annotations

from typing import Any

from mpcloud_operator.api.parts import Bindings, EnvFromSource, EnvVar, Probe, Resources, RunAs, Sandbox
from mpcloud_operator.api.schema import to_json

TMP_VOLUME = "tmp"
TMP_SIZE_LIMIT = "256Mi"
# Each binding's Secret keys are injected as environment variables with this prefix (Bindings' docstrings).
BINDING_PREFIXES = {"database": "DATABASE_", "storage": "STORAGE_"}
_RUNTIME_DEFAULT_SECCOMP = {"type": "RuntimeDefault"}


def restricted_pod_security_context(run_as: RunAs) -> dict[str, Any]:
    """Pod-level securityContext of Pod Security "restricted", with an explicit non-root user and group: the
    image's USER is not trusted, and fsGroup makes the pod's volumes writable by that group."""
    return {"runAsNonRoot": True, "runAsUser": run_as.user, "runAsGroup": run_as.group, "fsGroup": run_as.group,
            "seccompProfile": dict(_RUNTIME_DEFAULT_SECCOMP)}


def restricted_container_security_context() -> dict[str, Any]:
    """Container-level securityContext of Pod Security "restricted", plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": dict(_RUNTIME_DEFAULT_SECCOMP),
    }


def tmp_volume() -> dict[str, Any]:
    """The writable /tmp a read-only root filesystem needs, bounded so a pod cannot fill the node's disk."""
    return {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}


def tmp_volume_mount() -> dict[str, Any]:
    return {"name": TMP_VOLUME, "mountPath": "/tmp"}


def restricted_pod_spec(service_account: str, containers: list[dict[str, Any]], sandbox: Sandbox,
                        run_as: RunAs) -> dict[str, Any]:
    """A pod spec around hardened containers: own ServiceAccount without a token, no Service env vars, /tmp,
    a non-root user, and the sandbox RuntimeClass unless the spec opted out."""
    pod: dict[str, Any] = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # thousands of Services would otherwise become env vars
        "securityContext": restricted_pod_security_context(run_as),
        "containers": containers,
        "volumes": [tmp_volume()],
    }
    if not sandbox.unsandboxed:
        pod["runtimeClassName"] = sandbox.runtime_class_name
    return pod


def container_resources(resources: Resources) -> dict[str, Any]:
    """requests and limits as strings (the API server's canonical form for quantities)."""
    return {
        "requests": {"cpu": str(resources.requests.cpu), "memory": str(resources.requests.memory)},
        "limits": {"cpu": str(resources.limits.cpu), "memory": str(resources.limits.memory)},
    }


def env(variables: list[EnvVar]) -> list[dict[str, Any]]:
    """A container's `env`."""
    return [_drop_false_optional(to_json(v)) for v in variables]


def env_from(sources: list[EnvFromSource], bindings: Bindings | None = None,
             provisioned: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A container's `envFrom`: the spec's sources, then each bound Secret under its prefix — the spec's own
    Secret, or for a binding the operator provisions, the Secret it writes (`provisioned`: binding -> name)."""
    out = [_drop_false_optional(to_json(s)) for s in sources]
    if bindings:
        for kind, prefix in BINDING_PREFIXES.items():
            binding = getattr(bindings, kind)
            if binding is None:
                continue
            ref = to_json(binding.secret_ref) if binding.secret_ref else {"name": (provisioned or {})[kind]}
            out.append(_drop_false_optional({"secretRef": ref, "prefix": prefix}))
    return out


def _drop_false_optional(obj: Any) -> Any:
    """`optional: false` is the API default: leave it out so the object reads like a hand-written one."""
    if isinstance(obj, dict):
        return {k: _drop_false_optional(v) for k, v in obj.items() if not (k == "optional" and v is False)}
    return obj


def probe(check: Probe, default_port: int | str) -> dict[str, Any]:
    """A container probe; without httpGet or tcpSocket it is a TCP check of `default_port`."""
    out: dict[str, Any]
    if check.http_get is not None:
        out = {"httpGet": {"path": check.http_get.path, "port": check.http_get.port or default_port,
                           "scheme": "HTTP"}}
    else:
        port = check.tcp_socket.port if check.tcp_socket is not None else None
        out = {"tcpSocket": {"port": port or default_port}}
    out.update(initialDelaySeconds=check.initial_delay_seconds, periodSeconds=check.period_seconds,
               timeoutSeconds=check.timeout_seconds, failureThreshold=check.failure_threshold)
    return out
