"""A local PostgreSQL for development, tests and the demo: Debian's `postgresql` package run by us.

Exists because CloudFunction's document API and MiniProgramApp's managed database need a real engine; in a
cluster that is an in-cluster StatefulSet or the user's own server (`manifests/postgres/`).

State lives in `$MPCLOUD_HOME/postgres` (or any `base` directory a test passes): `data/` (the cluster, made by
`initdb`, owned by the `postgres` OS user when we are root: PostgreSQL refuses to run as root), `password` (the
superuser's, generated once, mode 0600), `port`, `listen` (extra listen addresses), `allow` (extra client
subnets for pg_hba), `postgres.log`. The postmaster's pid is the first line of `data/postmaster.pid`.

It listens on 127.0.0.1 plus the extra addresses a caller asks for (the real node's bridge gateway, so pods
reach it), TCP only (no unix socket: paths under pytest's tmp dirs are too long for one), scram-sha-256 for
every client. The server is started with `Popen(user="postgres")` rather than `runuser`: the same switch of
user, and the pid we hold is the postmaster's own.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from mpcloud_operator.devenv.ports import free_port

DEFAULT_PORT = 5433  # not 5432: Debian's own cluster (pg_lsclusters) may hold it
SUPERUSER = "postgres"
OS_USER = "postgres"


class PostgresError(RuntimeError):
    pass


def default_base() -> Path:
    home = Path(os.environ.get("MPCLOUD_HOME", Path.home() / ".local" / "share" / "mpcloud"))
    return home / "postgres"


def bin_dir() -> Path:
    """The newest installed server's bin directory (/usr/lib/postgresql/<major>/bin)."""
    root = Path("/usr/lib/postgresql")
    majors = sorted((p for p in root.glob("*/bin") if (p / "postgres").exists()),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not majors:
        raise PostgresError("PostgreSQL is not installed: `make postgres` (Debian's package: apt-get install -y "
                            "postgresql)")
    return majors[-1]


def _as_root() -> bool:
    return os.geteuid() == 0


def _owner_ids() -> tuple[int, int] | None:
    """uid/gid the server runs as: the `postgres` OS user when we are root, else ourselves (None)."""
    if not _as_root():
        return None
    try:
        user = pwd.getpwnam(OS_USER)
    except KeyError as exc:
        raise PostgresError(f"no `{OS_USER}` OS user: install Debian's postgresql package (`make postgres`)") from exc
    return user.pw_uid, user.pw_gid


def _make_traversable(path: Path) -> None:
    """Let the postgres OS user reach `path`: add o+x (search only, no listing) to ancestors that lack it.

    pytest's tmp dirs and a root home are 0700; without search permission on every ancestor the server cannot
    open its data directory. Files keep their own modes, so this exposes no content.
    """
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)


def _spawn_kwargs() -> dict:
    ids = _owner_ids()
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    if ids is None:
        return {"env": env}
    uid, gid = ids
    env["HOME"] = pwd.getpwuid(uid).pw_dir
    return {"env": env, "user": uid, "group": gid, "extra_groups": [g.gr_gid for g in grp.getgrall()
                                                                    if OS_USER in g.gr_mem]}


def _chown(path: Path) -> None:
    ids = _owner_ids()
    if ids:
        os.chown(path, *ids)


def password(base: Path | None = None) -> str:
    return ((base or default_base()) / "password").read_text().strip()


def port(base: Path | None = None) -> int:
    return int(((base or default_base()) / "port").read_text())


def dsn(base: Path | None = None, database: str = "postgres", host: str = "127.0.0.1") -> str:
    """The superuser's DSN (the operator's admin DSN for the local server)."""
    base = base or default_base()
    return f"postgresql://{SUPERUSER}:{quote(password(base), safe='')}@{host}:{port(base)}/{database}"


def _pid(base: Path) -> int | None:
    try:
        pid = int((base / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    return pid if "postgres" in cmdline else None  # a recycled pid is not ours


def is_running(base: Path | None = None) -> bool:
    return _pid(base or default_base()) is not None


def hba_text(allow: list[str]) -> str:
    """pg_hba.conf: password (scram) logins over TCP from loopback and the given subnets; nothing else."""
    lines = ["# written by mpcloud_operator.devenv.postgres on every start",
             "host all all 127.0.0.1/32 scram-sha-256",
             "host all all ::1/128 scram-sha-256"]
    lines += [f"host all all {net} scram-sha-256" for net in allow]
    return "\n".join(lines) + "\n"


def _initdb(base: Path) -> None:
    data = base / "data"
    data.mkdir(mode=0o700)
    _chown(data)
    pw = secrets.token_urlsafe(24)
    (base / "password").touch(mode=0o600)
    (base / "password").write_text(pw + "\n")
    pwfile = base / ".initdb-password"  # readable by the postgres user for initdb only, then removed
    pwfile.touch(mode=0o600)
    pwfile.write_text(pw + "\n")
    _chown(pwfile)
    try:
        res = subprocess.run([str(bin_dir() / "initdb"), "-D", str(data), "-U", SUPERUSER, "-E", "UTF8",
                              "--locale=C", "--auth=scram-sha-256", f"--pwfile={pwfile}"],
                             capture_output=True, text=True, timeout=300, **_spawn_kwargs())
    finally:
        pwfile.unlink(missing_ok=True)
    if res.returncode != 0:
        raise PostgresError(f"initdb failed: {(res.stderr or res.stdout)[-2000:]}")


def _wait_ready(base: Path, proc: subprocess.Popen, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PostgresError(f"postgres exited with {proc.returncode}; see {base / 'postgres.log'}")
        try:
            with psycopg.connect(dsn(base), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        time.sleep(0.1)
    raise PostgresError(f"postgres not ready after {timeout:.0f}s ({last}); see {base / 'postgres.log'}")


def _read_list(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def up(base: Path | None = None, port: int = DEFAULT_PORT, listen: list[str] | None = None,
       allow: list[str] | None = None, timeout: float = 60) -> str:
    """Start PostgreSQL (idempotent) and return the superuser's DSN.

    `listen`: extra addresses to listen on besides 127.0.0.1 (e.g. the real node's bridge gateway); `allow`:
    extra client subnets in pg_hba. Omitted, the previous start's values are kept; a running server is kept
    when they are unchanged, reloaded when only `allow` changed, restarted when `listen` changed.
    """
    base = base or default_base()
    base.mkdir(parents=True, exist_ok=True)
    if _as_root():
        _make_traversable(base)
    listen = sorted(set(listen)) if listen is not None else _read_list(base / "listen")
    allow = sorted(set(allow)) if allow is not None else _read_list(base / "allow")
    if is_running(base):
        if listen == _read_list(base / "listen"):
            if allow != _read_list(base / "allow"):
                _write_hba(base, allow)
                os.kill(_pid(base), signal.SIGHUP)
            return dsn(base)
        down(base)
    if not (base / "data" / "PG_VERSION").exists():
        if (base / "data").exists():
            raise PostgresError(f"{base / 'data'} exists but holds no cluster: remove it to start afresh")
        _initdb(base)
    if (base / "port").exists():  # a restart keeps its address (the operator and bindings have it)
        port = int((base / "port").read_text())
    else:
        port = free_port(port)
    (base / "port").write_text(f"{port}\n")
    (base / "listen").write_text("\n".join(listen) + "\n")
    _write_hba(base, allow)
    data = base / "data"
    log = open(base / "postgres.log", "ab")
    proc = subprocess.Popen(
        [str(bin_dir() / "postgres"), "-D", str(data), "-p", str(port),
         "-c", f"listen_addresses={','.join(['127.0.0.1', *listen])}", "-c", "unix_socket_directories=",
         "-c", f"hba_file={data / 'pg_hba.conf'}", "-c", "max_connections=200",
         "-c", "password_encryption=scram-sha-256", "-c", "log_min_messages=warning"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **_spawn_kwargs())
    log.close()
    try:
        _wait_ready(base, proc, timeout)
    except PostgresError:
        if proc.poll() is None:
            proc.kill()
        raise
    return dsn(base)


def _write_hba(base: Path, allow: list[str]) -> None:
    hba = base / "data" / "pg_hba.conf"
    hba.write_text(hba_text(allow))
    _chown(hba)
    (base / "allow").write_text("\n".join(allow) + "\n")


def down(base: Path | None = None, timeout: float = 30, kill: bool = False) -> bool:
    """Stop our PostgreSQL: a fast shutdown (SIGINT), or an immediate one (SIGQUIT: crash recovery on the next
    start) with kill=True. Keeps its data. True if one was running."""
    base = base or default_base()
    pid = _pid(base)
    if pid is None:
        return False
    os.kill(pid, signal.SIGQUIT if kill else signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid(base) is not None:
        try:  # reap it if we are its parent
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if _pid(base) is not None:
        os.kill(pid, signal.SIGKILL)
    return True


def status(base: Path | None = None) -> dict:
    base = base or default_base()
    running = is_running(base)
    return {"running": running, "dir": str(base),
            "port": port(base) if (base / "port").exists() else None,
            "listen": ["127.0.0.1", *_read_list(base / "listen")], "allow": _read_list(base / "allow"),
            "dsn": dsn(base).replace(quote(password(base), safe=""), "***") if running else None}
