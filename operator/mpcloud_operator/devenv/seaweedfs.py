"""A local SeaweedFS for development, tests and the demo: the `weed` binary built from its Go module, run by us.

Exists because CloudFunction's file storage needs a real S3 server; in a cluster that is the in-cluster one of
`manifests/seaweedfs/` or the user's own S3 (see its README).

State lives in `$MPCLOUD_HOME/seaweedfs` (or any `base` directory a test passes): `data/` (master metadata,
volumes, the filer's store — and in it the identities the operator creates), `s3.json` (the static admin
identity with its generated keys, mode 0600), `ports.json`, `listen` (extra S3 addresses), `weed.pid`,
`weed.log`, and per extra address `s3-<addr>.pid` / `.log`.

One `weed server` runs master, volume server, filer and S3 gateway (with its embedded IAM API writable: the
operator's FileProvisioner creates function identities through it), every port on 127.0.0.1. Pods reach S3 on
the real node's bridge gateway: for each extra address a second `weed s3` process serves the same filer there
(read-only IAM). SeaweedFS binds one address per listener, and the alternative — `-ip=<gateway>` — would also
put the master, volume server and unauthenticated filer on the pods' network, where a function could read every
bucket around S3's access checks. Identity changes reach the extra gateways through SeaweedFS's own propagation.

Small volumes (`-master.volumeSizeLimitMB`) and one volume grown per collection at a time
(`master.volume_growth.copy_1=1`, as `weed mini` does) keep many buckets (one collection each) inside a bounded
number of volume slots.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from mpcloud_operator.devenv.ports import free_port
from mpcloud_operator.devenv.waiting import stop_server

DEFAULT_S3_PORT = 8333
VOLUME_SIZE_LIMIT_MB = 32
MAX_VOLUMES = 500  # 32 MiB each, sparse: one per written bucket at first
ADMIN_NAME = "mpcloud-admin"
_PORTS = ("s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")


class SeaweedError(RuntimeError):
    pass


def default_base() -> Path:
    home = Path(os.environ.get("MPCLOUD_HOME", Path.home() / ".local" / "share" / "mpcloud"))
    return home / "seaweedfs"


def binary() -> Path:
    from mpcloud_operator.devenv.cluster import binaries

    path = binaries.binary_path("weed")
    if not path.is_file():
        raise SeaweedError(f"SeaweedFS is not built ({path} missing): run `make seaweedfs`")
    return path


# ---- pure: configuration and command lines ---------------------------------------------------------------------

def identity_config(access_key: str, secret_key: str) -> dict:
    """SeaweedFS's static S3 identity file: one admin identity (every action on every bucket)."""
    return {"identities": [{"name": ADMIN_NAME, "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}


def local_socket(base: Path, name: str) -> str:
    """Each process's own local socket. SeaweedFS's default, /tmp/seaweedfs-s3-<port>.sock, is shared by the
    server's S3 and an extra gateway on another address (same port number) and by every base using a port."""
    path = f"{base}/{name}.sock"
    if len(path) < 100:  # sockaddr_un holds ~104 bytes
        return path
    return f"/tmp/mpcloud-weed-{hashlib.sha256(path.encode()).hexdigest()[:12]}.sock"


def server_args(base: Path, ports: dict[str, int]) -> list[str]:
    return [
        "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={base / 'data'}", "-master.peers=none",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}", f"-volume.max={MAX_VOLUMES}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}", f"-s3.config={base / 's3.json'}",
        "-s3.iam", "-s3.iam.readOnly=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.localSocket={local_socket(base, 's3')}", f"-filer.localSocket={local_socket(base, 'filer')}",
    ]


def gateway_args(base: Path, ports: dict[str, int], address: str, grpc_port: int) -> list[str]:
    """An extra S3 gateway on `address` over the same filer (same port number, another address). Its gRPC port
    is explicit: `-port.grpc=0` means "S3 port + 10000" to weed, which is no port at all for an S3 port above
    55535 (free ports come from the ephemeral range: "listen tcp: address 70317: invalid port")."""
    return [
        "s3", f"-filer=127.0.0.1:{ports['filer']}.{ports['filer_grpc']}", f"-ip.bind={address}",
        f"-port={ports['s3']}", f"-port.grpc={grpc_port}", f"-config={base / 's3.json'}", "-iam.readOnly=true",
        "-port.iceberg=0", "-port.lance=0", f"-localSocket={local_socket(base, f's3-{address}')}",
    ]


def _env() -> dict[str, str]:
    # Environment overrides of master.toml (SeaweedFS reads WEED_* through viper).
    return dict(os.environ, WEED_MASTER_VOLUME_GROWTH_COPY_1="1", WEED_MASTER_VOLUME_GROWTH_COPY_OTHER="1")


# ---- state files -----------------------------------------------------------------------------------------------

def credentials(base: Path | None = None) -> tuple[str, str]:
    """The admin identity's (access key, secret key)."""
    cred = json.loads(((base or default_base()) / "s3.json").read_text())["identities"][0]["credentials"][0]
    return cred["accessKey"], cred["secretKey"]


def _ensure_credentials(base: Path) -> None:
    path = base / "s3.json"
    if path.exists():
        return
    access = "MPADMIN" + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(identity_config(access, secret), f, indent=2)
    os.replace(path.with_suffix(".tmp"), path)


def ports(base: Path | None = None) -> dict[str, int]:
    return json.loads(((base or default_base()) / "ports.json").read_text())


def _choose_ports(base: Path, s3_port: int) -> dict[str, int]:
    path = base / "ports.json"
    if path.exists():  # a restart keeps its addresses (the operator and the bindings have them)
        return json.loads(path.read_text())
    chosen: dict[str, int] = {}
    for name in _PORTS:
        port = free_port(s3_port if name == "s3" else None)
        while port in chosen.values():
            port = free_port(None)
        chosen[name] = port
    path.write_text(json.dumps(chosen))
    return chosen


def url(base: Path | None = None, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{ports(base)['s3']}"


def _read_list(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:  # a recycled pid is not ours
        if b"weed" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
    except OSError:
        pass
    return pid


def _pid_files(base: Path) -> list[Path]:
    return sorted(base.glob("s3-*.pid")) + [base / "weed.pid"]


def is_running(base: Path | None = None) -> bool:
    return _pid((base or default_base()) / "weed.pid") is not None


# ---- start, stop, status ---------------------------------------------------------------------------------------

def _spawn(base: Path, args: list[str], name: str) -> subprocess.Popen:
    log = open(base / f"{name}.log", "ab")
    try:
        proc = subprocess.Popen([str(binary()), *args], cwd=base, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()
    (base / f"{name}.pid").write_text(str(proc.pid))
    return proc


def _log_tail(log_path: Path | None, lines: int = 8) -> str:
    """The end of a process's log for an error message (CI keeps no temp files)."""
    if log_path is None:
        return ""
    try:
        tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        tail = []
    return f"; see {log_path}" + ("; its last lines:\n" + "\n".join(tail) if tail else "")


def wait_ready(endpoint: str, access_key: str, secret_key: str, proc: subprocess.Popen | None, timeout: float,
               what: str, log_path: Path | None = None, write: bool = True) -> None:
    """Until an authenticated ListBuckets answers (filer up, identities loaded) and, with `write`, an object can
    be stored (a volume server has registered with the master): SeaweedFS answers HTTP well before both."""
    import urllib3
    from minio import Minio

    from mpcloud_operator.backing.s3 import split_endpoint

    host, secure = split_endpoint(endpoint)
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=5), retries=False)  # we poll ourselves
    client = Minio(host, access_key=access_key, secret_key=secret_key, secure=secure, region="us-east-1",
                   http_client=http)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SeaweedError(f"{what} exited with {proc.returncode}{_log_tail(log_path)}")
        try:
            client.list_buckets()
            if write:
                _probe_write(client)
            return
        except Exception as exc:  # noqa: BLE001 - not up yet, whatever the symptom
            last = exc
        time.sleep(0.25)
    raise SeaweedError(f"{what} not ready after {timeout:.0f}s (last: {str(last).splitlines()[0][:200] if last else '-'})"
                       f"{see}")


def _probe_write(client) -> None:
    import io

    bucket = "mpcloud-health"
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    client.put_object(bucket, "probe", io.BytesIO(b"ok"), 2)


def up(base: Path | None = None, s3_port: int = DEFAULT_S3_PORT, listen: list[str] | None = None,
       timeout: float = 90) -> str:
    """Start SeaweedFS (idempotent: a running one is kept) and return its S3 URL on 127.0.0.1.

    `listen`: extra addresses for S3 besides 127.0.0.1 (e.g. the real node's bridge gateway). Omitted, the
    previous start's are kept; changed, the extra gateways are restarted (the server keeps running)."""
    base = base or default_base()
    (base / "data").mkdir(parents=True, exist_ok=True)
    listen = sorted(set(listen)) if listen is not None else _read_list(base / "listen")
    _ensure_credentials(base)
    access, secret = credentials(base)
    chosen = _choose_ports(base, s3_port)
    if not is_running(base):
        _stop_gateways(base)  # a gateway outliving its server serves nothing
        proc = _spawn(base, server_args(base, chosen), "weed")
        try:
            wait_ready(url(base), access, secret, proc, timeout, "SeaweedFS", base / "weed.log")
        except SeaweedError:
            _stop(base / "weed.pid", kill=True)
            raise
    if listen != _read_list(base / "listen") or any(_pid(base / f"s3-{a}.pid") is None for a in listen):
        _stop_gateways(base)
        (base / "listen").write_text("\n".join(listen) + "\n")
        for address in listen:
            proc = _spawn(base, gateway_args(base, chosen, address, free_port(None)), f"s3-{address}")
            wait_ready(url(base, address), access, secret, proc, timeout, f"SeaweedFS S3 gateway on {address}",
                       base / f"s3-{address}.log", write=False)
    return url(base)


def _stop(pid_file: Path, timeout: float = 20, kill: bool = False) -> bool:
    return stop_server(lambda: _pid(pid_file), signal.SIGKILL if kill else signal.SIGTERM, timeout)


def _stop_gateways(base: Path) -> None:
    for pid_file in base.glob("s3-*.pid"):
        _stop(pid_file)
        pid_file.unlink(missing_ok=True)


def down(base: Path | None = None, timeout: float = 20, kill: bool = False) -> bool:
    """Stop our SeaweedFS and its extra gateways (SIGTERM, or SIGKILL with kill=True); keeps the data.
    True if the server was running."""
    base = base or default_base()
    for pid_file in base.glob("s3-*.pid"):
        _stop(pid_file, timeout, kill)
    return _stop(base / "weed.pid", timeout, kill)


def status(base: Path | None = None) -> dict:
    base = base or default_base()
    running = is_running(base)
    listen = _read_list(base / "listen")
    return {"running": running, "dir": str(base),
            "url": url(base) if (base / "ports.json").exists() else None,
            "listen": ["127.0.0.1", *listen],
            "gateways": {a: _pid(base / f"s3-{a}.pid") is not None for a in listen},
            "admin_access_key": credentials(base)[0] if (base / "s3.json").exists() else None,
            "credentials_file": str(base / "s3.json")}
