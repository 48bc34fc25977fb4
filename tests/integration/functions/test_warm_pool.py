"""The warm pool end to end on the real node: a function at zero answers its first request from a specialised
generic pod, status.poolStarts counts it, the function's own pod takes over and the pool pod is retired (and
replaced in the pool by its ReplicaSet).

The session operator and gateway share the dev environment's pool key (devenv/functions.py), so the pool
manager runs in the session operator; the test namespace opted in to the Secret writes (the `functions`
fixture's mpcloud-operator-bindings RoleBinding), where the pool's token Secret goes.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.integration.conftest import wait_until
from tests.integration.functions.test_cloudfunction import PY_ECHO, function, functions  # noqa: F401 - fixture

pytestmark = pytest.mark.integration
POOL = "cf-pool-python311-none"


def _metric(url: str, name: str, labels: dict[str, str]) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in requests.get(f"{url}/_/metrics", timeout=5).text.splitlines():
        key, _, value = line.rpartition(" ")
        metric, _, rest = key.partition("{")
        if metric == name and ",".join(sorted(rest.rstrip("}").split(","))) == want:
            return float(value)
    return 0.0


def test_a_function_at_zero_answers_from_a_specialised_pool_pod_which_is_retired_later(functions):  # noqa: F811
    ns, core = functions.ns, functions.core
    # fixed keep-alive (deterministic: to zero right after the deploy, then 5 test minutes = 20 s warm after a call,
    # so the function's own pod is still there when the test looks) with the pool asked for explicitly
    functions.create(function("warm", {"index.py": PY_ECHO},
                              scaling={"keepAlive": {"policy": "fixed", "fixedMinutes": 5}, "warmPool": {"enabled": True}}))
    functions.wait_serving("warm")
    functions.wait_reason("warm", "ScaledToZero", timeout=60)
    wait_until(lambda: not core.list_namespaced_pod(ns, label_selector="mpcloud.io/function=warm").items, 60,
               what="no instance of the function left")
    apps = __import__("kubernetes").client.AppsV1Api(functions.core.api_client)
    wait_until(lambda: (apps.read_namespaced_deployment(POOL, ns).status.ready_replicas or 0) >= 1, 120, interval=0.5,
               what="a ready pool pod")
    (pool_pod,) = [p for p in core.list_namespaced_pod(ns, label_selector=f"mpcloud.io/pool={POOL}").items
                   if p.metadata.deletion_timestamp is None][:1]
    spec = pool_pod.spec
    assert spec.automount_service_account_token is False and spec.node_selector == {"mpcloud.io/node": "real"}

    started = time.monotonic()
    response = functions.call("warm", {"from": "pool"})
    seconds = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json() == {"echo": {"from": "pool"}, "version": 1}
    print(f"cold start through a warm pool pod: {seconds * 1000:.0f} ms")
    gw = functions.gateway
    assert _metric(gw, "mpcloud_function_cold_start_seconds_count", {"namespace": ns, "function": "warm", "start": "pool"}) == 1
    assert _metric(gw, "mpcloud_function_cold_start_seconds_count", {"namespace": ns, "function": "warm", "start": "pod"}) == 0

    claimed = wait_until(lambda: (p := core.read_namespaced_pod(pool_pod.metadata.name, ns)).metadata.labels.get(
        "mpcloud.io/function") and p, 10, what="the specialised pod to join the function's Service")
    assert claimed.metadata.labels["mpcloud.io/claimed-for"] == "warm" and "mpcloud.io/pool" not in claimed.metadata.labels
    assert claimed.metadata.owner_references[0].kind == "CloudFunction"
    # The scale-up ran meanwhile: once the function's own pod is ready the pool pod is retired ...
    def retired() -> bool:
        pods = core.list_namespaced_pod(ns, label_selector="mpcloud.io/claimed-from").items
        return all(p.metadata.deletion_timestamp is not None for p in pods)
    wait_until(retired, 60, interval=0.5, what="the claimed pool pod to be retired")
    own = [p for p in core.list_namespaced_pod(ns, label_selector="mpcloud.io/function=warm").items
           if "mpcloud.io/claimed-from" not in (p.metadata.labels or {}) and p.metadata.deletion_timestamp is None]
    assert own, "the function's own pod serves now"
    st = wait_until(lambda: (functions.get("warm").get("status") or {}).get("poolStarts") and
                    functions.get("warm")["status"], 30, what="status.poolStarts")
    assert st["poolStarts"] == 1 and st["coldStarts"] >= 1
    # ... and the pool has a ready replacement for the next cold start.
    wait_until(lambda: (apps.read_namespaced_deployment(POOL, ns).status.ready_replicas or 0) >= 1, 60, interval=0.5,
               what="the pool's replacement pod")
    assert functions.call("warm", {"again": 1}).json()["echo"] == {"again": 1}
