"""Table-driven reconcile tests (Knative's TableTest shape), no control plane.

Each row: the objects that exist before → the reconcile of one MiniProgramApp → the applies, deletes,
status writes and Events it must issue, and whether it asks to be retried. The FakeClient records every
call; the same runner, kind declaration and builders as in the operator are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from mpcloud_operator.kinds import KINDS
from mpcloud_operator.reconcile import runner
from mpcloud_operator.reconcile.queue import FULL, STATUS
from mpcloud_operator.runtime import Runtime
from tests.fakes.kube import FakeClient, FakeWatch

NS = "shop"
APP_CHILDREN = ["ServiceAccount", "NetworkPolicy", "Service", "Deployment"]


def app(name: str = "web", status: dict | None = None, generation: int = 1, **spec: Any) -> dict[str, Any]:
    body = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": generation},
            "spec": {"image": "nginxinc/nginx-unprivileged:1.27", "ports": [{"name": "http", "containerPort": 8080}],
                     **spec}}
    if status is not None:
        body["status"] = status
    return body


def runtime_for(objects: list[dict[str, Any]], **fake: Any) -> tuple[Runtime, FakeClient]:
    kube = FakeClient([*objects, {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                  "metadata": {"name": "kata"}}], **fake)
    rt = Runtime.for_kinds(kube, KINDS)
    for obj in objects:
        if obj["kind"] == "MiniProgramApp":
            rt.primaries.put(("MiniProgramApp", NS, obj["metadata"]["name"]), kube.objects[FakeClient._key(obj)])
    kube.actions.clear()
    return rt, kube


def reconciled(objects: list[dict[str, Any]], **fake: Any) -> tuple[Runtime, FakeClient]:
    """The state after a first successful reconcile of every app in `objects` (calls cleared)."""
    rt, kube = runtime_for(objects, **fake)
    for obj in objects:
        if obj["kind"] == "MiniProgramApp":
            assert runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, obj["metadata"]["name"]).outcome == "ok"
    kube.actions.clear()
    return rt, kube


def secret(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}}


@dataclass
class Case:
    name: str
    objects: list[dict[str, Any]]
    outcome: str = "ok"
    retry: bool = False
    need: int = FULL
    fake: dict[str, Any] = field(default_factory=dict)
    applies: list[str] | None = None  # kinds applied, in order
    deletes: list[str] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)  # (reason, type)
    ready: tuple[str, str] | None = None  # (status, reason) of the Ready condition written; None: no status write
    message: str = ""  # must appear in the Ready message
    before: Any = None  # callable(rt, kube) run after the set-up (e.g. a first reconcile)


CASES = [
    Case("new app: children in order, Created event, Ready",
         [app()], applies=APP_CHILDREN, events=[("Created", "Normal")], ready=("True", "ReplicasAvailable")),
    Case("min 2: a PodDisruptionBudget too",
         [app(replicas={"min": 2, "max": 4, "desired": 2})],
         applies=["ServiceAccount", "NetworkPolicy", "Service", "PodDisruptionBudget", "Deployment"],
         events=[("Created", "Normal")], ready=("True", "ReplicasAvailable")),
    Case("invalid spec stored before a stricter schema: reported, not retried, nothing applied",
         [app(replicas={"min": 5, "max": 2})], outcome="invalid", applies=[],
         events=[("InvalidSpec", "Warning")], ready=("False", "InvalidSpec"), message="replicas.min"),
    Case("missing Secret: reported, retried, nothing applied",
         [app(envFrom=[{"secretRef": {"name": "db"}}])], outcome="retry", retry=True, applies=[],
         events=[("ReferenceNotFound", "Warning")], ready=("False", "ReferenceNotFound"), message="Secret 'db'"),
    Case("optional missing Secret: applied",
         [app(envFrom=[{"secretRef": {"name": "db", "optional": True}}])], applies=APP_CHILDREN,
         events=[("Created", "Normal")], ready=("True", "ReplicasAvailable")),
    Case("present Secret: applied",
         [secret("db"), app(envFrom=[{"secretRef": {"name": "db"}}])], applies=APP_CHILDREN,
         events=[("Created", "Normal")], ready=("True", "ReplicasAvailable")),
    Case("Secrets not readable in the namespace (no opt-in): existence left to the workload",
         [app(envFrom=[{"secretRef": {"name": "db"}}])], fake={"forbidden": {"Secret"}}, applies=APP_CHILDREN,
         events=[("Created", "Normal")], ready=("True", "ReplicasAvailable")),
    Case("RuntimeClass not installed",
         [app(sandbox={"runtimeClassName": "kata-fc"})], outcome="retry", retry=True, applies=[],
         events=[("RuntimeClassNotFound", "Warning")], ready=("False", "RuntimeClassNotFound")),
    Case("a refused child: the others applied, the refusal named, retried",
         [app()], fake={"refuse": {"Service": "spec.ports[0].port: Invalid value"}}, outcome="retry", retry=True,
         applies=APP_CHILDREN, events=[("Created", "Normal"), ("ReconcileFailed", "Warning")],
         ready=("False", "ReconcileFailed"), message="Service web: spec.ports[0].port: Invalid value"),
    Case("status-only refresh: no applies",
         [app()], need=STATUS, applies=[], ready=("False", "Creating")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reconcile_table(case: Case) -> None:
    rt, kube = runtime_for(case.objects, **case.fake)
    name = next(o for o in case.objects if o["kind"] == "MiniProgramApp")["metadata"]["name"]
    result = runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, name, case.need)
    assert (result.outcome, result.retry) == (case.outcome, case.retry), result.message
    if case.applies is not None:
        assert [k for v, k in kube.verbs("apply")] == case.applies
    assert [k for v, k in kube.verbs("delete")] == case.deletes
    assert kube.events() == case.events
    writes = kube.status_writes()
    if case.ready is None:
        assert writes == []
    else:
        assert len(writes) == 1
        ready = next(c for c in writes[0]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == case.ready
        assert case.message in ready["message"]
        assert writes[0]["observedGeneration"] == 1


def test_no_op_resync_writes_nothing() -> None:
    rt, kube = reconciled([app()])
    before = {k: o["metadata"]["resourceVersion"] for k, o in kube.objects.items()}
    rt.primaries.put(("MiniProgramApp", NS, "web"), kube.objects[("MiniProgramApp", NS, "web")])
    assert runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web").outcome == "ok"
    assert kube.status_writes() == [] and kube.events() == []
    assert {k: o["metadata"]["resourceVersion"] for k, o in kube.objects.items()} == before  # no-op applies


def test_leftover_removed_when_spec_no_longer_wants_it() -> None:
    rt, kube = reconciled([app(replicas={"min": 2, "max": 4, "desired": 2})])
    assert ("PodDisruptionBudget", NS, "web") in kube.objects
    stored = kube.objects[("MiniProgramApp", NS, "web")]
    stored["spec"]["replicas"] = {"min": 1, "max": 4, "desired": 2}
    stored["metadata"]["generation"] = 2
    rt.primaries.put(("MiniProgramApp", NS, "web"), stored)
    assert runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web").outcome == "ok"
    assert kube.verbs("delete") == [("delete", "PodDisruptionBudget")]
    assert ("PodDisruptionBudget", NS, "web") not in kube.objects


def test_new_app_never_deletes() -> None:
    rt, kube = runtime_for([app()])
    runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web")
    assert kube.verbs("delete") == []


def test_recovery_posts_ready_event() -> None:
    rt, kube = runtime_for([app(envFrom=[{"secretRef": {"name": "db"}}])])
    assert runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web").retry
    kube.put(secret("db"))
    rt.primaries.put(("MiniProgramApp", NS, "web"), kube.objects[("MiniProgramApp", NS, "web")])
    kube.actions.clear()
    assert runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web").outcome == "ok"
    assert kube.events() == [("Created", "Normal"), ("Ready", "Normal")]


def test_repeated_failure_writes_once() -> None:
    rt, kube = runtime_for([app(envFrom=[{"secretRef": {"name": "db"}}])])
    runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web")
    rt.primaries.put(("MiniProgramApp", NS, "web"), kube.objects[("MiniProgramApp", NS, "web")])
    kube.actions.clear()
    assert runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web").retry
    assert kube.status_writes() == [] and kube.events() == []


def test_deleted_or_deleting_app_is_left_to_the_garbage_collector() -> None:
    rt, kube = runtime_for([])
    assert runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "gone").outcome == "gone"
    body = app()
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    rt, kube = runtime_for([body])
    assert runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web").outcome == "gone"
    assert kube.writes() == []


def test_status_keeps_the_scalers_conditions_out() -> None:
    scaler_condition = {"type": "ScalingDegraded", "status": "False", "reason": "AsExpected", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}
    rt, kube = runtime_for([app(status={"conditions": [scaler_condition]})])
    runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web")
    assert {c["type"] for c in kube.status_writes()[0]["conditions"]} == {"Ready", "Progressing", "Degraded"}


def with_watches(rt: Runtime, kube: FakeClient) -> Runtime:
    for child in rt.kinds["MiniProgramApp"].children:
        rt.child_watches[child.kind] = FakeWatch(kube, child.kind)
    return rt


def test_with_a_watch_cache_created_lists_only_new_children() -> None:
    rt, kube = reconciled([app()])
    del kube.objects[("Service", NS, "web")]  # e.g. deleted while the operator was down
    kube.objects[("MiniProgramApp", NS, "web")]["metadata"]["generation"] = 2
    rt.primaries.put(("MiniProgramApp", NS, "web"), kube.objects[("MiniProgramApp", NS, "web")])
    with_watches(rt, kube)
    runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web")
    assert [a.detail[1] for a in kube.actions if a.verb == "event" and a.detail[0] == "Created"] == ["created Service"]


def test_with_a_watch_cache_no_delete_of_what_does_not_exist() -> None:
    rt, kube = reconciled([app()])
    with_watches(rt, kube)
    kube.objects[("MiniProgramApp", NS, "web")]["metadata"]["generation"] = 2
    rt.primaries.put(("MiniProgramApp", NS, "web"), kube.objects[("MiniProgramApp", NS, "web")])
    runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web")
    assert kube.verbs("delete") == [] and kube.events() == []


def test_restart_after_a_failure_with_running_children_posts_no_created() -> None:
    rt, kube = reconciled([app()])
    with_watches(rt, kube)
    stored = kube.objects[("MiniProgramApp", NS, "web")]
    stored["status"]["conditions"] = [dict(c, reason="ReferenceNotFound", status="False") if c["type"] == "Ready"
                                      else c for c in stored["status"]["conditions"]]
    rt.primaries.put(("MiniProgramApp", NS, "web"), stored)
    runner.reconcile(rt, rt.kinds["MiniProgramApp"], NS, "web")
    assert ("Created", "Normal") not in kube.events()
