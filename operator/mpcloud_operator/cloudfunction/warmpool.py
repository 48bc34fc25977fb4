"""The warm pool: generic runtime pods ("stem cells") a cold start is served from, sized by the keep-alive forecast.

Per namespace, runtime and sandbox (a pool pod must be what the function's own pod would be) the operator
keeps, unowned (a pool serves every function of its kind in the namespace):

- Deployment `cf-pool-<runtime>-<sandbox>`: `host --generic` pods with the functions' hardened pod spec (the same
  builders: restricted security context, no token, read-only root, sandbox RuntimeClass or the unsandboxed
  node pool), pod labels `mpcloud.io/pool=<pool>`, `mpcloud.io/runtime`, `mpcloud.io/sandbox`;
- Secret `<pool>-token`: the pool's specialise token, HMAC(pool key, "<namespace>/<pool>") — the gateway derives
  the same value from the same key, so it needs no Secret read anywhere;
- NetworkPolicy `<pool>`: only the gateway reaches pool pods, claimed ones included (it selects the runtime and
  sandbox labels a claim keeps); ServiceAccount `cf-pool` without a token.

The gateway claims a ready pool pod by relabelling it (a merge patch with a resourceVersion precondition: two
gateways never both win) — out of the pool's selector, so its ReplicaSet makes a replacement at once — then
specialises it, and only then labels it `mpcloud.io/function=<name>` (the function's Service lists it from then
on: a generic pod is never an endpoint of a function). The
function's own pod starts meanwhile (the request also counts as waiting, so the scaler scales from zero as
without a pool) and the claimed pod is deleted by the gateway once the function has an instance of its own:
it is *retired*, not adopted, because it runs with the pool's resources and identity, outside the function's
Deployment (its rollouts, its replica count, its hash in status) — keeping it would make every later
guarantee about "the function's pods" carry an exception.

Size (`pool_size`): the sum over the functions that want the pool and have no instance now of the chance that
each is called within the next `warm_pool_horizon_minutes` — read off the mpcloud keep-alive policy's own
per-minute hazard of the next call (the forecast the scaler pre-warms with); functions under the fixed or hybrid
baselines count `NO_FORECAST` each. Rounded up, within [warm_pool_min, warm_pool_max]; 0 when no function
wants one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from mpcloud_operator.api.parts import Resources, Sandbox
from mpcloud_operator.cloudfunction.model import CloudFunction
from mpcloud_operator.cloudfunction.resources import (CONTAINER, GATEWAY_NAMESPACE, GATEWAY_POD_LABELS,
                                                      MANAGED_BY_LABEL, MANAGER, PORT, RUN_AS, confine)
from mpcloud_operator.reconcile import workload

log = logging.getLogger("mpcloud.cloudfunction.warmpool")

POOL_LABEL = "mpcloud.io/pool"  # the pool Deployment's selector: removed when a pod is claimed
RUNTIME_LABEL = "mpcloud.io/runtime"
SANDBOX_LABEL = "mpcloud.io/sandbox"
CLAIMED_LABEL = "mpcloud.io/claimed-from"  # on a claimed pod: the pool it came from
CLAIMED_FOR_LABEL = "mpcloud.io/claimed-for"  # on a claimed pod: the function (before it joins its Service)
CLAIMED_BY_ANNOTATION = "mpcloud.io/claimed-by"
CLAIMED_AT_ANNOTATION = "mpcloud.io/claimed-at"
POOL_SERVICE_ACCOUNT = "cf-pool"
TOKEN_DIR = "/var/run/mpcloud/pool"
CODE_DIR = "/code"
NO_FORECAST = 0.5  # a function whose policy has no hazard (fixed, hybrid), or that was never called
POOL_RESOURCES = Resources()


@dataclass(frozen=True)
class PoolKey:
    namespace: str
    runtime: str
    sandbox: str  # the RuntimeClass, or "none" (unsandboxed opt-out)

    @property
    def name(self) -> str:
        return pool_name(self.runtime, self.sandbox)


def sandbox_key(sandbox: Sandbox) -> str:
    return "none" if sandbox.unsandboxed else sandbox.runtime_class_name


def pool_name(runtime: str, sandbox: str) -> str:
    slug = re.sub(r"[^a-z0-9-]", "", f"{runtime}-{sandbox}".lower())
    return f"cf-pool-{slug}"[:52]  # room for the ReplicaSet's and pod's suffixes


def pool_key(fn: CloudFunction) -> PoolKey:
    return PoolKey(fn.metadata.namespace or "", fn.spec.runtime, sandbox_key(fn.spec.sandbox))


def ineligible(fn: CloudFunction) -> str | None:
    """Why a pool pod cannot be this function (None: it can). A pool pod holds no Secret of the function's and
    cannot read its ConfigMaps: bindings, envFrom and valueFrom stay with the function's own pods."""
    spec = fn.spec
    if spec.bindings.database is not None or spec.bindings.storage is not None:
        return "it has bindings"
    if spec.env_from or any(e.value_from is not None for e in spec.env):
        return "it takes env from Secrets or ConfigMaps"
    if spec.source.config_map_ref is not None:
        return "its source is a ConfigMap"
    return None


def wants_pool(fn: CloudFunction) -> bool:
    enabled = fn.spec.scaling.warm_pool.enabled
    if enabled is None:
        enabled = fn.spec.scaling.keep_alive.policy == "mpcloud"
    return enabled and ineligible(fn) is None


def pool_token(key: str, namespace: str, name: str) -> str:
    return hmac.new(key.encode(), f"{namespace}/{name}".encode(), hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ sizing (pure)


def call_probability(ratios: Iterable[float]) -> float:
    """P(a call within the minutes whose hazard ratios h/(1-h) are given) = 1 - prod(1 - h)."""
    none = 1.0
    for r in ratios:
        none *= 1.0 / (1.0 + max(0.0, float(r)))
    return 1.0 - none


def pool_size(expected: Iterable[float], minimum: int, maximum: int) -> int:
    """Pool pods for the expected cold starts of the functions that want the pool (0 when none does)."""
    values = list(expected)
    if not values:
        return 0
    return max(minimum, min(maximum, math.ceil(sum(values) - 1e-9)))


def expected_cold_start(policy: Any, slot: int | None, minute: int, horizon: int) -> float:
    """The chance the function at `slot` of a keep-alive policy is called in the next `horizon` minutes: the
    mpcloud policy's per-minute hazard ratios (`ratio`, `lut`, `last`), NO_FORECAST for other policies and for
    a function never called (its history starts with its first call)."""
    from predictors.keepalive.policies import NEVER

    ratio = getattr(policy, "ratio", None)
    if policy is None or slot is None or ratio is None or int(policy.last[slot]) == NEVER:
        return NO_FORECAST
    lut = policy.lut
    elapsed = minute - int(policy.last[slot])
    cols = [lut[min(max(elapsed + k, 0), len(lut) - 1)] for k in range(horizon)]
    return call_probability(ratio[slot, c] for c in cols)


# ------------------------------------------------------------------ objects (pure)


def _labels(key: PoolKey) -> dict[str, str]:
    return {POOL_LABEL: key.name, MANAGED_BY_LABEL: MANAGER}


def service_account(key: PoolKey) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": POOL_SERVICE_ACCOUNT, "namespace": key.namespace, "labels": {MANAGED_BY_LABEL: MANAGER}},
            "automountServiceAccountToken": False}


def token_secret(key: PoolKey, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"{key.name}-token", "namespace": key.namespace, "labels": _labels(key)},
            "stringData": {"token": token}}


def network_policy(key: PoolKey) -> dict[str, Any]:
    gateway = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": GATEWAY_NAMESPACE}},
               "podSelector": {"matchLabels": dict(GATEWAY_POD_LABELS)}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": key.name, "namespace": key.namespace, "labels": _labels(key)},
            "spec": {"podSelector": {"matchLabels": {MANAGED_BY_LABEL: MANAGER, RUNTIME_LABEL: key.runtime,
                                                     SANDBOX_LABEL: key.sandbox}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [gateway], "ports": [{"port": PORT, "protocol": "TCP"}]}]}}


def deployment(key: PoolKey, replicas: int, sandbox: Sandbox, image: str, pull_policy: str,
               unsandboxed_node_pool: str | None) -> dict[str, Any]:
    container = {
        "name": CONTAINER, "image": image, "imagePullPolicy": pull_policy,
        "command": ["python3", "-m", "mpcloud_operator.functions.host", "--generic", "--runtime", key.runtime,
                    "--code-dir", CODE_DIR, "--token-file", f"{TOKEN_DIR}/token", "--port", str(PORT)],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "resources": workload.container_resources(POOL_RESOURCES),
        "securityContext": workload.restricted_container_security_context(),
        "volumeMounts": [{"name": "code", "mountPath": CODE_DIR}, {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
                         workload.tmp_volume_mount()],
        # As a function's: ready once serving; a specialised pod that failed to load turns unready.
        "readinessProbe": {"httpGet": {"path": "/_/health", "port": "http"}, "periodSeconds": 1,
                           "timeoutSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 10, "periodSeconds": 10},
    }
    pod = workload.restricted_pod_spec(POOL_SERVICE_ACCOUNT, [container], sandbox, RUN_AS)
    pod["volumes"] += [{"name": "code", "emptyDir": {"sizeLimit": "256Mi"}},
                       {"name": "token", "secret": {"secretName": f"{key.name}-token", "defaultMode": 0o440}}]
    confine(pod, sandbox, unsandboxed_node_pool)
    pod["terminationGracePeriodSeconds"] = 30
    pod_labels = {**_labels(key), RUNTIME_LABEL: key.runtime, SANDBOX_LABEL: key.sandbox}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": key.name, "namespace": key.namespace, "labels": _labels(key)},
            "spec": {"replicas": replicas, "revisionHistoryLimit": 2, "selector": {"matchLabels": {POOL_LABEL: key.name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": pod_labels}, "spec": pod}}}


# ------------------------------------------------------------------ the manager (run by the function scaler)


class WarmPools:
    """Applies each pool's objects and size; called from the function scaler's tick (leader only)."""

    def __init__(self, runtime: Any, every_seconds: float = 2.0) -> None:
        self.runtime, self.every_seconds = runtime, every_seconds
        self.applied: dict[PoolKey, tuple[int, str]] = {}  # what was last applied: (size, objects' digest)
        self.sizes: dict[PoolKey, int] = {}
        self.failed: dict[PoolKey, str] = {}
        self.sandboxes: dict[PoolKey, Sandbox] = {}
        self.leftover: set[tuple[str, str]] | None = None  # pools found at start-up with pods: (namespace, name)
        self._last = -math.inf

    @property
    def key(self) -> str | None:
        return self.runtime.config.pool_key

    def desired(self, functions: list[CloudFunction], at_zero: Any, expected: Any) -> dict[PoolKey, tuple[int, Sandbox]]:
        """(size, sandbox) per pool: `at_zero(fn)` says a function has no instance now, `expected(fn)` its chance
        of a call within the horizon."""
        config = self.runtime.config
        wanting: dict[PoolKey, list[float]] = {}
        sandboxes: dict[PoolKey, Sandbox] = {}
        for fn in functions:
            if not wants_pool(fn):
                continue
            key = pool_key(fn)
            sandboxes.setdefault(key, fn.spec.sandbox)
            wanting.setdefault(key, []).append(expected(fn) if at_zero(fn) else 0.0)
        out = {k: (pool_size(v, config.warm_pool_min, config.warm_pool_max), sandboxes[k]) for k, v in wanting.items()}
        for k in self.applied:  # a pool nobody wants any more goes to zero (kept: recreating it costs a start-up)
            out.setdefault(k, (0, self.sandboxes[k]))
        return out

    def tick(self, now: float, functions: list[CloudFunction], at_zero: Any, expected: Any) -> None:
        if self.key is None or now - self._last < self.every_seconds:
            return
        self._last = now
        desired = self.desired(functions, at_zero, expected)
        self._scale_down_leftovers({(k.namespace, k.name) for k in desired})
        for key, (size, sandbox) in desired.items():
            self.sizes[key] = size
            try:
                self._apply(key, size, sandbox)
            except Exception as exc:  # noqa: BLE001 - one namespace's refusal (no Secret write) must not stop others
                message = str(exc)[:300]
                if self.failed.get(key) != message:
                    log.warning("warm pool %s/%s: %s", key.namespace, key.name, message)
                self.failed[key] = message

    def _scale_down_leftovers(self, wanted: set[tuple[str, str]]) -> None:
        """A previous leader's pools that nobody wants now go to zero (this one never applied them, so `desired`
        does not know them)."""
        if self.leftover is None:
            try:
                listed = self.runtime.kube.list("Deployment", None, query=[("labelSelector", POOL_LABEL)])
            except Exception as exc:  # noqa: BLE001 - try again next tick
                log.warning("listing warm pools failed: %s", exc)
                return
            self.leftover = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in listed.get("items") or []
                             if (d.get("spec") or {}).get("replicas")}
        from mpcloud_operator.config import POOL_FIELD_MANAGER

        for namespace, name in sorted(self.leftover - wanted):
            self.runtime.kube.apply_scale("Deployment", namespace, name, 0, POOL_FIELD_MANAGER)
            log.info("warm pool %s/%s: no function wants it, 0 pods", namespace, name)
        self.leftover = set()

    def _apply(self, key: PoolKey, size: int, sandbox: Sandbox) -> None:
        if size == 0 and key not in self.applied:
            return  # never create a pool just to hold nothing
        config = self.runtime.config
        assert self.key is not None
        objects = [service_account(key), token_secret(key, pool_token(self.key, key.namespace, key.name)),
                   network_policy(key),
                   deployment(key, size, sandbox, config.function_image, config.function_pull_policy,
                              config.unsandboxed_node_pool)]
        digest = hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()
        if self.applied.get(key, (None, None))[1] == digest:
            return
        from mpcloud_operator.config import POOL_FIELD_MANAGER

        for obj in objects:
            self.runtime.kube.apply(obj, manager=POOL_FIELD_MANAGER)
        log.info("warm pool %s/%s: %d pod(s)", key.namespace, key.name, size)
        self.applied[key] = (size, digest)
        self.sandboxes[key] = sandbox
        self.failed.pop(key, None)
