"""Wait for a child process's HTTP readiness endpoint (the operator's /readyz, Prometheus's /-/ready), and for a
server we signalled to exit.

Shared by the launcher and the local Prometheus and PostgreSQL, which start processes and must not return early.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable
import urllib.request


class NotReady(RuntimeError):
    """The process exited, or its endpoint did not answer 200 in time."""


def wait_http_ready(url: str, proc: subprocess.Popen, timeout: float, what: str, log_path: object = None) -> None:
    see = f"; see {log_path}" if log_path else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NotReady(f"{what} exited with {proc.returncode}{see}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise NotReady(f"{what} not ready after {timeout:.0f}s{see}")


def stop_server(pid_of: Callable[[], int | None], sig: int, timeout: float) -> bool:
    """Send `sig` to the server `pid_of()` names, wait until it is gone (reaping it if it is our child), SIGKILL
    at the deadline. False if none was running."""
    pid = pid_of()
    if pid is None:
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_of() is not None:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if pid_of() is not None:
        os.kill(pid, signal.SIGKILL)
    return True
