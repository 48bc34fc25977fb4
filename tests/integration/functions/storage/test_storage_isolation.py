"""Tenant isolation and per-function permissions, enforced by SeaweedFS itself (not by our client)."""

from __future__ import annotations

import asyncio
import io

import pytest
from minio import Minio
from minio.error import S3Error

from mpcloud_operator.backing import s3
from mpcloud_operator.functions.storage import PermissionDenied, Storage

from .conftest import new_keys, wait_for

pytestmark = pytest.mark.integration


def run(coro):
    return asyncio.run(coro)


def test_tenant_a_cannot_touch_tenant_b(tenants):
    a, b = tenants.new(), tenants.new()
    keys_a = new_keys()
    st_a, st_b = tenants.bind(a, "fa", keys=keys_a), tenants.bind(b, "fb")
    run(st_a.put("mine.txt", b"a's data"))
    run(st_b.put("private.txt", b"b's data"))
    # A's key aimed at B's bucket: what code that bypasses the API could do.
    intruder = Storage(tenants.seaweed.url, *keys_a, st_b.bucket, timeout=5)
    with pytest.raises(PermissionDenied):
        run(intruder.get("private.txt"))
    with pytest.raises(PermissionDenied):
        run(intruder.put("planted.txt", b"x"))
    with pytest.raises(PermissionDenied):
        run(intruder.list())
    with pytest.raises(PermissionDenied):
        run(intruder.delete("private.txt"))
    assert run(st_b.get("private.txt")) == b"b's data"


def test_function_key_cannot_create_buckets_or_see_others(tenants):
    access_key, secret_key = new_keys()
    tenant = tenants.new()
    tenants.bind(tenant, "nobucket", keys=(access_key, secret_key))
    host, _ = s3.split_endpoint(tenants.seaweed.url)
    raw = Minio(host, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")
    with pytest.raises(S3Error) as err:
        raw.make_bucket("mpc-made-by-a-function")
    assert err.value.code == "AccessDenied"
    with pytest.raises(S3Error):
        raw.put_object("mpcloud-health", "x", io.BytesIO(b"x"), 1)


def test_read_only_identity_can_read_but_not_write(tenants):
    tenant = tenants.new()
    writer, reader = tenants.bind(tenant, "writer"), tenants.bind(tenant, "reader", access="read")
    run(writer.put("shared.txt", b"v1"))
    assert run(reader.get("shared.txt")) == b"v1"
    assert [o["key"] for o in run(reader.list())] == ["shared.txt"]
    with pytest.raises(PermissionDenied):
        run(reader.put("shared.txt", b"v2"))
    with pytest.raises(PermissionDenied):
        run(reader.delete("shared.txt"))
    assert run(writer.get("shared.txt")) == b"v1"


def test_reapplying_changes_access(tenants, provisioner):
    tenant = tenants.new()
    keys = new_keys()
    st = tenants.bind(tenant, "upgrade", access="read", keys=keys)
    with pytest.raises(PermissionDenied):
        run(st.put("x", b"1"))
    provisioner.ensure_identity(tenant, "upgrade", "readWrite", *keys)
    wait_for(lambda: run(st.put("x", b"1")), what="write after upgrade to readWrite")
    provisioner.ensure_identity(tenant, "upgrade", "read", *keys)
    wait_for(lambda: _denied(st.put("y", b"1")), what="write refused after downgrade to read")
    assert run(st.get("x")) == b"1"


def _denied(coro) -> bool:
    try:
        run(coro)
    except PermissionDenied:
        return True
    return False


def test_ensure_identity_is_idempotent_and_keeps_one_key(tenants, provisioner):
    tenant = tenants.new()
    keys = new_keys()
    st = tenants.bind(tenant, "idem", keys=keys)
    user = s3.identity_name(tenant, "idem")
    for _ in range(3):
        assert provisioner.ensure_identity(tenant, "idem", "readWrite", *keys) == user
        assert provisioner.ensure_bucket(tenant) == st.bucket
    assert provisioner._access_keys(user) == [keys[0]]
    run(st.put("k", b"v"))


def test_reapplying_an_unchanged_identity_only_reads(tenants, provisioner, monkeypatch):
    tenant = tenants.new()
    keys = new_keys()
    tenants.bind(tenant, "reads", access="read", keys=keys)
    actions: list[str] = []
    real = provisioner.iam.call

    def spy(action, **params):
        actions.append(action)
        return real(action, **params)

    monkeypatch.setattr(provisioner.iam, "call", spy)
    provisioner.ensure_identity(tenant, "reads", "read", *keys)
    assert actions and all(a.startswith(("Get", "List")) for a in actions), actions


def test_rotated_key_replaces_the_old_one(tenants, provisioner):
    tenant = tenants.new()
    old = tenants.bind(tenant, "rotate")
    new_pair = new_keys()
    provisioner.ensure_identity(tenant, "rotate", "readWrite", *new_pair)
    new = Storage(tenants.seaweed.url, *new_pair, old.bucket, timeout=5)
    wait_for(lambda: run(new.put("k", b"v")), what="the new key works")
    wait_for(lambda: _denied(old.get("k")), what="the old key is refused")
    assert provisioner._access_keys(s3.identity_name(tenant, "rotate")) == [new_pair[0]]


def test_changed_secret_for_the_same_key_is_applied(tenants, provisioner):
    tenant = tenants.new()
    access_key, secret = new_keys()
    old = tenants.bind(tenant, "resecret", keys=(access_key, secret))
    provisioner.ensure_identity(tenant, "resecret", "readWrite", access_key, secret + "x")
    new = Storage(tenants.seaweed.url, access_key, secret + "x", old.bucket, timeout=5)
    wait_for(lambda: run(new.put("k", b"v")), what="the new secret works")
    wait_for(lambda: _denied(old.get("k")), what="the old secret is refused")


def test_a_key_owned_by_another_function_is_refused(tenants, provisioner):
    tenant = tenants.new()
    keys = new_keys()
    tenants.bind(tenant, "owner", keys=keys)
    with pytest.raises(s3.ProvisioningError) as err:
        tenants.bind(tenants.new(), "thief", keys=keys)
    assert err.value.code == "EntityAlreadyExists"


def test_dropped_identity_is_refused(tenants, provisioner):
    tenant = tenants.new()
    st = tenants.bind(tenant, "dropme")
    run(st.put("k", b"v"))
    assert provisioner.drop_identity(tenant, "dropme") is True
    wait_for(lambda: _denied(st.get("k")), what="a dropped key is refused")
    assert provisioner.drop_identity(tenant, "dropme") is False  # idempotent
    # The tenant's data stays; a re-created function gets a fresh identity and sees it.
    again = tenants.bind(tenant, "dropme")
    wait_for(lambda: run(again.get("k")) == b"v", what="the re-created identity reads the tenant's data")
