"""A local Git server for the demo and the tests: Debian's `git daemon` over bare repositories, with GitHub-style
push webhooks.

Exists because pipeline triggers must be proven against a real `git push`, not a hand-made HTTP request: a push
to a repository here runs its `post-receive` hook, which POSTs what GitHub would — a `push` payload (ref, before,
after, repository.clone_url, pusher, head_commit) signed with `X-Hub-Signature-256` (HMAC-SHA256 of the body with
the repository's webhook secret), `X-GitHub-Event: push` and a fresh `X-GitHub-Delivery` — to the webhook URL
configured for the repository, and prints the answer to the pusher (`remote: webhook 201 {...}`).

State lives in `$MPCLOUD_HOME/git` (or any `base` a test passes): `repos/<name>.git` (bare, default branch
main), `port`, `listen` (extra addresses, e.g. the real node's bridge gateway, so pods clone
`git://<gateway>:<port>/<name>.git`), `daemon.pid`, `daemon.log`. Anonymous push is enabled (receive-pack): bind it
only to 127.0.0.1 and the local pod bridge, as `up()` does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from mpcloud_operator.devenv.ports import free_port
from mpcloud_operator.devenv.waiting import stop_server

DEFAULT_PORT = 9418
HEALTH_REPO = "_health"

# The hook: the standard library only (it runs under git daemon's environment, not the operator's package).
POST_RECEIVE = r'''#!{python}
"""mpcloud's post-receive hook: a GitHub-style push webhook per updated ref (devenv/gitserver.py)."""
import hashlib, hmac, json, subprocess, sys, time, urllib.error, urllib.request, uuid

def config(key):
    out = subprocess.run(["git", "config", "--get", key], capture_output=True, text=True)
    return out.stdout.strip()

def commit(sha):
    fmt = "%H%x00%s%x00%an%x00%ae%x00%cI"
    out = subprocess.run(["git", "log", "-1", "--format=" + fmt, sha], capture_output=True, text=True).stdout
    sha, subject, name, email, when = (out.strip().split("\x00") + [""] * 5)[:5]
    return {{"id": sha, "message": subject, "timestamp": when, "author": {{"name": name, "email": email}}}}

url, secret = config("mpcloud.webhook.url"), config("mpcloud.webhook.secret").encode()
name, clone_url = config("mpcloud.name"), config("mpcloud.cloneurl")
for line in sys.stdin:
    before, after, ref = line.split()
    if not url:
        continue
    zero = "0" * 40
    body = json.dumps({{
        "ref": ref, "before": before, "after": after, "created": before == zero, "deleted": after == zero,
        "forced": False, "repository": {{"name": name, "full_name": "local/" + name, "clone_url": clone_url}},
        "pusher": {{"name": "local"}}, "head_commit": None if after == zero else commit(after),
    }}).encode()
    headers = {{"Content-Type": "application/json", "User-Agent": "mpcloud-git-hook", "X-GitHub-Event": "push",
               "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()}}
    for attempt in range(3):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, headers, method="POST"), timeout=10) as r:
                print("webhook", r.status, r.read().decode()[:300])
            break
        except urllib.error.HTTPError as exc:
            print("webhook", exc.code, exc.read().decode()[:300])
            break
        except OSError as exc:
            print("webhook failed:", exc)
            time.sleep(1)
'''


class GitServerError(RuntimeError):
    pass


def default_base() -> Path:
    home = Path(os.environ.get("MPCLOUD_HOME", Path.home() / ".local" / "share" / "mpcloud"))
    return home / "git"


def _git() -> str:
    exe = shutil.which("git")
    if exe is None:
        raise GitServerError("git is not installed: `apt-get install git` (`make node-packages`)")
    return exe


def _run(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run([_git(), *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise GitServerError(f"git {' '.join(args)}: {out.stderr.strip()[-500:]}")
    return out.stdout


def _read_list(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def port(base: Path | None = None) -> int:
    return int(((base or default_base()) / "port").read_text())


def _pid(base: Path) -> int | None:
    try:
        pid = int((base / "daemon.pid").read_text())
        os.kill(pid, 0)
        if b"daemon" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None  # a recycled pid
    except (OSError, ValueError):
        return None
    return pid


def is_running(base: Path | None = None) -> bool:
    return _pid(base or default_base()) is not None


def daemon_args(base: Path, port_: int, listen: list[str]) -> list[str]:
    return ["daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", f"--base-path={base / 'repos'}",
            f"--port={port_}", *[f"--listen={a}" for a in ["127.0.0.1", *listen]], "--informative-errors",
            str(base / "repos")]


def url(name: str, base: Path | None = None, host: str = "127.0.0.1") -> str:
    return f"git://{host}:{port(base)}/{name}.git"


def wait_ready(base: Path, proc: subprocess.Popen | None, timeout: float) -> None:
    """Until `git ls-remote` of the health repository answers on every address (the protocol, not just a port)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise GitServerError(f"git daemon exited with {proc.returncode}; see {base / 'daemon.log'}")
        results = [subprocess.run([_git(), "ls-remote", url(HEALTH_REPO, base, host)], capture_output=True,
                                  text=True, timeout=10) for host in ["127.0.0.1", *_read_list(base / "listen")]]
        if all(r.returncode == 0 for r in results):
            return
        last = next(r.stderr.strip() for r in results if r.returncode != 0)
        time.sleep(0.2)
    raise GitServerError(f"git daemon not ready after {timeout:.0f}s (last: {last[-200:]}); see {base / 'daemon.log'}")


def up(base: Path | None = None, port_: int = DEFAULT_PORT, listen: list[str] | None = None,
       timeout: float = 30) -> str:
    """Start the server (idempotent; a changed `listen` restarts it) and return git://127.0.0.1:<port>/."""
    base = base or default_base()
    (base / "repos").mkdir(parents=True, exist_ok=True)
    listen = sorted(set(listen)) if listen is not None else _read_list(base / "listen")
    if not (base / "port").exists():
        (base / "port").write_text(str(free_port(port_)))
    if is_running(base) and listen != _read_list(base / "listen"):
        down(base)
    (base / "listen").write_text("\n".join(listen) + "\n")
    if not (base / "repos" / f"{HEALTH_REPO}.git").exists():
        create_repo(HEALTH_REPO, base=base)
    if not is_running(base):
        with open(base / "daemon.log", "ab") as log:
            proc = subprocess.Popen([_git(), *daemon_args(base, port(base), listen)], cwd=base, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=dict(os.environ, GIT_CONFIG_NOSYSTEM="1"))
        (base / "daemon.pid").write_text(str(proc.pid))
        try:
            wait_ready(base, proc, timeout)
        except GitServerError:
            down(base)
            raise
    return f"git://127.0.0.1:{port(base)}/"


def down(base: Path | None = None, timeout: float = 10) -> bool:
    """Stop the daemon (the repositories stay). True if it was running."""
    base = base or default_base()
    stopped = stop_server(lambda: _pid(base), signal.SIGTERM, timeout)
    (base / "daemon.pid").unlink(missing_ok=True)
    return stopped


def create_repo(name: str, base: Path | None = None, webhook_url: str | None = None,
                secret: str | None = None) -> Path:
    """A bare repository `name` (idempotent) with the webhook hook installed; returns its path."""
    base = base or default_base()
    path = base / "repos" / f"{name}.git"
    if not path.exists():
        _run("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    hook = path / "hooks" / "post-receive"
    hook.write_text(POST_RECEIVE.format(python=sys.executable))
    hook.chmod(0o755)
    hosts = _read_list(base / "listen") or ["127.0.0.1"]
    _run("config", "mpcloud.name", name, cwd=path)
    if (base / "port").exists():  # the URL pods clone from: the first extra address (the pod bridge), if any
        _run("config", "mpcloud.cloneurl", url(name, base, hosts[0]), cwd=path)
    if webhook_url is not None:
        set_webhook(name, webhook_url, secret or "", base)
    return path


def set_webhook(name: str, webhook_url: str, secret: str, base: Path | None = None) -> None:
    """Where pushes to `name` are delivered, and the secret they are signed with."""
    path = (base or default_base()) / "repos" / f"{name}.git"
    _run("config", "mpcloud.webhook.url", webhook_url, cwd=path)
    _run("config", "mpcloud.webhook.secret", secret, cwd=path)


def status(base: Path | None = None) -> dict:
    base = base or default_base()
    repos = sorted(p.name[:-4] for p in (base / "repos").glob("*.git") if p.name != f"{HEALTH_REPO}.git") \
        if (base / "repos").exists() else []
    return {"running": is_running(base), "dir": str(base),
            "port": port(base) if (base / "port").exists() else None,
            "listen": ["127.0.0.1", *_read_list(base / "listen")], "repositories": repos}


def main() -> None:  # pragma: no cover - `python -m mpcloud_operator.devenv.gitserver` for a quick look
    print(json.dumps(status(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
