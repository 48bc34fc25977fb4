"""Real runtime hosts and gateways as processes, and a tiny demand receiver, for the functions tests.

No control plane: these start `python -m mpcloud_operator.functions.host` / `.gateway` exactly as a pod would
(the gateway reads a static routes file), on free local ports, and kill them at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web

from mpcloud_operator.devenv.ports import free_port

ROOT = Path(__file__).resolve().parents[3]


def wait_until(fn, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll fn() until it returns something truthy; return it, or fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except requests.ConnectionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), str(ROOT)]), PYTHONUNBUFFERED="1")


@dataclass
class Proc:
    popen: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample of the process's /_/metrics (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted((labels or {}).items()))
        for line in requests.get(f"{self.url}/_/metrics", timeout=5).text.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, rest = key.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == want:
                return float(value)
        return 0.0


@dataclass
class Processes:
    tmp: Path
    started: list[Proc] = field(default_factory=list)

    def _spawn(self, args: list[str], name: str, port: int) -> Proc:
        log = self.tmp / f"{name}-{port}.log"
        popen = subprocess.Popen([sys.executable, *args], env=_env(), stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        proc = Proc(popen, port, log)
        self.started.append(proc)
        return proc

    def host(self, runtime: str, files: dict[str, str], handler: str = "index.main", timeout: float = 5,
             concurrency: int = 4, wait_loaded: bool = True) -> Proc:
        """A runtime host serving `files`; returns once /_/health answers with the load result."""
        code = self.tmp / f"code-{len(self.started)}"
        code.mkdir()
        for name, text in files.items():
            (code / name).write_text(text)
        port = free_port()
        proc = self._spawn(["-m", "mpcloud_operator.functions.host", "--runtime", runtime, "--code-dir", str(code),
                            "--handler", handler, "--port", str(port), "--timeout", str(timeout),
                            "--concurrency", str(concurrency)], "host", port)
        if wait_loaded:
            wait_until(lambda: _loaded(proc), what=f"host on {port} to load its code ({proc.log})")
        return proc

    def generic(self, runtime: str, token: str) -> Proc:
        """A warm pool instance (`host --generic`); returns once its health answers."""
        code = self.tmp / f"generic-{len(self.started)}"
        code.mkdir()
        token_file = self.tmp / f"token-{len(self.started)}"
        token_file.write_text(token)
        port = free_port()
        proc = self._spawn(["-m", "mpcloud_operator.functions.host", "--generic", "--runtime", runtime, "--code-dir",
                            str(code), "--token-file", str(token_file), "--port", str(port)], "generic", port)
        wait_until(lambda: _loaded(proc), what=f"generic host on {port} ({proc.log})")
        return proc

    def gateway(self, routes: Path, demand_url: str | None = None, queue_timeout: float = 20) -> Proc:
        port = free_port()
        args = ["-m", "mpcloud_operator.functions.gateway", "--routes", str(routes), "--port", str(port),
                "--queue-timeout", str(queue_timeout)]
        if demand_url:
            args += ["--demand-url", demand_url]
        proc = self._spawn(args, "gateway", port)
        wait_until(lambda: requests.get(f"{proc.url}/_/health", timeout=2).ok, what=f"gateway on {port}")
        return proc


def _loaded(proc: Proc) -> bool:
    assert proc.popen.poll() is None, f"the process exited: {proc.log.read_text()[-2000:]}"
    body = requests.get(f"{proc.url}/_/health", timeout=2).json()
    return body["ready"] or body["error"] is not None


@pytest.fixture
def procs(tmp_path: Path):
    p = Processes(tmp_path)
    yield p
    for proc in p.started:
        proc.stop()


def write_routes(path: Path, functions: list[dict[str, Any]]) -> None:
    """Atomically (the gateway may read at any moment)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"functions": functions}))
    os.replace(tmp, path)


class DemandReceiver:
    """A tiny aiohttp server in a thread that records the gateway's demand POSTs."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict[str, Any]]] = []
        self.port = free_port()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._loop = None
        self._thread.start()
        assert self._ready.wait(10), "the demand receiver did not start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/demand"

    def _serve(self) -> None:

        async def demand(request: web.Request) -> web.Response:
            self.posts.append((time.monotonic(), await request.json()))
            return web.json_response({"ok": True})

        async def run() -> None:
            app = web.Application()
            app.router.add_post("/demand", demand)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(run())

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


@pytest.fixture
def demand():
    receiver = DemandReceiver()
    yield receiver
    receiver.close()
