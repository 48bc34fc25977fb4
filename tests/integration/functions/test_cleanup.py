"""Credentials follow the spec, even across an operator outage (real PostgreSQL, real SeaweedFS IAM):

- a binding removed from a spec revokes that role or key at once and updates (last binding: deletes) the
  bindings Secret;
- a function deleted while no operator runs loses its role and key on the next operator's first sweep; the
  app's data stays for its other functions (README "Deleting a function").
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from kubernetes import client

from mpcloud_operator.backing.postgres import Provisioner, function_role, tenant_for
from mpcloud_operator.backing.s3 import FileProvisioner, identity_name
from tests.integration.conftest import wait_until
from tests.integration.functions.test_cloudfunction import DB_WRITE, GROUP, PLURAL, VERSION, bound
from tests.integration.functions.test_cloudfunction import functions  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


class Backing:
    def __init__(self, env: dict[str, str]) -> None:
        self.pg = Provisioner(env["MPCLOUD_POSTGRES_ADMIN_DSN"])
        self.s3 = FileProvisioner(env["MPCLOUD_S3_ENDPOINT"], env["MPCLOUD_S3_ADMIN_ACCESS_KEY"],
                                  env["MPCLOUD_S3_ADMIN_SECRET_KEY"])

    def roles(self) -> set[str]:
        return {r for r, _ in asyncio.run(self.pg.function_roles())}

    def identities(self) -> set[str]:
        return {u for u, _ in self.s3.function_identities()}


def secret_keys(functions, name: str) -> set[str] | None:
    try:
        secret = functions.core.read_namespaced_secret(f"cf-{name}-bindings", functions.ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return set(secret.data or {})


def test_a_removed_binding_is_revoked_and_the_secret_follows(functions, function_platform):
    backing = Backing(function_platform.operator_env)
    ns = functions.ns
    functions.create(bound("both", "trim", DB_WRITE, storage="read"))
    functions.wait_serving("both")
    role, user = function_role(tenant_for(ns, "trim"), "both"), identity_name(f"{ns}/trim", "both")
    assert role in backing.roles() and user in backing.identities()
    assert {"MPCLOUD_DB_DSN", "MPCLOUD_S3_ACCESS_KEY"} <= secret_keys(functions, "both")

    functions.patch("both", {"spec": {"bindings": {"storage": None}}})
    wait_until(lambda: user not in backing.identities(), 60, interval=0.5, what="the S3 key revoked")
    wait_until(lambda: "MPCLOUD_S3_ACCESS_KEY" not in secret_keys(functions, "both"), 60, interval=0.5,
               what="the Secret without the S3 entries")
    assert role in backing.roles() and functions.call("both", method="GET").status_code == 200
    assert (functions.get("both")["status"]).get("bindings") == ["database"]

    functions.patch("both", {"spec": {"bindings": {"database": None}}})
    wait_until(lambda: role not in backing.roles(), 60, interval=0.5, what="the role revoked")
    wait_until(lambda: secret_keys(functions, "both") is None, 60, interval=0.5, what="the Secret deleted")
    wait_until(lambda: "bindings" not in functions.get("both")["status"], 30, interval=0.5,
               what="status.bindings cleared")


def test_credentials_of_a_function_deleted_while_the_operator_was_down_are_swept(
        functions, function_platform, running_operator, operator_factory, monkeypatch):
    backing = Backing(function_platform.operator_env)
    ns = functions.ns
    functions.create(bound("gone", "sweep", DB_WRITE, storage="readWrite"))
    functions.create(bound("stays", "sweep", DB_WRITE))
    functions.wait_serving("gone")
    functions.wait_serving("stays")
    assert functions.call("gone", {"n": 1, "title": "kept by the app"}).status_code == 200
    role, user = function_role(tenant_for(ns, "sweep"), "gone"), identity_name(f"{ns}/sweep", "gone")
    assert role in backing.roles() and user in backing.identities()

    running_operator["op"].stop(signal.SIGKILL)  # a crash: no delete event will ever be seen
    functions.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "gone")
    wait_until(lambda: not [f for f in functions.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
                            ["items"] if f["metadata"]["name"] == "gone"], 30, what="the function deleted")
    assert role in backing.roles()  # nobody cleaned up

    monkeypatch.setenv("MPCLOUD_CREDENTIAL_SWEEP_SECONDS", "2")  # the first pass comes after min(period, 30 s)
    replacement = operator_factory("after-outage").start().wait_ready(timeout=60)
    running_operator["op"] = replacement
    wait_until(lambda: role not in backing.roles() and user not in backing.identities(), 60, interval=0.5,
               what="the orphaned role and key swept")
    assert function_role(tenant_for(ns, "sweep"), "stays") in backing.roles()
    assert [t["title"] for t in functions.call("stays", method="GET").json()["todos"]] == ["kept by the app"]
    assert "mpcloud_function_credentials_dropped_total" in replacement.metrics()
