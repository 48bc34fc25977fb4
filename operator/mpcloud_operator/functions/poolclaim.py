"""The gateway's half of the warm pool: claim a ready generic pod, specialise it, retire it later.

See `cloudfunction.warmpool` for the pool itself. A claim is one merge patch of the pod with its
resourceVersion as a precondition (a second gateway racing for the same pod gets 409 and tries another):

- labels: `mpcloud.io/pool` removed (the pool's ReplicaSet lets the pod go and starts a replacement),
  `mpcloud.io/claimed-from=<pool>` (what the sweep looks for), `mpcloud.io/claimed-for=<function>`;
- the CloudFunction as its owner (the pod goes when the function is deleted), the claiming gateway and time.

Then `POST /_/specialise` with the pool's token (HMAC of the pool key the operator shares), and only once that
worked `mpcloud.io/function` and `mpcloud.io/app` (`join_patch`): the function's Service lists the pod from then
on (other gateway replicas route to it too). Labelled earlier, a generic pod would be a ready endpoint of the
function before it has the code. A claimed pod that
fails to specialise, or whose function has an instance of its own, is deleted (retired): see the
module docstring of `cloudfunction.warmpool` for why it is not adopted. Any gateway's sweep also retires
claims left behind by a gateway that went away (`sweep_decisions`, pure).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import aiohttp

from mpcloud_operator.cloudfunction.warmpool import (CLAIMED_AT_ANNOTATION, CLAIMED_BY_ANNOTATION, CLAIMED_FOR_LABEL,
                                                     CLAIMED_LABEL, POOL_LABEL, pool_token)
from mpcloud_operator.functions.routes import FUNCTION_LABEL, FunctionRoute

log = logging.getLogger("mpcloud.functions.poolclaim")

APP_LABEL = "mpcloud.io/app"
CLAIM_ATTEMPTS = 3
SPECIALISE_TIMEOUT = 20.0  # an archive download included
MAX_CLAIM_SECONDS = 600.0  # a claimed pod no gateway retired (its function never got a pod of its own)


@dataclass(frozen=True)
class Claimed:
    namespace: str
    pod: str
    address: str  # host:port
    pool: str


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_address(pod: dict[str, Any]) -> str | None:
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    port = next((p.get("containerPort") for c in (pod.get("spec") or {}).get("containers") or []
                 for p in c.get("ports") or [] if p.get("name") == "http"), None)
    if not port:
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def claim_order(pods: list[dict[str, Any]], pool: str, gateway_id: str) -> list[dict[str, Any]]:
    """The pool's pods a claim may take, in the order to try them: ready, not terminating, with an address; in
    an order of their own per gateway (a hash of gateway and pod), so two gateways claiming at once mostly
    try different pods first instead of colliding on the oldest."""
    usable = [p for p in pods
              if ((p.get("metadata") or {}).get("labels") or {}).get(POOL_LABEL) == pool
              and not (p.get("metadata") or {}).get("deletionTimestamp") and _ready(p) and pod_address(p)]
    return sorted(usable, key=lambda p: hashlib.sha256(f"{gateway_id}/{p['metadata']['name']}".encode()).digest())


def claim_patch(pod: dict[str, Any], route: FunctionRoute, gateway_id: str, now: datetime) -> dict[str, Any]:
    """The merge patch that claims `pod` for `route`'s function (fails with 409 if the pod changed since read)."""
    assert route.pool is not None
    return {"metadata": {
        "resourceVersion": pod["metadata"]["resourceVersion"],
        "labels": {POOL_LABEL: None, CLAIMED_FOR_LABEL: route.name, CLAIMED_LABEL: route.pool.pool},
        "annotations": {CLAIMED_BY_ANNOTATION: gateway_id[:253], CLAIMED_AT_ANNOTATION: now.strftime("%Y-%m-%dT%H:%M:%SZ")},
        # Replaces the ReplicaSet's reference (the selector no longer matches it anyway).
        "ownerReferences": [{"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction", "name": route.name,
                             "uid": route.pool.uid}],
    }}


def join_patch(route: FunctionRoute) -> dict[str, Any]:
    """After specialisation: the labels that make the pod an endpoint of the function's Service."""
    assert route.pool is not None
    return {"metadata": {"labels": {FUNCTION_LABEL: route.name, APP_LABEL: route.pool.app}}}


def sweep_decisions(pods: list[dict[str, Any]], own_instances: Callable[[str, str], list[str] | None],
                    busy: Callable[[str], bool], now: float) -> list[tuple[str, str, str]]:
    """Claimed pods to retire, as (namespace, pod, why): the function has an instance of its own (`own_instances`
    gives them, None when the gateway no longer routes the function), is gone, the pod failed to specialise
    (not ready), or the claim is older than MAX_CLAIM_SECONDS. Never one with requests in flight here (`busy`)."""
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        function = labels.get(CLAIMED_FOR_LABEL)
        address = pod_address(pod)
        if not function or (address and busy(address)):
            continue
        try:
            claimed_at = datetime.strptime(annotations.get(CLAIMED_AT_ANNOTATION, ""), "%Y-%m-%dT%H:%M:%SZ") \
                .replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            claimed_at = 0.0
        own = own_instances(meta.get("namespace", ""), function)
        age = now - claimed_at
        if own is None:
            why = "its function is gone"
        elif [a for a in own if a != address]:
            why = "its function has an instance of its own"
        elif age > MAX_CLAIM_SECONDS:
            why = f"claimed {age:.0f} s ago"
        elif age > 30 and not _ready(pod):
            why = "it did not specialise"
        else:
            continue
        out.append((meta.get("namespace", ""), meta["name"], why))
    return out


class PoolClaimer:
    """Claims through the gateway's KubeClient (its calls run in a thread: the client is blocking)."""

    def __init__(self, kube: Any, pool_key: str, gateway_id: str, source: Any = None) -> None:
        self.kube, self.pool_key, self.gateway_id = kube, pool_key, gateway_id
        kube.paths.add("Pod", "v1", "pods")
        self.source = source  # a KubeRouteSource watching the pool pods (else: a LIST per claim)

    def candidates(self, namespace: str, pool: str) -> list[dict[str, Any]]:
        """The pool's pods: from the route source's watch once it listed them, else from the API server."""
        cache = getattr(self.source, "pool_pods", None)
        if cache is not None and self.source.pool_synced.is_set():
            return [p for (ns, _), p in list(cache.items()) if ns == namespace]
        return self.kube.list("Pod", namespace, query=[("labelSelector", f"{POOL_LABEL}={pool}")]).get("items") or []

    async def claim(self, route: FunctionRoute) -> Claimed | None:
        return await asyncio.get_running_loop().run_in_executor(None, self._claim, route)

    def _claim(self, route: FunctionRoute) -> Claimed | None:
        from kubernetes.client.exceptions import ApiException

        assert route.pool is not None
        pods = self.candidates(route.namespace, route.pool.pool)
        for pod in claim_order(pods, route.pool.pool, self.gateway_id)[:CLAIM_ATTEMPTS]:
            name = pod["metadata"]["name"]
            try:
                self.kube.request("PATCH", self.kube.paths.object("Pod", route.namespace, name),
                                  body=claim_patch(pod, route, self.gateway_id, datetime.now(timezone.utc)),
                                  content_type="application/merge-patch+json")
            except ApiException as exc:
                if exc.status in (409, 404):  # another gateway took it, or it is gone: the next one
                    continue
                raise
            address = pod_address(pod)
            assert address is not None
            return Claimed(route.namespace, name, address, route.pool.pool)
        return None

    async def specialise(self, session: aiohttp.ClientSession, claimed: Claimed, route: FunctionRoute) -> str | None:
        """None when the pod now serves the function, else why not."""
        from mpcloud_operator.functions.generic import specialise_body

        target = route.pool
        assert target is not None
        body = specialise_body(f"{route.namespace}/{route.name}", target.runtime, target.handler, target.code_hash,
                               json.loads(target.source), dict(target.env), route.timeout, route.concurrency)
        token = pool_token(self.pool_key, claimed.namespace, claimed.pool)
        try:
            async with session.post(f"http://{claimed.address}/_/specialise", json=body,
                                    headers={"Authorization": f"Bearer {token}"},
                                    timeout=aiohttp.ClientTimeout(total=SPECIALISE_TIMEOUT)) as resp:
                text = await resp.text()
                return None if resp.status == 200 else f"HTTP {resp.status}: {text[:300]}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"

    async def join(self, claimed: Claimed, route: FunctionRoute) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.kube.request("PATCH", self.kube.paths.object("Pod", claimed.namespace, claimed.pod),
                                            body=join_patch(route), content_type="application/merge-patch+json"))

    async def retire(self, namespace: str, pod: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.kube.delete, "Pod", namespace, pod)

    async def claimed_pods(self) -> list[dict[str, Any]]:
        listed = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.kube.list("Pod", None, query=[("labelSelector", CLAIMED_LABEL)]))
        return listed.get("items") or []
