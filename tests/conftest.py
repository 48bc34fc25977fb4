"""Shared pytest fixtures.

Integration tests (marked `integration`) run against one real local control plane per session:
- `MPCLOUD_KUBECONFIG=/path` reuses a running cluster (any cluster you point it at);
- otherwise `mpcloud cluster up` is called (it reuses the local cluster when it is already up) and the
  cluster is stopped at the end if this session started it (set MPCLOUD_KEEP_CLUSTER=1 to keep it).
Under CI=true a control plane that cannot start fails the run; elsewhere those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _start_cluster() -> tuple[Path, bool]:
    from mpcloud_operator.devenv.cluster import local

    if os.environ.get("MPCLOUD_KUBECONFIG"):
        return Path(os.environ["MPCLOUD_KUBECONFIG"]), False
    was_running = local.is_running()
    path = local.up(log=lambda m: print(f"[cluster] {m}", flush=True))
    return path, not was_running


@pytest.fixture(scope="session")
def kubeconfig() -> Path:
    try:
        path, started = _start_cluster()
    except Exception as exc:  # noqa: BLE001 - any failure to start is reported the same way
        if CI:
            pytest.fail(f"the local control plane could not start (CI=true, so this fails the run): {exc}")
        pytest.skip(f"no control plane: {exc}")
    os.environ["KUBECONFIG"] = str(path)
    yield path
    if started and not os.environ.get("MPCLOUD_KEEP_CLUSTER"):
        from mpcloud_operator.devenv.cluster import local

        local.down(log=lambda m: None)


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture
def namespace(api_client, request) -> str:
    """A fresh namespace per test, deleted afterwards (without waiting: the real GC finishes it)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    core.create_namespace({"metadata": {"name": name, "labels": {"mpcloud.io/test": "true"}}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")
