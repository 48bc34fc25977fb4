"""Wait for a child process's HTTP readiness endpoint (the operator's /readyz, Prometheus's /-/ready).

Shared by the launcher and the local Prometheus, which both start processes and must not return early.
"""

from __future__ import annotations

import subprocess
import time
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
