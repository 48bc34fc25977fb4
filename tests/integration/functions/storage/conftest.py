"""A real SeaweedFS for the file-storage tests: started once per session by `devenv.seaweedfs`.

`seaweed` is the server (its dir, URL and admin keys; a test may stop and start it, and must leave it running);
`provisioner` is a FileProvisioner with the admin key; `tenants` makes fresh tenants whose buckets and identities
are dropped afterwards, and binds functions to them (a `Storage` with the function's own key).
Under CI=true a missing `weed` binary fails the run; elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import CI


def wait_for(fn, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    """Poll fn() until it returns something truthy (exceptions count as not yet); fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - the condition is not met yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Server:
    base: Path
    url: str
    access_key: str
    secret_key: str

    def down(self, kill: bool = False) -> None:
        from mpcloud_operator.devenv import seaweedfs

        seaweedfs.down(self.base, kill=kill)

    def up(self, listen: list[str] | None = None) -> str:
        from mpcloud_operator.devenv import seaweedfs

        return seaweedfs.up(self.base, listen=listen)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> Server:
    from mpcloud_operator.devenv import seaweedfs
    from mpcloud_operator.devenv.ports import free_port

    try:
        seaweedfs.binary()
    except seaweedfs.SeaweedError as exc:
        if CI:
            pytest.fail(f"SeaweedFS is needed (CI=true): {exc}")
        pytest.skip(str(exc))
    base = tmp_path_factory.mktemp("seaweedfs")
    url = seaweedfs.up(base, s3_port=free_port())
    access, secret = seaweedfs.credentials(base)
    yield Server(base, url, access, secret)
    seaweedfs.down(base)


@pytest.fixture(scope="session")
def provisioner(seaweed):
    from mpcloud_operator.backing.s3 import FileProvisioner

    return FileProvisioner(seaweed.url, seaweed.access_key, seaweed.secret_key)


def new_keys() -> tuple[str, str]:
    return "MP" + secrets.token_hex(9).upper(), secrets.token_hex(20)


@dataclass
class Tenants:
    seaweed: Server
    provisioner: object
    made: list[tuple[str, str]] = field(default_factory=list)  # (tenant, function)

    def new(self) -> str:
        tenant = f"t{uuid.uuid4().hex[:8]}/app"
        self.provisioner.ensure_bucket(tenant)
        return tenant

    def bind(self, tenant: str, function: str, access: str = "readWrite", keys: tuple[str, str] | None = None,
             endpoint: str | None = None):
        from mpcloud_operator.functions.storage import Storage

        access_key, secret_key = keys or new_keys()
        self.provisioner.ensure_identity(tenant, function, access, access_key, secret_key)
        self.made.append((tenant, function))
        return Storage(endpoint or self.seaweed.url, access_key, secret_key, self.provisioner.bucket(tenant),
                       public_endpoint=self.seaweed.url, timeout=5)


@pytest.fixture
def tenants(seaweed, provisioner):
    t = Tenants(seaweed, provisioner)
    yield t
    if not _running(seaweed):  # a test that stopped it failed before restarting it
        seaweed.up()
    for tenant, function in t.made:
        provisioner.drop_identity(tenant, function)


def _running(seaweed: Server) -> bool:
    from mpcloud_operator.devenv import seaweedfs

    return seaweedfs.is_running(seaweed.base)
