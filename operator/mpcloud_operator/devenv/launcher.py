"""`mpcloud operator run` as a child process: the one launcher of the demo, the integration tests and bench/.

Exists so that every local run exercises the operator exactly as shipped (its own process, its CLI, its
probes and metrics listeners) and so that all of them start, probe and stop it the same way.

    op = OperatorProcess(service_account_kubeconfig, log_dir, "main").start().wait_ready()
    op.metrics(); op.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mpcloud_operator.devenv.ports import free_port
from mpcloud_operator.devenv.waiting import NotReady, wait_http_ready


class OperatorProcess:
    """One operator process with its own probe/metrics ports (free ones unless given) and log file
    `log_dir/<name>.log` (appended). `detach` starts it in its own session, so it outlives the command
    that started it (the demo) and a Ctrl-C there does not reach it."""

    def __init__(self, kubeconfig: Path, log_dir: Path, name: str = "operator", *, health_port: int | None = None,
                 metrics_port: int | None = None, env: dict[str, str] | None = None, detach: bool = False) -> None:
        self.kubeconfig, self.log_path = kubeconfig, Path(log_dir) / f"{name}.log"
        self.health_port, self.metrics_port = health_port or free_port(), metrics_port or free_port()
        self.extra_env, self.detach = dict(env or {}), detach
        # The function scaler's /demand endpoint (the gateway pushes to it): a free port unless the env sets one.
        self.demand_port = int(self.extra_env.setdefault("MPCLOUD_DEMAND_PORT", str(free_port())))
        # The Git webhook endpoint (pipeline triggers): likewise.
        self.webhook_port = int(self.extra_env.setdefault("MPCLOUD_WEBHOOK_PORT", str(free_port())))
        self.proc: subprocess.Popen | None = None

    def start(self) -> OperatorProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.extra_env)
        env.pop("KUBECONFIG", None)  # only --kubeconfig counts: never the caller's (admin) one
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mpcloud_operator", "operator", "run", "--kubeconfig", str(self.kubeconfig),
             "--health-port", str(self.health_port), "--metrics-port", str(self.metrics_port),
             "--bind-address", "127.0.0.1"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=self.detach)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def probe(self, path: str) -> int:
        """HTTP status of the probe listener's `path` (0: no answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=2) as r:
                return r.status
        except OSError as exc:
            return getattr(exc, "code", 0) or 0

    def wait_ready(self, timeout: float = 60) -> OperatorProcess:
        """Until /readyz answers 200; NotReady (with the log's tail) if it exits or the timeout passes."""
        try:
            wait_http_ready(f"http://127.0.0.1:{self.health_port}/readyz", self.proc, timeout, "the operator",
                            self.log_path)
        except NotReady as exc:
            # A process left waiting (e.g. a standby for a Lease) would take the Lease later and act behind the
            # caller's back: one that is not ready in time is stopped.
            self.stop(signal.SIGKILL)
            raise NotReady(f"{exc}\n{self.log()[-3000:]}") from None
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Send `sig` (SIGKILL after `timeout`); returns the exit code (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
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


def terminate(pid: int, timeout: float = 20) -> bool:
    """SIGTERM an operator another command started (the demo's, by its recorded pid), SIGKILL after
    `timeout`. True if it was running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    return True
