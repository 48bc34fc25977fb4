"""The operator's scaling loop reads apps from the watch cache, not with a LIST per tick (no control plane)."""

from __future__ import annotations

from mpcloud_operator.scaling.loop import ScalingLoop
from tests.unit.reconcile.test_runner_table import app, reconciled


def test_apps_come_from_the_watch_cache_without_a_list_call() -> None:
    rt, kube = reconciled([app("web"), app("api")])
    other = {**app("elsewhere"), "metadata": {**app("elsewhere")["metadata"], "namespace": "other"}}
    rt.primaries.put(("MiniProgramApp", "other", "elsewhere"), other)
    scoped, every = ScalingLoop(rt, "http://127.0.0.1:1", namespaces=["shop"]), ScalingLoop(rt, "http://127.0.0.1:1")
    try:
        assert sorted(b["metadata"]["name"] for b in scoped.list_apps()) == ["api", "web"]
        assert all(b["status"]["observedGeneration"] == 1 for b in scoped.list_apps())  # our status writes are in it
        assert len(every.list_apps()) == 3  # no namespace filter: every watched namespace
        assert [a for a in kube.actions if a.verb == "list"] == []
    finally:
        scoped.pool.shutdown(wait=False)
        every.pool.shutdown(wait=False)


def test_a_risk_policy_holds_a_scale_in_during_a_promotion_event() -> None:
    from datetime import datetime, timezone

    from mpcloud_operator.scaling.core import Outcome

    rt, kube = reconciled([app("web")])
    key = ("MiniProgramApp", "shop", "web")
    body = rt.primaries.get(key)
    body["spec"]["scaling"] = {"events": [{"name": "flash-sale", "start": "2026-11-11T11:00:00Z",
                                           "end": "2026-11-11T13:00:00Z", "expectedMultiplier": 30}]}
    rt.primaries.put(key, body)
    rt.primaries.put(("RiskPolicy", "shop", "risk"), {
        "apiVersion": "mpcloud.io/v1alpha1", "kind": "RiskPolicy", "metadata": {"name": "risk", "namespace": "shop"},
        "spec": {"opsRisk": {"mode": "Enforce", "scaleIn": {"minReplicas": 8}}}})
    loop = ScalingLoop(rt, "http://127.0.0.1:1")
    try:
        uid = body["metadata"]["uid"]
        wanted = Outcome(namespace="shop", name="web", uid=uid, previous=20, replicas=3, reason="forecast",
                         message="forecast: 3 replicas")
        now = datetime(2026, 11, 11, 12, tzinfo=timezone.utc).timestamp()
        [held] = loop._guard([wanted], {uid: rt.primaries.get(key)}, now)
        assert (held.replicas, held.reason) == (8, "policy")
        assert "held at 8" in held.message and "scaler wanted 3" in held.message
        events = [a.detail for a in kube.actions if a.verb == "event" and a.detail[0] == "PolicyViolation"]
        assert events and events[0][1].startswith("[opsRisk.scaleIn] scale-in 20 -> 3 during promotion event")
        later = datetime(2026, 11, 12, tzinfo=timezone.utc).timestamp()
        assert loop._guard([wanted], {uid: rt.primaries.get(key)}, later) == [wanted]
    finally:
        loop.pool.shutdown(wait=False)
