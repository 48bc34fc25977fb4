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


# The function scaler's keep-alive "minute" in the tests: scale-to-zero and keep-alive windows in seconds.
TEST_MINUTE_SECONDS = 4.0


@pytest.fixture(scope="session")
def function_platform(mpcloud_installed, kubeconfig, tmp_path_factory):
    """PostgreSQL, SeaweedFS, the runtime image on the real node and the gateway (devenv/functions.py, as the
    demo runs them). Every operator of the session gets its settings, so CloudFunctions bind for real."""
    from mpcloud_operator.devenv import functions

    log_dir = tmp_path_factory.mktemp("platform")
    try:
        platform = functions.start(kubeconfig, log=lambda m: print(f"[platform] {m}", flush=True), log_dir=log_dir,
                                   minute_seconds=TEST_MINUTE_SECONDS)
    except Exception as exc:  # noqa: BLE001 - reported the same way as a control plane that cannot start
        from tests.conftest import CI

        if CI:
            pytest.fail(f"the function platform could not start (CI=true): {exc}")
        pytest.skip(f"no function platform: {exc}")
    yield platform
    platform.stop()
    functions.stop_backing()


@pytest.fixture(scope="session")
def pipeline_helper_image(kubeconfig) -> str | None:
    """The image that packs pipeline task results (python3): debian-python on the real node; None without one."""
    from mpcloud_operator.devenv.cluster import local, realnode

    if not realnode.states(local.home()):
        return None
    return local.build_images(["debian-python"], log=lambda m: print(f"[image] {m}"))["debian-python"].ref


@pytest.fixture(scope="session")
def operator_factory(operator_kubeconfig, function_platform, pipeline_helper_image, tmp_path_factory):
    made: list[OperatorProcess] = []
    log_dir = tmp_path_factory.mktemp("operator-logs")

    def make(name: str = "operator", own_demand_port: bool = False, env: dict | None = None) -> OperatorProcess:
        """An operator with the platform's settings (and `env` on top). `own_demand_port`: for an operator that
        runs beside the session's (another Lease): the gateway keeps pushing demand to the session operator's port."""
        env = {**function_platform.operator_env, **(env or {})}
        if pipeline_helper_image:
            env["MPCLOUD_PIPELINE_HELPER_IMAGE"] = pipeline_helper_image
        if own_demand_port:
            env.pop("MPCLOUD_DEMAND_PORT", None)  # OperatorProcess picks a free one
        proc = OperatorProcess(operator_kubeconfig, log_dir, f"{name}-{len(made)}", env=env)
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
