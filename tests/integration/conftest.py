"""Fixtures that install mpcloud on the local control plane and run the operator as a real process.

The operator runs as `mpcloud operator run` in a subprocess, authenticated with a token of its own
ServiceAccount (TokenRequest API), so every integration test exercises exactly the ClusterRole in
manifests/rbac.yaml — never cluster-admin.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mpcloud_operator.cluster import install
from mpcloud_operator.cluster.install import kubectl  # noqa: F401 - re-exported for tests

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mpcloud_installed(kubeconfig: Path) -> None:
    """CRDs, namespace, RBAC and RuntimeClasses from crds/ and manifests/ (not the operator Deployment)."""
    from mpcloud_operator import demo

    # The tests need the only operator: a `make demo` operator would hold the Lease (and act on test apps).
    demo.stop_operator(lambda m: print(f"[tests] stopped the demo's operator: {m}"))
    install.install(kubeconfig)


@pytest.fixture(scope="session")
def operator_kubeconfig(mpcloud_installed, kubeconfig, tmp_path_factory) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount."""
    return install.service_account_kubeconfig(kubeconfig, tmp_path_factory.mktemp("operator") / "kubeconfig")


class OperatorProcess:
    """`mpcloud operator run` as a child process with its own probe/metrics ports and log file."""

    def __init__(self, kubeconfig: Path, log_dir: Path, name: str = "operator") -> None:
        self.kubeconfig, self.log_path = kubeconfig, log_dir / f"{name}.log"
        self.health_port, self.metrics_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> OperatorProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("KUBECONFIG", None)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mpcloud_operator", "operator", "run", "--kubeconfig", str(self.kubeconfig),
             "--health-port", str(self.health_port), "--metrics-port", str(self.metrics_port),
             "--bind-address", "127.0.0.1"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        return self

    def probe(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=2) as r:
                return r.status
        except OSError as exc:
            return getattr(exc, "code", 0) or 0

    def wait_ready(self, timeout: float = 60) -> OperatorProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if self.probe("/readyz") == 200:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"operator not ready after {timeout}s:\n{self.log()[-3000:]}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


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
