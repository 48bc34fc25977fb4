"""Lease renewal timing: transient failures are retried within the renew deadline; a lost lease is reported once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from kubernetes import client
from kubernetes.client.rest import ApiException

from mpcloud_operator.leader import LeaderElector


class FakeCoordination:
    """A Lease store with a script of failures: each read pops the next outcome (None = answer normally)."""

    def __init__(self, script: list[object] | None = None) -> None:
        self.lease: client.V1Lease | None = None
        self.script = list(script or [])
        self.timeouts: list[float] = []

    def read_namespaced_lease(self, name, namespace, _request_timeout=None):
        self.timeouts.append(_request_timeout)
        outcome = self.script.pop(0) if self.script else None
        if isinstance(outcome, Exception):
            raise outcome
        if self.lease is None:
            raise ApiException(status=404)
        return self.lease

    def create_namespaced_lease(self, namespace, body, _request_timeout=None):
        self.lease = body
        return body

    def replace_namespaced_lease(self, name, namespace, body, _request_timeout=None):
        self.lease = body
        return body


def elector(fake: FakeCoordination, identity: str = "me") -> LeaderElector:
    e = LeaderElector(client.ApiClient(), "mpcloud-operator", "mpcloud-system", identity=identity,
                      renew_seconds=0.02, retry_seconds=0.01, renew_deadline_seconds=2.0)
    e.coord = fake
    return e


def test_transient_renew_failures_are_retried_within_the_deadline():
    fake = FakeCoordination()
    e = elector(fake)
    e.acquire()
    fake.script = [TimeoutError("read timed out"), ApiException(status=500), None, None, None]
    lost = threading.Event()
    e.keep_renewing(on_lost=lost.set)
    deadline = datetime.now() + timedelta(seconds=5)
    while fake.script and datetime.now() < deadline:
        lost.wait(0.01)
    e._stop.set()
    assert not fake.script and not lost.is_set()
    assert fake.lease.spec.holder_identity == "me"
    assert all(t is not None and t <= e.renew_deadline_seconds for t in fake.timeouts)  # no call may hang


def test_renewal_failing_past_the_deadline_reports_the_loss():
    fake = FakeCoordination()
    e = elector(fake)
    e.renew_deadline_seconds = 0.1
    e.acquire()
    fake.script = [TimeoutError("read timed out")] * 1000
    lost = threading.Event()
    e.keep_renewing(on_lost=lost.set)
    assert lost.wait(5)


def test_a_lease_taken_by_another_holder_is_reported_at_once():
    fake = FakeCoordination()
    e = elector(fake)
    e.acquire()
    now = datetime.now(timezone.utc)
    fake.lease = client.V1Lease(metadata=client.V1ObjectMeta(name="mpcloud-operator"),
                                spec=client.V1LeaseSpec(holder_identity="other", lease_duration_seconds=15,
                                                        renew_time=now, acquire_time=now))
    lost = threading.Event()
    e.keep_renewing(on_lost=lost.set)
    assert lost.wait(5)


def test_an_expired_lease_is_taken_over_and_counted_as_a_transition():
    fake = FakeCoordination()
    old = datetime.now(timezone.utc) - timedelta(seconds=60)
    fake.lease = client.V1Lease(metadata=client.V1ObjectMeta(name="mpcloud-operator"),
                                spec=client.V1LeaseSpec(holder_identity="dead", lease_duration_seconds=15,
                                                        renew_time=old, acquire_time=old, lease_transitions=2))
    e = elector(fake)
    e.acquire()
    assert fake.lease.spec.holder_identity == "me" and fake.lease.spec.lease_transitions == 3
    e.release()
    assert fake.lease.spec.holder_identity is None
