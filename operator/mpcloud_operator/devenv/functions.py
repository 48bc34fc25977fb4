"""The CloudFunction platform on the local cluster: real PostgreSQL, real SeaweedFS (S3), the runtime image on the
real node, the gateway as a host process, and the operator settings that tie them together.

Used by `mpcloud demo` and by the integration tests, so both run exactly the same pieces:

    platform = start(kubeconfig, log)         # backing services up, image built and imported, gateway running
    run the operator with platform.operator_env (MPCLOUD_POSTGRES_ADMIN_DSN, MPCLOUD_S3_*, ...)
    curl {platform.gateway_url}/<namespace>/<function>
    platform.stop()                           # the gateway; `stop_backing()` also stops PostgreSQL and SeaweedFS

What runs unsandboxed locally: function pods run with runc on the real node (the only runtime this host can
offer); they opt out of the sandbox visibly (spec.sandbox.runtimeClassName none + allowUnsandboxed) and the
operator confines such pods to the real node (MPCLOUD_UNSANDBOXED_NODE_POOL). The backing services and the
gateway run on the host; pods reach PostgreSQL and SeaweedFS on the node bridge's address.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mpcloud_operator.devenv import postgres, seaweedfs
from mpcloud_operator.devenv.cluster import install, local, realnode
from mpcloud_operator.devenv.ports import free_port
from mpcloud_operator.devenv.waiting import wait_http_ready

GATEWAY_SA = "mpcloud-gateway"
UNSANDBOXED_POOL = f"{realnode.NODE_LABEL}={realnode.NODE_LABEL_VALUE}"


def binding_key() -> str:
    """The operator's binding key for this dev environment: generated once, kept (0600) under MPCLOUD_HOME, so
    restarts derive the same credentials."""
    path = local.home() / "binding-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def pool_key_file() -> Path:
    """The warm pools' key for this dev environment (operator and gateway share it), generated once, kept (0600)."""
    path = local.home() / "pool-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path


def pod_reachable_host() -> tuple[str | None, str | None]:
    """(address, subnet) of the real node's bridge: where pods reach services on this host. (None, None)
    without a real node (kwok only: no pod runs code, the host address is only used by host processes)."""
    states = realnode.states(local.home())
    if not states:
        return None, None
    state = states[0]
    return state.gateway, state.subnet


@dataclass
class FunctionPlatform:
    gateway_url: str
    demand_port: int
    operator_env: dict[str, str]
    image: str | None
    gateway: subprocess.Popen | None = None
    log_path: Path | None = None
    _log: object = field(default=None, repr=False)

    def stop(self) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            self.gateway.terminate()
            try:
                self.gateway.wait(10)
            except subprocess.TimeoutExpired:
                self.gateway.kill()


def start_backing(log: Callable[[str], None] = print) -> dict[str, str]:
    """PostgreSQL and SeaweedFS up (idempotent), listening where pods can reach them; the operator's settings."""
    host, subnet = pod_reachable_host()
    admin_dsn = postgres.up(listen=[host] if host else [], allow=[subnet] if subnet else [])
    pg_port = postgres.port()
    log(f"PostgreSQL on 127.0.0.1:{pg_port}" + (f" and {host}:{pg_port} for pods" if host else ""))
    s3_url = seaweedfs.up(listen=[host] if host else [])
    access_key, secret_key = seaweedfs.credentials()
    log(f"SeaweedFS S3 at {s3_url}" + (f" ({seaweedfs.url(host=host)} for pods)" if host else ""))
    env = {
        "MPCLOUD_POSTGRES_ADMIN_DSN": admin_dsn,
        "MPCLOUD_S3_ENDPOINT": s3_url,
        "MPCLOUD_S3_PUBLIC_ENDPOINT": s3_url,  # pre-signed URLs for clients on this host (curl in the demo)
        "MPCLOUD_S3_ADMIN_ACCESS_KEY": access_key,
        "MPCLOUD_S3_ADMIN_SECRET_KEY": secret_key,
        "MPCLOUD_BINDING_KEY": binding_key(),
        "MPCLOUD_POOL_KEY": pool_key_file().read_text().strip(),
        "MPCLOUD_UNSANDBOXED_NODE_POOL": UNSANDBOXED_POOL,
    }
    if host:
        env["MPCLOUD_POSTGRES_FUNCTION_HOST"] = f"{host}:{pg_port}"
        env["MPCLOUD_S3_FUNCTION_ENDPOINT"] = seaweedfs.url(host=host)
    return env


def stop_backing() -> None:
    seaweedfs.down()
    postgres.down()


def runtime_image(log: Callable[[str], None] = print) -> str | None:
    """The function runtime image, built (cached) and imported into the real node; None without one."""
    if not realnode.states(local.home()):
        return None
    return local.build_images(["function-runtime"], log=log)["function-runtime"].ref


def start_gateway(kubeconfig: Path, demand_port: int, log_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, str, Path]:
    """The gateway as a host process, watching the cluster as its own ServiceAccount (manifests/gateway.yaml's
    RBAC), pushing demand to the operator's /demand."""
    sa_config = install.service_account_kubeconfig(kubeconfig, local.home() / "gateway-kubeconfig",
                                                   name=GATEWAY_SA)
    port = port or free_port()
    log_path = Path(log_dir) / "gateway.log"
    log_file = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpcloud_operator.functions.gateway", "--host", "127.0.0.1", "--port", str(port),
         "--demand-url", f"http://127.0.0.1:{demand_port}/demand", "--kubeconfig", str(sa_config),
         "--pool-key-file", str(pool_key_file())],
        stdout=log_file, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        start_new_session=True)
    log_file.close()
    url = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{url}/_/health", proc, 30, "the gateway", log_path)
    return proc, url, log_path


def start(kubeconfig: Path, log: Callable[[str], None] = print, log_dir: Path | None = None,
          demand_port: int | None = None, minute_seconds: float | None = None) -> FunctionPlatform:
    """Everything but the operator; run it with `.operator_env`."""
    env = start_backing(log)
    image = runtime_image(log)
    demand_port = demand_port or free_port()
    proc, url, log_path = start_gateway(kubeconfig, demand_port, log_dir or local.home())
    log(f"gateway at {url} (log {log_path})")
    env.update({"MPCLOUD_DEMAND_PORT": str(demand_port), "MPCLOUD_GATEWAY_URL": url})
    if image:
        env["MPCLOUD_FUNCTION_IMAGE"] = image
        env["MPCLOUD_FUNCTION_IMAGE_PULL_POLICY"] = "IfNotPresent"  # imported into containerd: no registry to pull from
    if minute_seconds:
        env["MPCLOUD_FUNCTION_MINUTE_SECONDS"] = f"{minute_seconds:g}"
    return FunctionPlatform(url, demand_port, env, image, proc, log_path)
