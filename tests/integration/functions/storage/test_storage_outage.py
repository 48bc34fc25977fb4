"""SeaweedFS down and back: clear errors while it is down, nothing lost when it returns; extra listen addresses."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from mpcloud_operator.backing.s3 import S3Unavailable
from mpcloud_operator.functions.storage import StorageUnavailable

from .conftest import wait_for

pytestmark = pytest.mark.integration


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("kill", [False, True], ids=["stop", "crash"])
def test_server_down_is_storage_unavailable_and_objects_survive(seaweed, tenants, provisioner, kill):
    tenant = tenants.new()
    st = tenants.bind(tenant, "outage")
    run(st.put("keep/me.txt", b"precious"))
    url = run(st.presign_get("keep/me.txt"))  # signed before: still valid after the restart
    seaweed.down(kill=kill)
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="unreachable") as err:
            run(st.get("keep/me.txt"))
        assert time.monotonic() - started < 10, "an unreachable server must fail fast"
        assert seaweed.url.split("//")[1] in str(err.value)
        with pytest.raises(StorageUnavailable):
            run(st.put("new.txt", b"x"))
        assert run(st.presign_get("keep/me.txt")).startswith("http")  # signing is local
        with pytest.raises(S3Unavailable):
            provisioner.ensure_bucket(tenant)
        with pytest.raises(S3Unavailable):
            provisioner.ensure_identity(tenant, "late", "read", "MPLATEKEY0000000000", "secretsecret")
    finally:
        seaweed.up()
    assert wait_for(lambda: run(st.get("keep/me.txt")), timeout=30, what="the object after restart") == b"precious"
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"precious"
    run(st.put("after.txt", b"ok"))
    assert sorted(o["key"] for o in run(st.list())) == ["after.txt", "keep/me.txt"]


def test_extra_listen_address_serves_s3_but_not_the_filer(seaweed, tenants):
    from mpcloud_operator.devenv import seaweedfs

    extra = "127.0.0.2"  # a loopback address stands for the real node's bridge gateway
    seaweed.up(listen=[extra])
    try:
        tenant = tenants.new()
        st = tenants.bind(tenant, "via-gateway", endpoint=seaweedfs.url(seaweed.base, extra))
        wait_for(lambda: run(st.put("k", b"through the gateway")), what="the new identity on the extra gateway")
        assert run(st.get("k")) == b"through the gateway"
        ports = seaweedfs.ports(seaweed.base)
        for name in ("filer", "master", "volume"):
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((extra, ports[name])) != 0, f"{name} must not listen on {extra}"
        assert seaweedfs.status(seaweed.base)["gateways"] == {extra: True}
    finally:
        seaweed.up(listen=[])
    assert seaweedfs.status(seaweed.base)["gateways"] == {}
