"""The gateway's warm pool claims without a cluster: which pod, the claim patch, the pool target, the sweep."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from mpcloud_operator.cloudfunction.resources import source_hash
from mpcloud_operator.functions import poolclaim
from mpcloud_operator.functions.routes import route_of

POOL = "cf-pool-python311-none"
PY = "def main(event, context):\n    return 1\n"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def pod(name: str, ready: bool = True, ip: str | None = "10.0.0.5", pool: str | None = POOL, deleting: bool = False,
        **labels: str) -> dict:
    meta = {"name": name, "namespace": "ns", "resourceVersion": "42",
            "labels": {**({"mpcloud.io/pool": pool} if pool else {}), **labels}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-04T12:00:00Z"
    return {"metadata": meta,
            "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def function(status: dict | None = None, **spec) -> dict:
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction",
            "metadata": {"name": "f", "namespace": "ns", "uid": "uid-f"},
            "spec": {"runtime": "python3.11", "source": {"inline": {"files": {"index.py": PY}}},
                     "sandbox": {"runtimeClassName": "none", "allowUnsandboxed": True}, **spec},
            "status": status if status is not None else {"servingHash": source_hash({"index.py": PY})}}


def test_only_ready_live_addressed_pods_of_the_pool_are_claimed_in_a_per_gateway_order():
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d", ip=None), pod("e", deleting=True),
            pod("f", pool="cf-pool-nodejs20-none"), pod("g", pool=None)]
    one = [p["metadata"]["name"] for p in poolclaim.claim_order(pods, POOL, "gw-1")]
    assert sorted(one) == ["a", "b"]
    orders = {tuple(p["metadata"]["name"] for p in poolclaim.claim_order(pods, POOL, f"gw-{i}")) for i in range(20)}
    assert orders == {("a", "b"), ("b", "a")}  # gateways do not all try the same pod first


def test_the_claim_patch_moves_the_pod_from_the_pool_to_the_function_with_a_precondition():
    route = route_of(function())
    patch = poolclaim.claim_patch(pod("a"), route, "gw-1", NOW)["metadata"]
    assert patch["resourceVersion"] == "42"
    # not yet the function's label: a generic pod must not become an endpoint of its Service before specialising
    assert patch["labels"] == {"mpcloud.io/pool": None, "mpcloud.io/claimed-for": "f", "mpcloud.io/claimed-from": POOL}
    assert poolclaim.join_patch(route) == {"metadata": {"labels": {"mpcloud.io/function": "f", "mpcloud.io/app": "default"}}}
    assert patch["ownerReferences"][0]["uid"] == "uid-f"
    assert patch["annotations"]["mpcloud.io/claimed-at"] == "2026-12-04T12:00:00Z"


def test_a_route_has_a_pool_target_only_for_proven_code_of_a_function_that_wants_the_pool():
    target = route_of(function(env=[{"name": "K", "value": "v"}])).pool
    assert target is not None and target.pool == POOL and target.env == (("K", "v"),)
    assert json.loads(target.source) == {"files": {"index.py": PY}} and target.code_hash == source_hash({"index.py": PY})
    assert route_of(function(status={})).pool is None  # no instance loaded it yet
    assert route_of(function(status={"servingHash": "0" * 64})).pool is None  # the spec moved on: unproven code
    assert route_of(function(scaling={"warmPool": {"enabled": False}})).pool is None
    assert route_of(function(bindings={"storage": {"access": "read"}})).pool is None


def _claimed(name: str, age: float, ready: bool = True, ip: str = "10.0.0.5") -> dict:
    p = pod(name, ready=ready, ip=ip, pool=None, **{"mpcloud.io/claimed-for": "f", "mpcloud.io/claimed-from": POOL})
    at = datetime.fromtimestamp(NOW.timestamp() - age, timezone.utc)
    p["metadata"]["annotations"] = {"mpcloud.io/claimed-at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return p


def test_the_sweep_retires_claims_nobody_needs_and_never_a_busy_one():
    now = NOW.timestamp()
    pods = [_claimed("fresh", 5), _claimed("old", 700, ip="10.0.0.6"), _claimed("broken", 60, ready=False, ip="10.0.0.7")]
    decide = lambda own, busy=lambda a: False: {p for _, p, _ in poolclaim.sweep_decisions(pods, own, busy, now)}  # noqa: E731
    assert decide(lambda ns, f: []) == {"old", "broken"}
    assert decide(lambda ns, f: ["10.0.0.9:8080"]) == {"fresh", "old", "broken"}  # the function has its own pod
    assert decide(lambda ns, f: ["10.0.0.5:8080"]) == {"old", "broken"}  # only itself: keep serving
    assert decide(lambda ns, f: None) == {"fresh", "old", "broken"}  # the function is gone
    assert decide(lambda ns, f: None, busy=lambda a: a == "10.0.0.6:8080") == {"fresh", "broken"}
