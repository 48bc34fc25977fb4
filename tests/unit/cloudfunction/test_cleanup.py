"""Credential cleanup without backing servers: the sweep's choice of orphans (pure), one pass against fake
provisioners (FakeClient for the API), backoff when a service is down, and revocation when a binding leaves
the spec (the Secret deleted, status.bindings following the applied Deployment)."""

from __future__ import annotations

from typing import Any

import pytest

from mpcloud_operator.cloudfunction import bindings, cleanup, resources
from mpcloud_operator.cloudfunction.model import CloudFunction
from mpcloud_operator.config import OperatorConfig
from mpcloud_operator.kinds import KINDS
from mpcloud_operator.reconcile import runner
from mpcloud_operator.runtime import Runtime
from tests.fakes.kube import FakeClient
from tests.unit.cloudfunction.test_cloudfunction import NS, Checks, body

DB = {"database": {"collections": [{"name": "todos", "access": "readWrite"}]}}
FILES = {"storage": {"access": "read"}}


def owner(name: str, app: str = "default", ns: str = NS) -> dict[str, str]:
    return {"namespace": ns, "app": app, "function": name}


def test_orphans_are_what_no_function_binds_in_the_managed_namespaces() -> None:
    functions = [body("a", bindings=DB), body("b", bindings=FILES), body("c", app="shop", bindings={**DB, **FILES})]
    assert cleanup.expected(functions, "database") == {(NS, "default", "a"), (NS, "shop", "c")}
    provisioned = [("r-a", owner("a")), ("r-b", owner("b")), ("r-c-old-app", owner("c")), ("r-c", owner("c", "shop")),
                   ("r-gone", owner("gone")), ("r-elsewhere", owner("x", ns="other"))]
    got = cleanup.orphans(provisioned, cleanup.expected(functions, "database"), [])
    assert [n for n, _ in got] == ["r-b", "r-c-old-app", "r-gone", "r-elsewhere"]
    managed = cleanup.orphans(provisioned, cleanup.expected(functions, "database"), [NS])
    assert "r-elsewhere" not in [n for n, _ in managed]  # another operator's namespace: never touched


class FakeProvisioner:
    """function_roles / function_identities / drops, in memory; `down` raises like an unreachable server."""

    def __init__(self, items: list[tuple[str, dict[str, str]]]) -> None:
        self.items, self.down, self.dropped = list(items), False, []

    def listing(self) -> list[tuple[str, dict[str, str]]]:
        if self.down:
            raise ConnectionError("connection refused")
        return list(self.items)

    async def function_roles(self) -> list[tuple[str, dict[str, str]]]:
        return self.listing()

    def function_identities(self) -> list[tuple[str, dict[str, str]]]:
        return self.listing()

    def _drop(self, function: str) -> None:
        if self.down:
            raise ConnectionError("connection refused")
        self.dropped.append(function)
        self.items = [(n, o) for n, o in self.items if o["function"] != function]

    async def drop_function(self, tenant: Any, function: str) -> None:
        self._drop(function)

    def drop_identity(self, tenant: str, function: str) -> bool:
        self._drop(function)
        return True


def sweep_runtime(objects: list[dict[str, Any]]) -> tuple[Runtime, FakeProvisioner, FakeProvisioner]:
    kube = FakeClient(objects)
    rt = Runtime.for_kinds(kube, KINDS, config=OperatorConfig(
        postgres_admin_dsn="postgresql://admin@db/postgres", s3_endpoint="http://s3:8333", s3_admin_access_key="a",
        s3_admin_secret_key="s", binding_key="k"))
    pg = FakeProvisioner([("role-kept", owner("kept")), ("role-gone", owner("gone")), ("role-unbound", owner("plain"))])
    s3 = FakeProvisioner([("cf.kept", owner("kept")), ("cf.gone", owner("gone"))])
    rt.services.update({"postgres": pg, "s3": s3})
    return rt, pg, s3


def test_one_pass_drops_credentials_of_deleted_functions_and_removed_bindings() -> None:
    rt, pg, s3 = sweep_runtime([body("kept", bindings={**DB, **FILES}), body("plain")])
    rt.services["postgres-provisioned"] = memo = bindings.TTLMemo(300)
    memo.put((NS, "default", "gone", "pw", ()), "x")
    dropped = cleanup.CredentialSweep(rt).sweep()
    assert dropped == {"database": ["role-gone", "role-unbound"], "storage": ["cf.gone"]}
    assert sorted(pg.dropped) == ["gone", "plain"] and s3.dropped == ["gone"]
    assert memo.get((NS, "default", "gone", "pw", ())) is None  # re-created later: provisioned again
    assert cleanup.CredentialSweep(rt).sweep() == {}  # level-triggered: nothing left to do


def test_a_function_recreated_during_the_pass_keeps_its_credentials() -> None:
    rt, pg, s3 = sweep_runtime([body("kept", bindings={**DB, **FILES}), body("plain")])
    sweep = cleanup.CredentialSweep(rt)
    listed = sweep._functions()
    rt.kube.put(body("gone", bindings=DB))  # created after the LIST, before the drops
    sweep._functions = lambda: listed
    dropped = sweep.sweep()
    assert "role-gone" not in dropped["database"] and "gone" not in pg.dropped
    assert s3.dropped == ["gone"]  # the new spec binds no storage: that key still goes


def test_a_backing_service_down_is_retried_with_backoff_and_the_other_still_swept() -> None:
    rt, pg, s3 = sweep_runtime([body("kept", bindings={**DB, **FILES})])
    pg.down = True
    sweep = cleanup.CredentialSweep(rt, period=300)
    assert sweep.sweep() == {"storage": ["cf.gone"]}
    assert sweep._failed
    sweep.failures = 1
    assert sweep.next_delay() == cleanup.FIRST_RETRY_S
    sweep.failures = 4
    assert sweep.next_delay() == 240.0
    sweep.failures = 9
    assert sweep.next_delay() == 300.0
    pg.down = False
    assert sweep.sweep() == {"database": ["role-gone", "role-unbound"]} and not sweep._failed


# ---------------------------------------------------------------- a binding removed from the spec


def reconcile_runtime(objects: list[dict[str, Any]]) -> tuple[Runtime, FakeClient, list]:
    kube = FakeClient([*objects, {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "kata"}}])
    rt = Runtime.for_kinds(kube, KINDS, config=OperatorConfig(function_image="img:1", binding_key="k",
                                                              postgres_admin_dsn="postgresql://a@db/postgres",
                                                              s3_endpoint="http://s3:8333", s3_admin_access_key="a",
                                                              s3_admin_secret_key="s"))
    rt.services["cloudfunction-source-checks"] = Checks()
    for obj in objects:
        rt.primaries.put(("CloudFunction", NS, obj["metadata"]["name"]), kube.objects[FakeClient._key(obj)])
    revoked: list = []
    return rt, kube, revoked


def test_removed_bindings_are_revoked_the_secret_updated_then_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    provisioned: list = []
    revoked: list = []
    monkeypatch.setattr(bindings, "_database", lambda rt, fn, key: provisioned.append("db") or {"MPCLOUD_DB_DSN": "d"})
    monkeypatch.setattr(bindings, "_storage", lambda rt, fn, key: provisioned.append("s3") or {"MPCLOUD_S3_BUCKET": "b"})
    monkeypatch.setattr(bindings, "revoke", lambda rt, ns, app, name, database, storage: revoked.append(
        (name, database, storage)))
    rt, kube, _ = reconcile_runtime([body(bindings={**DB, **FILES})])
    kind = rt.kinds["CloudFunction"]

    def reconcile(spec_bindings: dict) -> dict:
        stored = kube.objects[("CloudFunction", NS, "hello")]
        stored["spec"]["bindings"] = spec_bindings
        rt.primaries.put(("CloudFunction", NS, "hello"), stored)
        assert runner.reconcile(rt, kind, NS, "hello").outcome == "ok"
        return kube.objects[("CloudFunction", NS, "hello")]["status"]

    assert reconcile({**DB, **FILES})["bindings"] == ["database", "storage"] and revoked == []
    secret = kube.objects[("Secret", NS, "cf-hello-bindings")]
    assert set(secret["data"]) == {"MPCLOUD_DB_DSN", "MPCLOUD_S3_BUCKET"}

    st = reconcile(DB)  # storage removed: its key revoked, the Secret keeps only the database's entries
    assert revoked == [("hello", False, True)] and st["bindings"] == ["database"]
    assert set(kube.objects[("Secret", NS, "cf-hello-bindings")]["data"]) == {"MPCLOUD_DB_DSN"}

    reconcile({})  # the last binding removed: role revoked, the Secret deleted, status says none
    dep_apply = [a.detail for a in kube.actions if a.verb == "apply" and a.kind == "Deployment"][-1]
    assert revoked[-1] == ("hello", True, False) and "annotations" not in dep_apply["metadata"]
    dep = kube.objects[("Deployment", NS, "cf-hello")]
    dep["metadata"].pop("annotations")  # what server-side apply does with an annotation it no longer gets
    rt.child_views[("Deployment", NS, "cf-hello")] = resources.deployment_view(dep)
    from mpcloud_operator.reconcile.queue import STATUS

    runner.reconcile(rt, kind, NS, "hello", STATUS)
    status_write = [a.detail for a in kube.actions if a.verb == "apply_status"][-1]
    assert "bindings" not in status_write  # (a status apply removes what it omits)
    assert ("Secret", NS, "cf-hello-bindings") not in kube.objects
    kube.objects[("CloudFunction", NS, "hello")]["status"].pop("bindings")  # what server-side apply did
    kube.actions.clear()
    reconcile({})
    assert not [a for a in kube.actions if a.verb == "delete"] and len(revoked) == 2  # nothing more to do


def test_revoking_while_the_service_is_down_refuses_the_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any) -> None:
        raise ConnectionError("connection refused")

    monkeypatch.setattr(bindings, "revoke", down)
    f = CloudFunction.from_body(body(status={"bindings": ["database"]}))
    from mpcloud_operator.reconcile.references import ReferenceProblem

    with pytest.raises(ReferenceProblem, match="revoking the removed database binding: connection refused"):
        bindings.revoke_removed(None, f)
    assert resources.absent_objects(f)[-1]["kind"] == "Secret"
