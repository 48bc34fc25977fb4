"""The child-event router (own write vs drift vs status change) and the work queue, no control plane."""

from __future__ import annotations

import threading
import time

from mpcloud_operator.kinds import KINDS
from mpcloud_operator.reconcile import children, runner
from mpcloud_operator.reconcile.controller import observe_primary
from mpcloud_operator.reconcile.queue import FULL, STATUS, WorkQueue
from mpcloud_operator.runtime import Runtime
from tests.fakes.kube import FakeClient
from tests.unit.reconcile.test_runner_table import NS, app, reconciled


def drained(rt: Runtime) -> list[tuple[tuple, int]]:
    out = []
    while (item := rt.queue.get(timeout=0)) is not None:
        out.append(item)
        rt.queue.done(item[0])
    return out


def test_echo_of_our_own_apply_wakes_nobody() -> None:
    rt, kube = reconciled([app()])
    for obj in list(kube.objects.values()):
        children.on_child_event(rt, "MODIFIED", obj)
    assert drained(rt) == []


def test_a_foreign_edit_is_drift() -> None:
    rt, kube = reconciled([app()])
    svc = kube.objects[("Service", NS, "web")]
    svc["metadata"]["generation"] = 7
    children.on_child_event(rt, "MODIFIED", svc)
    assert drained(rt) == [(("MiniProgramApp", NS, "web"), FULL)]


def test_a_deleted_child_is_drift() -> None:
    rt, kube = reconciled([app()])
    children.on_child_event(rt, "DELETED", kube.objects[("NetworkPolicy", NS, "web")])
    assert drained(rt) == [(("MiniProgramApp", NS, "web"), FULL)]


def test_deployment_status_change_refreshes_status_only() -> None:
    rt, kube = reconciled([app()])
    dep = kube.objects[("Deployment", NS, "web")]
    dep["status"]["readyReplicas"] = 0
    dep["metadata"]["resourceVersion"] = "999"
    children.on_child_event(rt, "MODIFIED", dep)
    assert drained(rt) == [(("MiniProgramApp", NS, "web"), STATUS)]


def test_children_of_a_gone_owner_are_left_to_the_garbage_collector() -> None:
    rt, kube = reconciled([app()])
    rt.primaries.pop(("MiniProgramApp", NS, "web"))
    svc = kube.objects[("Service", NS, "web")]
    children.on_child_event(rt, "DELETED", svc)
    assert drained(rt) == []


def test_primary_events_queue_each_generation_once() -> None:
    rt = Runtime.for_kinds(FakeClient(), KINDS)
    body = app()
    observe_primary(rt, "ADDED", body)
    observe_primary(rt, "MODIFIED", {**body, "status": {"observedGeneration": 1}})  # our status write's echo
    assert drained(rt) == [(("MiniProgramApp", NS, "web"), FULL)]
    observe_primary(rt, "MODIFIED", {**body, "metadata": {**body["metadata"], "generation": 2}})
    assert drained(rt) == [(("MiniProgramApp", NS, "web"), FULL)]
    observe_primary(rt, "DELETED", body)
    assert rt.primaries.get(("MiniProgramApp", NS, "web")) is None


def test_queue_dedupes_and_keeps_the_larger_need() -> None:
    q = WorkQueue()
    q.add("a", STATUS)
    q.add("a", FULL)
    q.add("a", STATUS)
    assert q.get(timeout=0) == ("a", FULL)
    assert q.get(timeout=0) is None


def test_queue_puts_work_on_existing_objects_first() -> None:
    q = WorkQueue()
    for key in ("new-1", "new-2", "new-3", "drifted"):
        q.add(key)
    q.add("drifted", FULL, front=True)  # already waiting: moves to the front
    q.add("status", STATUS, front=True)
    assert [q.get(timeout=0)[0] for _ in range(5)] == ["status", "drifted", "new-1", "new-2", "new-3"]


def test_queue_requeues_an_urgent_key_in_processing_at_the_front() -> None:
    q = WorkQueue()
    q.add("busy")
    assert q.get(timeout=0) == ("busy", FULL)
    q.add("new")
    q.add("busy", FULL, front=True)  # drift while it is being reconciled
    q.done("busy")
    assert q.get(timeout=0)[0] == "busy" and q.get(timeout=0)[0] == "new"


def test_queue_never_hands_one_key_to_two_workers() -> None:
    q = WorkQueue()
    q.add("a")
    key, _ = q.get(timeout=0)
    q.add("a", STATUS)  # an event while it is processed
    assert q.get(timeout=0) is None
    q.done(key)
    assert q.get(timeout=0) == ("a", STATUS)


def test_queue_retry_backs_off_exponentially() -> None:
    q = WorkQueue(base_delay=0.05, max_delay=0.2)
    assert [q.retry("a") for _ in range(4)] == [0.05, 0.1, 0.2, 0.2]
    q.forget("a")
    assert q.retry("b") == 0.05
    assert q.failures("a") == 0


def test_queue_delayed_item_arrives_after_its_delay() -> None:
    q = WorkQueue()
    started = time.monotonic()
    q.add_after("a", 0.2)
    assert q.get(timeout=0) is None
    assert q.get(timeout=2) == ("a", FULL)
    assert time.monotonic() - started >= 0.2


def test_queue_wakes_a_waiting_worker() -> None:
    q = WorkQueue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=5)))
    t.start()
    q.add("a")
    t.join(5)
    assert got == [("a", FULL)]


def test_status_refresh_follows_the_deployment() -> None:
    rt, kube = reconciled([app()])
    dep = kube.objects[("Deployment", NS, "web")]
    dep["status"].update(readyReplicas=0, availableReplicas=0)
    children.on_child_event(rt, "MODIFIED", dep)
    (key, need), = drained(rt)
    runner.reconcile(rt, rt.kinds["MiniProgramApp"], *key[1:], need)
    ready = next(c for c in kube.status_writes()[-1]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoReplicasAvailable")
    assert kube.verbs("apply") == []


# ---------------------------------------------------------------- referenced objects (references.ReferenceIndex)


def test_reference_index_wakes_only_dependents_and_only_on_a_new_version() -> None:
    from mpcloud_operator.reconcile.kind import Reference
    from mpcloud_operator.reconcile.references import ReferenceIndex

    index = ReferenceIndex()
    a, b = ("CloudFunction", "ns", "a"), ("MiniProgramApp", "ns", "b")
    index.record(a, "ns", [Reference("ConfigMap", "code"), Reference("RuntimeClass", "kata")])
    index.record(b, "ns", [Reference("ConfigMap", "code"), Reference("Secret", "s")])
    assert index.changed("ConfigMap", "ns", "code", "1") == [a, b]
    assert index.changed("ConfigMap", "ns", "code", "1") == []  # a re-list of the same version
    assert index.changed("ConfigMap", "other", "code", "1") == []  # another namespace's ConfigMap
    assert index.changed("RuntimeClass", None, "kata", "7") == [a]  # cluster-scoped
    index.record(a, "ns", [Reference("RuntimeClass", "kata")])  # a's spec no longer points at the ConfigMap
    assert index.changed("ConfigMap", "ns", "code", "2") == [b]
    index.forget(b)
    assert index.changed("ConfigMap", "ns", "code", "3") == [] and index.changed("ConfigMap", "ns", "code", None,
                                                                               deleted=True) == []
    assert len(index) == 1


def test_queue_keeps_one_wake_up_per_key() -> None:
    q = WorkQueue()
    for delay in (30.0, 60.0, 90.0):  # a run asking for its deadline on every reconcile
        q.add_after("run", delay)
    assert len(q) == 1
    q.add_after("run", 0.1)  # an earlier one still counts
    assert len(q) == 2
    assert q.get(timeout=2) == ("run", FULL)
