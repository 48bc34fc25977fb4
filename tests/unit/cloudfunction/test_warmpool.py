"""The warm pool's pure parts: who wants a pool, its size from the keep-alive forecast, its hardened objects."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from mpcloud_operator.cloudfunction import warmpool
from mpcloud_operator.cloudfunction.model import CloudFunction
from mpcloud_operator.config import OperatorConfig
from tests.fakes.kube import FakeClient

NS = "todo"
PY = "def main(event, context):\n    return 1\n"
UNSANDBOXED = {"runtimeClassName": "none", "allowUnsandboxed": True}


def fn(name: str = "f", runtime: str = "python3.11", **spec: Any) -> CloudFunction:
    return CloudFunction.from_body({
        "apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1},
        "spec": {"runtime": runtime, "source": {"inline": {"files": {"index.py": PY}}}, **spec}})


def test_default_on_for_the_mpcloud_policy_off_for_the_baselines_and_explicit_wins():
    assert warmpool.wants_pool(fn())
    assert not warmpool.wants_pool(fn(scaling={"keepAlive": {"policy": "fixed"}}))
    assert not warmpool.wants_pool(fn(scaling={"keepAlive": {"policy": "hybrid"}}))
    assert warmpool.wants_pool(fn(scaling={"keepAlive": {"policy": "fixed"}, "warmPool": {"enabled": True}}))
    assert not warmpool.wants_pool(fn(scaling={"warmPool": {"enabled": False}}))


@pytest.mark.parametrize("spec, why", [
    ({"bindings": {"storage": {"access": "read"}}}, "it has bindings"),
    ({"envFrom": [{"secretRef": {"name": "s"}}]}, "it takes env from Secrets or ConfigMaps"),
    ({"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
     "it takes env from Secrets or ConfigMaps"),
    ({"source": {"configMapRef": {"name": "code"}}}, "its source is a ConfigMap"),
])
def test_what_a_pool_pod_cannot_hold_keeps_the_function_out(spec, why):
    f = fn(**spec, scaling={"warmPool": {"enabled": True}})
    assert warmpool.ineligible(f) == why and not warmpool.wants_pool(f)
    assert warmpool.ineligible(fn(env=[{"name": "K", "value": "v"}])) is None


def test_pools_are_per_runtime_and_sandbox():
    assert warmpool.pool_key(fn(sandbox=UNSANDBOXED)).name == "cf-pool-python311-none"
    assert warmpool.pool_key(fn()).name == "cf-pool-python311-kata"
    assert warmpool.pool_key(fn(runtime="nodejs20", sandbox=UNSANDBOXED)).name == "cf-pool-nodejs20-none"


def test_size_is_the_expected_cold_starts_rounded_up_within_bounds_and_zero_without_takers():
    assert warmpool.pool_size([], 1, 5) == 0
    assert warmpool.pool_size([0.0], 1, 5) == 1  # someone wants a pool: at least the minimum
    assert warmpool.pool_size([0.5, 0.6, 0.7], 1, 5) == 2
    assert warmpool.pool_size([0.9] * 20, 1, 5) == 5
    assert warmpool.pool_size([1.0, 1.0], 0, 5) == 2  # no float dust makes it 3


def test_call_probability_compounds_the_per_minute_hazard():
    assert warmpool.call_probability([]) == 0.0
    assert warmpool.call_probability([1.0]) == pytest.approx(0.5)  # ratio h/(1-h) = 1: h = 0.5
    assert warmpool.call_probability([1.0, 1.0]) == pytest.approx(0.75)
    assert warmpool.call_probability([0.0, 0.0]) == 0.0


def test_expected_cold_start_reads_the_mpcloud_policys_hazard():
    from predictors.keepalive import make_policy

    policy = make_policy("mpcloud")
    policy.reset(2, np.ones(2))
    for t in range(0, 40):  # function 0: every 5 minutes; function 1: never called
        policy.observe(t, np.array([1.0 if t % 5 == 0 else 0.0, 0.0]))
    # Right after a call the next one is 5 minutes away; at 4 minutes it is due.
    soon = warmpool.expected_cold_start(policy, 0, 39, horizon=2)  # elapsed 4 and 5
    later = warmpool.expected_cold_start(policy, 0, 36, horizon=2)  # elapsed 1 and 2
    assert soon > 0.5 > later
    assert warmpool.expected_cold_start(policy, 1, 39, horizon=2) == warmpool.NO_FORECAST
    assert warmpool.expected_cold_start(make_policy("fixed-10"), 0, 39, horizon=2) == warmpool.NO_FORECAST


def test_the_pool_deployment_is_hardened_like_a_functions():
    key = warmpool.PoolKey(NS, "python3.11", "none")
    f = fn(sandbox=UNSANDBOXED)
    dep = warmpool.deployment(key, 2, f.spec.sandbox, "img:1", "IfNotPresent", "mpcloud.io/node=real")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["selector"] == {"matchLabels": {"mpcloud.io/pool": key.name}}
    assert container["command"][:5] == ["python3", "-m", "mpcloud_operator.functions.host", "--generic", "--runtime"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["nodeSelector"] == {"mpcloud.io/node": "real"} and "runtimeClassName" not in pod
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[warmpool.RUNTIME_LABEL] == "python3.11" and labels[warmpool.SANDBOX_LABEL] == "none"
    sandboxed = warmpool.deployment(warmpool.PoolKey(NS, "python3.11", "kata"), 1, fn().spec.sandbox, "img:1",
                                    "IfNotPresent", "mpcloud.io/node=real")["spec"]["template"]["spec"]
    assert sandboxed["runtimeClassName"] == "kata" and "nodeSelector" not in sandboxed


def test_token_is_per_pool_and_reproducible_from_the_key():
    a = warmpool.pool_token("k" * 32, NS, "cf-pool-python311-none")
    assert a == warmpool.pool_token("k" * 32, NS, "cf-pool-python311-none") and len(a) == 64
    assert a != warmpool.pool_token("k" * 32, "other", "cf-pool-python311-none")
    assert a != warmpool.pool_token("k" * 32, NS, "cf-pool-nodejs20-none")


def _pools(**config: Any) -> tuple[warmpool.WarmPools, FakeClient]:
    kube = FakeClient()
    runtime = SimpleNamespace(kube=kube, config=OperatorConfig(pool_key="p" * 32, function_image="img:1", **config))
    return warmpool.WarmPools(runtime, every_seconds=0), kube


def test_the_manager_applies_a_pool_for_functions_at_zero_and_scales_it_to_zero_when_nobody_wants_it():
    pools, kube = _pools(warm_pool_max=3)
    functions = [fn("a", sandbox=UNSANDBOXED), fn("b", sandbox=UNSANDBOXED),
                 fn("c", sandbox=UNSANDBOXED, scaling={"keepAlive": {"policy": "fixed"}})]
    pools.tick(1.0, functions, at_zero=lambda f: True, expected=lambda f: 0.9)
    dep = kube.get("Deployment", NS, "cf-pool-python311-none")
    assert dep["spec"]["replicas"] == 2  # a and b: 1.8 expected; c does not want the pool
    assert kube.get("Secret", NS, "cf-pool-python311-none-token") is not None
    assert kube.get("NetworkPolicy", NS, "cf-pool-python311-none") is not None
    writes = len(kube.writes())
    pools.tick(2.0, functions, at_zero=lambda f: True, expected=lambda f: 0.9)
    assert len(kube.writes()) == writes  # nothing changed: nothing written
    pools.tick(3.0, functions, at_zero=lambda f: False, expected=lambda f: 0.9)  # all have instances now
    assert kube.get("Deployment", NS, "cf-pool-python311-none")["spec"]["replicas"] == 1  # the minimum
    pools.tick(4.0, [functions[2]], at_zero=lambda f: True, expected=lambda f: 0.9)
    assert kube.get("Deployment", NS, "cf-pool-python311-none")["spec"]["replicas"] == 0


def test_no_pool_key_no_pools():
    kube = FakeClient()
    runtime = SimpleNamespace(kube=kube, config=OperatorConfig(function_image="img:1"))
    warmpool.WarmPools(runtime, every_seconds=0).tick(1.0, [fn()], lambda f: True, lambda f: 1.0)
    assert not kube.writes()


def test_a_previous_leaders_pool_that_nobody_wants_goes_to_zero():
    pools, kube = _pools()
    key = warmpool.PoolKey(NS, "nodejs20", "none")
    kube.put(warmpool.deployment(key, 3, fn(sandbox=UNSANDBOXED).spec.sandbox, "img:1", "IfNotPresent", None))
    pools.tick(1.0, [fn("a", sandbox=UNSANDBOXED)], at_zero=lambda f: True, expected=lambda f: 0.2)
    assert kube.get("Deployment", NS, "cf-pool-nodejs20-none")["spec"]["replicas"] == 0
    assert kube.get("Deployment", NS, "cf-pool-python311-none")["spec"]["replicas"] == 1
