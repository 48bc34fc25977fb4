"""The runtime host: one HTTP server per function instance that runs the user's handler in language workers.

`python -m mpcloud_operator.functions.host --runtime python3.11|nodejs20 --code-dir DIR --handler index.main
 --port 8080 --timeout 10 --concurrency 10`
`python -m mpcloud_operator.functions.host --generic --runtime python3.11 --code-dir DIR --token-file FILE`: a warm
pool instance (a "stem cell") that has no function until `POST /_/specialise` gives it one (see `GenericHost`).

The host owns HTTP, health, metrics and the backing clients; user code runs in worker processes
(`workers/python_worker.py`, `workers/node_worker.js`, see `pool`). The code loads once at start-up. If it does
not load (a syntax error, a missing handler), the host stays up: `/_/health` says `ready: false` with the
interpreter's message and every invocation answers 503 InvalidSource — a visible error instead of a pod in a
crash loop.

- any method and path outside `/_/` → the handler, with the event of `protocol.build_event`;
- `GET /_/health` → {"ready", "hash", "runtime", "error"} (200 ready, 503 not); use it as the readiness probe;
- `GET /_/live` → 200 while the process serves (the liveness probe: a code error must not restart the pod);
- `GET /_/metrics` → Prometheus text (`mpcloud_runtime_*`).

Environment: `MPCLOUD_FUNCTION` (<namespace>/<name>, the handler's `context.function`), `MPCLOUD_CODE_HASH`
(reported in health; else computed from --code-dir), and the binding variables read by `backends`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mpcloud_operator.functions import protocol, service
from mpcloud_operator.functions.backends import Backends
from mpcloud_operator.functions.pool import Outcome, WorkerPool

log = logging.getLogger("mpcloud.functions.host")

WORKERS_DIR = Path(__file__).resolve().parent / "workers"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding mpcloud_operator/
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def language(runtime: str) -> str:
    """`python3.11` → "python", `nodejs20` → "node" (any python3* / nodejs* version the image carries)."""
    if runtime.startswith("python3"):
        return "python"
    if runtime.startswith("nodejs"):
        return "node"
    raise ValueError(f"unknown runtime {runtime!r}: python3.11 or nodejs20")


def worker_argv(runtime: str, code_dir: str, handler: str) -> tuple[list[str], int | None]:
    """The worker's command line, and its capacity (None: the host's concurrency)."""
    if language(runtime) == "python":
        return [sys.executable, "-u", str(WORKERS_DIR / "python_worker.py"), "--code-dir", code_dir, "--handler", handler], 1
    node = os.environ.get("MPCLOUD_NODE") or shutil.which("node") or "node"
    return [node, str(WORKERS_DIR / "node_worker.js"), "--code-dir", code_dir, "--handler", handler], None


def code_hash(code_dir: str) -> str:
    """sha256 over the code directory's files (relative path, NUL, content, in path order)."""
    h = hashlib.sha256()
    root = Path(code_dir)
    if root.is_dir():
        for p in sorted(q for q in root.rglob("*") if q.is_file() and "__pycache__" not in q.parts):
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.invocations = Counter("mpcloud_runtime_invocations_total", "Invocations by HTTP status.", ["code"], registry=r)
        self.errors = Counter("mpcloud_runtime_errors_total", "Failed invocations by error type.", ["type"], registry=r)
        self.duration = Histogram("mpcloud_runtime_invocation_duration_seconds", "Invocation time in the host.",
                                  buckets=DURATION_BUCKETS, registry=r)
        self.restarts = Counter("mpcloud_runtime_worker_restarts_total", "Workers replaced, by reason (timeout, exit).",
                                ["reason"], registry=r)
        self.rpcs = Counter("mpcloud_runtime_rpc_total", "context.db / context.storage calls.", ["target", "outcome"],
                            registry=r)
        self.inflight = Gauge("mpcloud_runtime_inflight", "Invocations running now.", registry=r)
        self.ready = Gauge("mpcloud_runtime_ready", "1 when the handler loaded.", registry=r)
        for reason in ("timeout", "exit"):
            self.restarts.labels(reason)


BINDINGS_DIR_ENV = "MPCLOUD_BINDINGS_DIR"


def binding_files(directory: str | None) -> dict[str, str]:
    """Each file of a mounted Secret as KEY -> value (Kubernetes' `..data` bookkeeping entries skipped)."""
    if not directory or not os.path.isdir(directory):
        return {}
    out = {}
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if not entry.startswith(".") and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                out[entry] = f.read()
    return out


class Host:
    """The HTTP side of one function instance. `backends` is for unit tests' doubles."""

    def __init__(self, runtime: str, code_dir: str, handler: str, timeout: float = 10, concurrency: int = 10,
                 env: Mapping[str, str] | None = None, backends: Backends | None = None) -> None:
        base = dict(os.environ if env is None else env)
        # Binding credentials arrive as files (the bindings Secret mounted as a volume), for the host's clients only.
        self.env = {**base, **binding_files(base.get(BINDINGS_DIR_ENV))}
        self.runtime, self.code_dir, self.handler = runtime, os.path.abspath(code_dir), handler
        self.timeout, self.concurrency = timeout, concurrency
        self.function = self.env.get("MPCLOUD_FUNCTION", "")
        self.hash = self.env.get("MPCLOUD_CODE_HASH") or code_hash(self.code_dir)
        self.metrics = Metrics()
        self.backends = backends or Backends(self.env, pool_size=concurrency)
        self.load_error: dict[str, Any] | None = None
        self.loaded = False
        self._loading: asyncio.Task | None = None
        argv, capacity = worker_argv(runtime, self.code_dir, handler)
        worker_env = dict(base, PYTHONUNBUFFERED="1",
                          PYTHONPATH=os.pathsep.join(p for p in (str(PACKAGE_ROOT), self.env.get("PYTHONPATH")) if p))
        self.pool = WorkerPool(argv, worker_env, concurrency, capacity or concurrency, self._rpc,
                               on_restart=lambda reason: self.metrics.restarts.labels(reason).inc())

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        started = time.monotonic()
        self.load_error = await self.pool.start()
        self.loaded = True
        self.metrics.ready.set(0 if self.load_error else 1)
        if self.load_error:
            log.error("the handler %s did not load: %s", self.handler, self.load_error["message"])
        else:
            log.info("handler %s (%s) loaded in %.0f ms", self.handler, self.runtime, (time.monotonic() - started) * 1000)

    async def close(self) -> None:
        await self.pool.close()
        await self.backends.close()

    def app(self) -> web.Application:
        async def begin_loading() -> None:
            # Listen at once; invocations that arrive while the code loads wait for it.
            self._loading = asyncio.get_running_loop().create_task(self.start())

        app = service.application(begin_loading, self.close)
        app.router.add_get("/_/health", self.health)
        app.router.add_get("/_/live", self.live)
        app.router.add_get("/_/metrics", self.metrics_page)
        app.router.add_route("*", "/_/{rest:.*}", self.not_found)
        app.router.add_route("*", "/{tail:.*}", self.invoke)
        return app

    # ------------------------------------------------------------------ endpoints
    def health_body(self) -> dict[str, Any]:
        return {"ready": self.loaded and self.load_error is None, "hash": self.hash, "runtime": self.runtime,
                "error": self.load_error}

    async def health(self, _: web.Request) -> web.Response:
        body = self.health_body()
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def live(self, _: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def metrics_page(self, _: web.Request) -> web.Response:
        return service.metrics_response(self.metrics.registry)

    async def not_found(self, request: web.Request) -> web.Response:
        return _respond(*protocol.response_from_error({"type": "NotFound", "message": f"no endpoint {request.path}"}))

    async def invoke(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        response = await self._invoke(request)
        self.metrics.duration.observe(time.monotonic() - started)
        self.metrics.invocations.labels(str(response.status)).inc()
        return response

    async def _invoke(self, request: web.Request) -> web.Response:
        if not self.loaded and self._loading is not None:
            await asyncio.shield(self._loading)
        if self.load_error:
            self.metrics.errors.labels("InvalidSource").inc()
            return _respond(*protocol.response_from_error(self.load_error))
        try:
            event = protocol.build_event(request.method, request.path, request.query, request.headers,
                                         await request.read(), request.content_type)
        except ValueError as exc:
            self.metrics.errors.labels("BadRequest").inc()
            return _respond(*protocol.response_from_error({"type": "BadRequest", "message": str(exc)}))
        context = {"function": self.function, "request_id": request.headers.get("X-Request-Id") or uuid.uuid4().hex}
        self.metrics.inflight.inc()
        try:
            outcome: Outcome = await self.pool.run(event, context, self.timeout)
        finally:
            self.metrics.inflight.dec()
        if outcome.error is not None:
            self.metrics.errors.labels(str(outcome.error.get("type", "HandlerError"))).inc()
            return _respond(*protocol.response_from_error(outcome.error))
        return _respond(*protocol.response_from_result(outcome.value))

    async def _rpc(self, message: dict[str, Any]) -> Any:
        target = str(message.get("target"))
        try:
            value = await self.backends.call(message)
        except Exception:
            self.metrics.rpcs.labels(target, "error").inc()
            raise
        self.metrics.rpcs.labels(target, "ok").inc()
        return value


def _respond(status: int, headers: dict[str, str], body: bytes) -> web.Response:
    return web.Response(status=status, headers=headers, body=body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mpcloud_operator.functions.host", description=__doc__.split("\n\n")[0])
    p.add_argument("--runtime", required=True, help="python3.11 or nodejs20")
    p.add_argument("--code-dir", required=True, help="the function's source files (--generic: where they are written)")
    p.add_argument("--handler", help="<file stem>.<function>, e.g. index.main (not with --generic)")
    p.add_argument("--generic", action="store_true", help="a warm pool instance: no function until POST /_/specialise")
    p.add_argument("--token-file", help="--generic: the file holding the pool's specialise token (a mounted Secret)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--timeout", type=float, default=10, help="seconds an invocation may run")
    p.add_argument("--concurrency", type=int, default=10, help="invocations at once (the CloudFunction's scaling.concurrency)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    service.configure_logging()
    try:
        language(args.runtime)
    except ValueError as exc:
        print(json.dumps(protocol.error_body("BadRequest", str(exc))), file=sys.stderr)
        raise SystemExit(2) from exc
    if args.generic:
        from mpcloud_operator.functions.generic import GenericHost, read_token

        if not args.token_file:
            print(json.dumps(protocol.error_body("BadRequest", "--generic needs --token-file")), file=sys.stderr)
            raise SystemExit(2)
        generic = GenericHost(args.runtime, args.code_dir, read_token(args.token_file))
        log.info("generic %s host (warm pool) on %s:%d", args.runtime, args.host, args.port)
        service.serve(generic.app(), args.host, args.port)
        return
    if not args.handler:
        print(json.dumps(protocol.error_body("BadRequest", "--handler is required")), file=sys.stderr)
        raise SystemExit(2)
    host = Host(args.runtime, args.code_dir, args.handler, args.timeout, args.concurrency)
    log.info("runtime host for %s on %s:%d", host.function or args.handler, args.host, args.port)
    service.serve(host.app(), args.host, args.port)


if __name__ == "__main__":
    main()
