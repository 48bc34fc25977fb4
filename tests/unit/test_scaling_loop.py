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
