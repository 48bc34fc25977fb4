"""Fixtures that install mpcloud on the local control plane and run the operator as a real process.

The operator runs as `mpcloud operator run` in a subprocess, authenticated with a token of its own
ServiceAccount (TokenRequest API), so every integration test exercises exactly the ClusterRole in
manifests/rbac.yaml — never cluster-admin.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mpcloud_operator.devenv.cluster import install
from mpcloud_operator.devenv.cluster.install import kubectl  # noqa: F401 - re-exported for tests
from mpcloud_operator.devenv.launcher import OperatorProcess, free_port  # noqa: F401 - re-exported for tests

ROOT = Path(__file__).resolve().parents[2]


def wait_until(fn, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    """Poll fn() until it returns something truthy; return it, or fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def mpcloud_installed(kubeconfig: Path) -> None:
    """CRDs, namespace, RBAC and RuntimeClasses from crds/ and manifests/ (not the operator Deployment)."""
    from mpcloud_operator.devenv import demo

    # The tests need the only operator: a `make demo` operator would hold the Lease (and act on test apps).
    demo.stop_operator(lambda m: print(f"[tests] stopped the demo's operator: {m}"))
    install.install(kubeconfig)


@pytest.fixture(scope="session")
def operator_kubeconfig(mpcloud_installed, kubeconfig, tmp_path_factory) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount."""
    return install.service_account_kubeconfig(kubeconfig, tmp_path_factory.mktemp("operator") / "kubeconfig")


@pytest.fixture(scope="session")
def operator_factory(operator_kubeconfig, tmp_path_factory):
    made: list[OperatorProcess] = []
    log_dir = tmp_path_factory.mktemp("operator-logs")

    def make(name: str = "operator") -> OperatorProcess:
        proc = OperatorProcess(operator_kubeconfig, log_dir, f"{name}-{len(made)}")
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


@pytest.fixture(scope="session")
def running_operator(operator_factory):
    """One operator for the session. Tests that stop it must start a replacement via `restart_operator`."""
    holder = {"op": operator_factory("main").start().wait_ready()}
    yield holder
    holder["op"].stop()


@pytest.fixture
def operator(running_operator) -> OperatorProcess:
    op = running_operator["op"]
    if op.proc.poll() is not None:
        pytest.fail(f"the session operator died:\n{op.log()[-3000:]}")
    return op
