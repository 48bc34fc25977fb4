"""CloudFunction without a control plane: model rules, pure builders and status, the reconcile through the
generic runner (FakeClient), and the scaler's decisions and keep-alive bank."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mpcloud_operator.cloudfunction import resources, scaler
from mpcloud_operator.cloudfunction.model import CloudFunction, FunctionScaling
from mpcloud_operator.cloudfunction.resources import Prepared
from mpcloud_operator.config import OperatorConfig
from mpcloud_operator.kinds import KINDS
from mpcloud_operator.reconcile import runner
from mpcloud_operator.runtime import Runtime
from tests.fakes.kube import FakeClient

NS = "todo"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
PY = "def main(event, context):\n    return {'hello': event.get('body')}\n"


def body(name: str = "hello", generation: int = 1, status: dict | None = None, **spec: Any) -> dict[str, Any]:
    out = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction",
           "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": generation},
           "spec": {"runtime": "python3.11", "source": {"inline": {"files": {"index.py": PY}}}, **spec}}
    if status is not None:
        out["status"] = status
    return out


def fn(**kw: Any) -> CloudFunction:
    return CloudFunction.from_body(body(**kw))


PREPARED = Prepared(image="mpcloud.local/function-runtime:abc", code_hash="a" * 64, files={"index.py": PY})


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("spec, message", [
    ({"source": {}}, "exactly one of inline, configMapRef or archive"),
    ({"source": {"inline": {"files": {"index.py": "x"}}, "configMapRef": {"name": "c"}}}, "exactly one"),
    ({"source": {"inline": {"files": {"../etc/passwd": "x"}}}}, "plain file names"),
    ({"scaling": {"minInstances": 5, "maxInstances": 2}}, "minInstances must be less than or equal"),
    ({"runtime": "ruby3"}, "runtime"),
    ({"sandbox": {"runtimeClassName": "none"}}, "allowUnsandboxed"),
    ({"handler": "main"}, "handler"),
])
def test_model_rejects_bad_specs_with_the_crd_message(spec: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CloudFunction.from_body(body(**spec))


def test_defaults_scale_to_zero_sandboxed_mpcloud_keepalive() -> None:
    f = fn()
    assert (f.spec.scaling.min_instances, f.spec.scaling.keep_alive.policy) == (0, "mpcloud")
    assert f.spec.sandbox.runtime_class_name == "kata" and f.spec.app == "default"


# ---------------------------------------------------------------- builders


def test_children_are_hardened_owned_and_routed_by_label() -> None:
    objs = {o["kind"]: o for o in resources.desired_objects(fn(), PREPARED)}
    assert list(objs) == ["ServiceAccount", "ConfigMap", "NetworkPolicy", "Service", "Deployment"]
    dep = objs["Deployment"]
    assert "replicas" not in dep["spec"]  # the function scaler owns it
    pod = dep["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "kata" and pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["runAsNonRoot"]
    assert c["command"][:3] == ["python3", "-m", "mpcloud_operator.functions.host"]
    assert dep["spec"]["template"]["metadata"]["annotations"][resources.CODE_HASH_ANNOTATION] == "a" * 64
    assert objs["ConfigMap"]["data"] == {"index.py": PY}
    assert objs["Service"]["spec"]["clusterIP"] == "None"
    assert objs["Service"]["metadata"]["labels"][resources.FUNCTION_LABEL] == "hello"
    for o in objs.values():
        assert o["metadata"]["ownerReferences"][0]["uid"] == "uid-hello"


def test_bindings_secret_mounted_as_files_only_when_bound() -> None:
    bound = Prepared(image="i", code_hash="b" * 64, files={"index.py": PY}, binding_env={"MPCLOUD_DB_DSN": "x"})
    objs = {o["kind"]: o for o in resources.desired_objects(fn(), bound)}
    assert objs["Secret"]["data"] == {"MPCLOUD_DB_DSN": "eA=="}  # base64 of "x"
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "envFrom" not in container  # credentials never in the environment
    assert {"name": "MPCLOUD_BINDINGS_DIR", "value": resources.BINDINGS_DIR} in container["env"]
    assert {"name": "bindings", "mountPath": resources.BINDINGS_DIR, "readOnly": True} in container["volumeMounts"]
    assert {"name": "bindings", "secret": {"secretName": "cf-hello-bindings", "defaultMode": 0o440}} in pod["volumes"]
    unbound = {o["kind"]: o for o in resources.desired_objects(fn(), PREPARED)}
    assert "Secret" not in unbound
    assert all(v["name"] != "bindings" for v in unbound["Deployment"]["spec"]["template"]["spec"]["volumes"])


def test_runtime_image_pull_policy_follows_the_reference() -> None:
    from mpcloud_operator.config import OperatorConfig

    assert OperatorConfig(function_image="r/f:1").function_pull_policy == "Always"
    assert OperatorConfig(function_image="r/f@sha256:" + "a" * 64).function_pull_policy == "IfNotPresent"
    assert OperatorConfig(function_image="r/f:1", function_image_pull_policy="IfNotPresent"
                          ).function_pull_policy == "IfNotPresent"
    dep = resources.deployment(fn(), Prepared(image="r/f:1", code_hash="b" * 64, image_pull_policy="Always"))
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_archive_source_fetches_in_an_init_container() -> None:
    f = fn(source={"archive": {"url": "http://files/code.tar.gz", "sha256": "c" * 64}})
    dep = resources.deployment(f, PREPARED)
    (init,) = dep["spec"]["template"]["spec"]["initContainers"]
    assert "--sha256" in init["command"] and "c" * 64 in init["command"]
    assert {o["kind"] for o in resources.absent_objects(f)} == {"ConfigMap"}


def test_source_hash_depends_on_names_and_content() -> None:
    a = resources.source_hash({"index.py": "x", "b.py": "y"})
    assert a == resources.source_hash({"b.py": "y", "index.py": "x"})
    assert a != resources.source_hash({"index.py": "xb.py", "": "y"})


# ---------------------------------------------------------------- status


def view(replicas: int, ready: int, hash_: str = "a" * 64, generation: int = 1, observed: int = 1,
         updated: int | None = None) -> dict[str, Any]:
    return {"generation": generation, "replicas": replicas, "hash": hash_,
            "status": {"observedGeneration": observed, "replicas": replicas, "readyReplicas": ready,
                       "availableReplicas": ready, "updatedReplicas": replicas if updated is None else updated}}


def ready_of(st: dict[str, Any]) -> tuple[str, str]:
    (c,) = [c for c in st["conditions"] if c["type"] == "Ready"]
    return c["status"], c["reason"]


def test_status_serving_then_scaled_to_zero_keeps_the_served_hash() -> None:
    f = fn()
    st = resources.compute_status(f, view(1, 1), {}, [], NOW, "http://gw")
    assert ready_of(st) == ("True", "Serving") and st["servingHash"] == "a" * 64
    assert st["url"] == "http://gw/todo/hello" and st["sandbox"] == "kata"
    assert resources.compute_status(f, view(0, 0), {}, [], NOW, "http://gw").get("servingHash") is None
    st0 = resources.compute_status(f, view(0, 0), st, [], NOW, "http://gw")
    assert ready_of(st0) == ("True", "ScaledToZero") and st0["servingHash"] == "a" * 64
    st_act = resources.compute_status(f, view(1, 0), st0, [], NOW, "http://gw")
    assert ready_of(st_act) == ("True", "Activating")


def test_status_rollout_serves_old_hash_until_done() -> None:
    f = fn(generation=2)
    old = {"servingHash": "a" * 64, "servingGeneration": 1}
    rolling = resources.compute_status(f, view(1, 1, hash_="b" * 64, generation=3, observed=3, updated=0), old,
                                       [], NOW, "http://gw")
    assert rolling["servingHash"] == "a" * 64 and rolling["codeHash"] == "b" * 64
    done = resources.compute_status(f, view(1, 1, hash_="b" * 64, generation=3, observed=3), rolling, [], NOW,
                                    "http://gw")
    assert (done["servingHash"], done["servingGeneration"]) == ("b" * 64, 2)


def test_status_first_instance_not_ready_is_deploying() -> None:
    st = resources.compute_status(fn(), view(1, 0), {}, [], NOW, "http://gw")
    assert ready_of(st) == ("False", "Deploying")


# ---------------------------------------------------------------- reconcile through the generic runner


class Checks:
    def __init__(self, answer: str | None = None) -> None:
        self.answer, self.calls = answer, 0

    def check(self, runtime_name: str, handler: str, code_hash: str, files: dict[str, str]) -> str | None:
        self.calls += 1
        return self.answer


def runtime_with(objects: list[dict[str, Any]], checks: Checks, **config: Any) -> tuple[Runtime, FakeClient]:
    kube = FakeClient([*objects, {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                  "metadata": {"name": "kata"}}])
    rt = Runtime.for_kinds(kube, KINDS, config=OperatorConfig(function_image="img:1", **config))
    rt.services["cloudfunction-source-checks"] = checks
    for obj in objects:
        if obj["kind"] == "CloudFunction":
            rt.primaries.put(("CloudFunction", NS, obj["metadata"]["name"]), kube.objects[FakeClient._key(obj)])
    kube.actions.clear()
    return rt, kube


def test_reconcile_applies_children_and_writes_status() -> None:
    rt, kube = runtime_with([body()], Checks())
    result = runner.reconcile(rt, rt.kinds["CloudFunction"], NS, "hello")
    assert result.outcome == "ok", result.message
    applied = [a.kind for a in kube.actions if a.verb == "apply"]
    assert applied == ["ServiceAccount", "ConfigMap", "NetworkPolicy", "Service", "Deployment"]
    dep = kube.objects[("Deployment", NS, "cf-hello")]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"
    status = kube.objects[("CloudFunction", NS, "hello")]["status"]
    assert status["codeHash"] == resources.source_hash({"index.py": PY})


def test_invalid_source_keeps_children_and_says_why() -> None:
    rt, kube = runtime_with([body()], Checks('  File "index.py", line 1\nSyntaxError: invalid syntax'))
    result = runner.reconcile(rt, rt.kinds["CloudFunction"], NS, "hello")
    assert result.outcome == "retry"
    assert not [a for a in kube.actions if a.verb == "apply"]  # nothing replaced: the old code keeps serving
    status = kube.objects[("CloudFunction", NS, "hello")]["status"]
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSource")
    assert "SyntaxError" in ready["message"]
    assert ("InvalidSource", "Warning") in kube.events()


def test_binding_without_a_configured_database_is_a_clear_condition() -> None:
    spec = {"bindings": {"database": {"collections": [{"name": "todos", "access": "readWrite"}]}}}
    rt, kube = runtime_with([body(**spec)], Checks(), binding_key="k")
    result = runner.reconcile(rt, rt.kinds["CloudFunction"], NS, "hello")
    assert result.outcome == "retry"
    status = kube.objects[("CloudFunction", NS, "hello")]["status"]
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready["reason"] == "BackingServiceUnavailable" and "MPCLOUD_POSTGRES_ADMIN_DSN" in ready["message"]


# ---------------------------------------------------------------- scaler


def test_decide_from_demand_keepalive_and_bounds() -> None:
    s = FunctionScaling(concurrency=4, max_instances=3)
    busy = scaler.Demand(waiting=2, in_flight=7, last_request=100.0)
    assert scaler.decide(s, busy, False, 100.0)[0] == 3  # ceil(9/4) = 3
    assert scaler.decide(FunctionScaling(concurrency=2, max_instances=3), scaler.Demand(waiting=20), False, 1)[0] == 3
    idle = scaler.Demand(last_request=100.0)
    assert scaler.decide(s, idle, False, 130.0) == (1, "warm after use")
    assert scaler.decide(s, idle, False, 200.0)[0] == 0
    assert scaler.decide(s, idle, True, 200.0)[0] == 1  # the keep-alive policy keeps (or pre-warms) one
    assert scaler.decide(FunctionScaling(min_instances=2), None, False, 0)[0] == 2


def test_scale_down_waits_out_the_window_scale_up_does_not() -> None:
    d = scaler.Demand()
    assert scaler.stabilized(d, 3, 0.0) == 3
    assert scaler.stabilized(d, 0, 10.0) == 3  # within 30 s of the 3
    assert scaler.stabilized(d, 0, 40.0) == 0
    assert scaler.stabilized(d, 5, 41.0) == 5


def test_demand_counts_deltas_of_the_gateway_counters() -> None:
    d = scaler.Demand()
    d.update(scaler.DemandReport(namespace=NS, name="f", requests=5, coldStarts=1), now=1.0)
    d.update(scaler.DemandReport(namespace=NS, name="f", requests=8, coldStarts=1), now=2.0)
    assert (d.invocations, d.cold_starts, d.minute_requests, d.last_request) == (8, 1, 8, 2.0)
    d.update(scaler.DemandReport(namespace=NS, name="f", requests=2), now=3.0)  # the gateway restarted
    assert d.invocations == 10


def test_keepalive_bank_matches_the_simulator_policy() -> None:
    """The bank steps the same policy class in the simulator's order: same loaded() answers."""
    from predictors.keepalive import make_policy

    rng = np.random.default_rng(0)
    counts = (rng.random((3, 200)) < 0.15).astype(float)
    reference = make_policy("fixed-3")
    reference.reset(3, np.ones(3))
    bank = scaler.KeepAliveBank(capacity=4)
    keys = [(NS, f"f{i}") for i in range(3)]
    for key in keys:
        bank.slot("fixed-3", key)
    for t in range(200):
        bank.step(t, {("fixed-3", k): counts[i, t - 1] if t else 0 for i, k in enumerate(keys)})
        expected = reference.loaded(t)
        assert [bank.is_loaded("fixed-3", k) for k in keys] == list(expected[:3])
        reference.observe(t, counts[:, t])


def test_unsandboxed_functions_are_confined_to_the_operators_node_pool() -> None:
    f = fn(sandbox={"runtimeClassName": "none", "allowUnsandboxed": True})
    pooled = Prepared(image="i", code_hash="a" * 64, files={"index.py": PY}, unsandboxed_node_pool="mpcloud.io/node=real")
    pod = resources.deployment(f, pooled)["spec"]["template"]["spec"]
    assert "runtimeClassName" not in pod and pod["nodeSelector"] == {"mpcloud.io/node": "real"}
    assert pod["tolerations"][0]["effect"] == "NoSchedule"
    assert "nodeSelector" not in resources.deployment(fn(), pooled)["spec"]["template"]["spec"]
    st = resources.compute_status(f, None, {}, [], NOW, "http://gw")
    assert st["sandbox"] == "unsandboxed (opt-out)"


def test_todo_example_functions_are_valid_and_bound() -> None:
    import yaml

    from tests.integration.conftest import ROOT

    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / "todo" / "base" / "functions.yaml").read_text())]
    names = []
    for doc in docs:
        doc["metadata"].update(namespace="todo", uid="u")
        f = CloudFunction.from_body(doc)
        names.append(f.metadata.name)
        assert f.spec.bindings.database is not None and f.spec.app == "todo"
    assert names == ["add", "list", "toggle", "remove", "attach"]


def test_schedules_fire_on_their_cron_once_per_due_time() -> None:
    fired = []
    schedules = scaler.Schedules("http://gw", post=lambda fn, name, body: fired.append((fn.metadata.name, name, body)))
    f = fn(triggers={"schedules": [{"name": "nightly", "cron": "0 3 * * *", "body": '{"x": 1}'},
                                   {"name": "often", "cron": "*/5 * * * *"}]})
    t0 = datetime(2026, 12, 3, 2, 59, 30, tzinfo=timezone.utc).timestamp()
    schedules.tick([f], t0)  # learns the next due times
    schedules.tick([f], t0 + 20)
    assert fired == []
    schedules.tick([f], t0 + 31)  # 03:00:01
    import time as _time
    deadline = _time.monotonic() + 5
    while len(fired) < 2 and _time.monotonic() < deadline:
        _time.sleep(0.01)
    assert sorted(fired) == [("hello", "nightly", '{"x": 1}'), ("hello", "often", None)]
    schedules.tick([f], t0 + 40)
    assert len(fired) == 2  # next due 03:05 / tomorrow 03:00
    schedules.tick([], t0 + 50)
    assert schedules.next_fire == {}


def test_settings_come_from_files_of_a_mounted_secret(tmp_path, monkeypatch) -> None:
    (tmp_path / "MPCLOUD_BINDING_KEY").write_text("k1\n")
    (tmp_path / "MPCLOUD_POSTGRES_ADMIN_DSN").write_text("postgresql://a@db/postgres")
    (tmp_path / "other").write_text("ignored")
    monkeypatch.setenv("MPCLOUD_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("MPCLOUD_BINDING_KEY", "from-env")  # the environment wins over files
    cfg = OperatorConfig.from_env()
    assert (cfg.binding_key, cfg.postgres_admin_dsn) == ("from-env", "postgresql://a@db/postgres")


def test_derived_credentials_are_stable_per_identity_and_key() -> None:
    from mpcloud_operator.cloudfunction.bindings import derive

    a = derive("key", "postgres", "ns", "app", "fn", "uid1")
    assert a == derive("key", "postgres", "ns", "app", "fn", "uid1") and len(a) == 32
    assert a != derive("key", "postgres", "ns", "app", "fn", "uid2") != derive("key2", "postgres", "ns", "app", "fn", "uid1")


# ---------------------------------------------------------------- archive build failures (observed pods)


def fetch_pod(name: str, hash_: str, exit_code: int | None, message: str = "", restarts: int = 0,
              waiting: bool = False) -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed", "message": message}
    status = {"name": resources.FETCH_CONTAINER, "restartCount": restarts,
              "state": {"waiting": {"reason": "CrashLoopBackOff"}} if waiting else
              ({"terminated": terminated} if exit_code is not None else {"running": {}}),
              "lastState": {"terminated": terminated} if waiting else {}}
    return {"kind": "Pod", "metadata": {"name": name, "namespace": NS,
                                        "labels": {resources.FUNCTION_LABEL: "hello", resources.SOURCE_LABEL: "archive"},
                                        "annotations": {resources.CODE_HASH_ANNOTATION: hash_}},
            "status": {"initContainerStatuses": [status]}}


def test_pod_build_view_keeps_only_a_failed_fetch() -> None:
    assert resources.pod_build_view(fetch_pod("p", "c" * 64, 0)) is None
    assert resources.pod_build_view(fetch_pod("p", "c" * 64, None)) is None  # still fetching
    v = resources.pod_build_view(fetch_pod("p", "c" * 64, 1, "archive digest sha256:1 does not match", 3, waiting=True))
    assert v == {"hash": "c" * 64, "pod": "p", "message": "archive digest sha256:1 does not match", "restarts": 3}
    assert resources.pod_build_view(fetch_pod("p", "c" * 64, 1, ""))["message"] == "Error (exit code 1)"
    assert resources.pod_owner(fetch_pod("p", "c" * 64, 1)) == "hello"


def test_archive_pods_are_labelled_for_the_watch() -> None:
    f = fn(source={"archive": {"url": "http://files/code.tar.gz", "sha256": "c" * 64}})
    template = resources.deployment(f, PREPARED)["spec"]["template"]
    assert template["metadata"]["labels"][resources.SOURCE_LABEL] == "archive"
    assert template["spec"]["initContainers"][0]["terminationMessagePath"] == "/dev/termination-log"
    assert resources.SOURCE_LABEL not in resources.deployment(fn(), PREPARED)["spec"]["template"]["metadata"]["labels"]


def test_status_build_failed_while_the_old_code_keeps_serving() -> None:
    f = fn(generation=2, source={"archive": {"url": "http://files/code.tar.gz", "sha256": "c" * 64}})
    old = {"servingHash": "a" * 64, "servingGeneration": 1}
    rolling = view(2, 1, hash_="c" * 64, generation=3, observed=3, updated=1)
    bad = resources.pod_build_view(fetch_pod("new", "c" * 64, 1, "cannot download http://files/code.tar.gz: HTTP 404"))
    stale = resources.pod_build_view(fetch_pod("older", "b" * 64, 1, "an older failure"))
    st = resources.compute_status(f, rolling, old, [], NOW, "http://gw", [bad, stale])
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert (ready["status"], ready["reason"]) == ("False", "BuildFailed")
    assert "HTTP 404" in ready["message"] and "keep serving aaaaaaaaaaaa" in ready["message"]
    assert (degraded["status"], degraded["reason"]) == ("True", "BuildFailed")
    assert st["servingHash"] == "a" * 64 and st["codeHash"] == "c" * 64
    # Only failures of the current code count; once it serves, old failures are history.
    assert ready_of(resources.compute_status(f, rolling, old, [], NOW, "http://gw", [stale]))[1] == "Serving"
    done = resources.compute_status(f, view(1, 1, hash_="c" * 64, generation=3, observed=3), old, [], NOW,
                                    "http://gw", [bad])
    assert ready_of(done) == ("True", "Serving")


def test_a_failed_fetch_pod_refreshes_the_status_with_an_event() -> None:
    from mpcloud_operator.reconcile import observed
    from mpcloud_operator.reconcile.queue import STATUS

    archive = {"archive": {"url": "http://files/code.tar.gz", "sha256": "c" * 64}}
    rt, kube = runtime_with([body(source=archive)], Checks())
    kube.deployments_become_ready = False  # the init container never lets the pod start
    kind = rt.kinds["CloudFunction"]
    assert runner.reconcile(rt, kind, NS, "hello").outcome == "ok"
    rt.primaries.put(("CloudFunction", NS, "hello"), kube.objects[("CloudFunction", NS, "hello")])
    while rt.queue.get(timeout=0):
        pass
    (obs,) = kind.observed
    observed.on_event(rt, kind, obs, "ADDED", fetch_pod("p1", "c" * 64, 1, "archive member '../x' would be written "
                                                                          "outside the code directory"))
    assert rt.queue.get(timeout=0) == (("CloudFunction", NS, "hello"), STATUS)
    assert runner.reconcile(rt, kind, NS, "hello", STATUS).outcome == "ok"
    status = kube.objects[("CloudFunction", NS, "hello")]["status"]
    assert ready_of(status) == ("False", "BuildFailed")
    assert ("BuildFailed", "Warning") in kube.events()
    observed.on_event(rt, kind, obs, "MODIFIED", fetch_pod("p1", "c" * 64, 1, "archive member '../x' would be written "
                                                                             "outside the code directory"))
    assert rt.queue.get(timeout=0) is None  # same view: nothing to do
    observed.on_event(rt, kind, obs, "DELETED", fetch_pod("p1", "c" * 64, 1))
    assert rt.observed_views == {}


def test_an_edited_configmap_source_re_reconciles_its_functions_with_the_new_hash() -> None:
    from mpcloud_operator.reconcile import references
    from mpcloud_operator.reconcile.queue import FULL

    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code", "namespace": NS},
          "data": {"index.py": PY}}
    rt, kube = runtime_with([cm, body(source={"configMapRef": {"name": "code"}})], Checks())
    kind = rt.kinds["CloudFunction"]
    assert runner.reconcile(rt, kind, NS, "hello").outcome == "ok"
    first = kube.objects[("Deployment", NS, "cf-hello")]["spec"]["template"]["metadata"]["annotations"]
    while rt.queue.get(timeout=0):
        pass
    edited = kube.put({**cm, "data": {"index.py": PY.replace("hello", "hi")}})
    references.on_referenced_event(rt, "MODIFIED", edited)
    assert rt.queue.get(timeout=0) == (("CloudFunction", NS, "hello"), FULL)
    references.on_referenced_event(rt, "MODIFIED", edited)  # the same version again (a re-list)
    rt.queue.done(("CloudFunction", NS, "hello"))
    assert rt.queue.get(timeout=0) is None
    rt.primaries.put(("CloudFunction", NS, "hello"), kube.objects[("CloudFunction", NS, "hello")])
    assert runner.reconcile(rt, kind, NS, "hello").outcome == "ok"
    second = kube.objects[("Deployment", NS, "cf-hello")]["spec"]["template"]["metadata"]["annotations"]
    new_hash = resources.source_hash({"index.py": PY.replace("hello", "hi")})
    assert second[resources.CODE_HASH_ANNOTATION] == new_hash != first[resources.CODE_HASH_ANNOTATION]
    assert kube.objects[("CloudFunction", NS, "hello")]["status"]["codeHash"] == new_hash
    other = kube.put({**cm, "metadata": {"name": "unrelated", "namespace": NS}})
    references.on_referenced_event(rt, "ADDED", other)
    assert rt.queue.get(timeout=0) is None
