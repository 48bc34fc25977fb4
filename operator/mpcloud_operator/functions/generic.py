"""A warm pool instance ("stem cell", as Fission and OpenWhisk call it): a runtime host with no function yet.

`python -m mpcloud_operator.functions.host --generic --runtime python3.11 --code-dir /code --token-file F`

The pod starts, imports the host and serves health before anyone needs it; the slow part of a cold start
(scheduling, the container, the interpreter) is paid ahead of time. On a request for a function with no
instance, the gateway claims one such pod and `POST /_/specialise`s it:

    Authorization: Bearer <the pool's token>
    {"function": "<ns>/<name>", "runtime": "python3.11", "handler": "index.main", "hash": "<sha256>",
     "source": {"files": {"index.py": "..."}} | {"archive": {"url": "...", "sha256": "..."}},
     "env": {"KEY": "value"}, "timeoutSeconds": 10, "concurrency": 10}

The code is written (or fetched and verified, with the archive init container's own `fetch`) into --code-dir
and loaded by the very `Host` a normal instance runs; from then on the pod serves that function only. Answers:
200 `{"ready", "hash", "loadMs"}`; 401 bad token (compared in constant time); 400 a body that does not
parse, another runtime, or files whose hash is not `hash`; 422 code that does not load (the interpreter's
message, as `InvalidSource`); 409 already specialised — a pod is never re-specialised, whether its first
specialisation worked or not (a function's code and secrets never share a process with another's).

The token is per pool (a namespace and runtime): it reaches the host as a file and never the workers'
environment. User code running in a specialised pod could still read that file; what it could do with it is
specialise another *generic* pod of its own namespace, which the pool's NetworkPolicy (gateway ingress only)
keeps out of its reach.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Imported at start-up, not at the first specialise: the pod has time now, the request does not.
from mpcloud_operator.cloudfunction.resources import source_hash
from mpcloud_operator.functions import fetch, protocol, service
from mpcloud_operator.functions.host import Host, language

log = logging.getLogger("mpcloud.functions.generic")


def read_token(path: str) -> str:
    token = Path(path).read_text().strip()
    if len(token) < 16:
        raise SystemExit(f"the pool token in {path} is missing or too short")
    return token


class ArchiveRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://", max_length=2048)
    sha256: str = Field(pattern=r"^[a-f0-9]{64}$")


class SourceRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: dict[str, str] | None = None
    archive: ArchiveRef | None = None

    @model_validator(mode="after")
    def _one(self) -> SourceRef:
        if (self.files is None) == (self.archive is None):
            raise ValueError("source sets exactly one of files or archive")
        return self


class Specialisation(BaseModel):
    """The body of POST /_/specialise (the gateway builds it from the CloudFunction it routes)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    function: str = Field(min_length=3, max_length=317, pattern=r"^[a-z0-9-]+/[-a-z0-9.]+$")
    runtime: str
    handler: str = Field(min_length=3, max_length=128)
    hash: str = Field(pattern=r"^[a-f0-9]{64}$")
    source: SourceRef
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10, gt=0, le=900, alias="timeoutSeconds")
    concurrency: int = Field(default=10, ge=1, le=1000)


def check_hash(spec: Specialisation) -> str | None:
    """Why the source is not the code `hash` names (None: it is). Archives are checked when fetched."""
    if spec.source.files is None:
        return None if spec.hash == (spec.source.archive.sha256 if spec.source.archive else None) else \
            "hash must be the archive's sha256"
    got = source_hash(spec.source.files)
    return None if got == spec.hash else f"the files hash to {got}, not {spec.hash}"


def write_files(code_dir: Path, files: dict[str, str]) -> None:
    root = code_dir.resolve()
    for name, text in files.items():
        target = (root / name).resolve()
        if not target.is_relative_to(root) or target == root:
            raise ValueError(f"file name {name!r} leaves the code directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


class GenericHost:
    """Serves health while generic; after one specialisation, everything is the specialised `Host`'s."""

    def __init__(self, runtime: str, code_dir: str, token: str) -> None:
        language(runtime)  # refuses an unknown runtime at start-up
        self.runtime, self.code_dir, self.token = runtime, Path(code_dir), token
        self.host: Host | None = None
        self.claimed = False  # set by the first authenticated, well-formed specialise, for good
        self._lock = asyncio.Lock()

    def app(self) -> web.Application:
        async def start() -> None:
            pass

        async def close() -> None:
            if self.host is not None:
                await self.host.close()

        app = service.application(start, close)
        app.router.add_get("/_/health", self.health)
        app.router.add_get("/_/live", self.live)
        app.router.add_get("/_/metrics", self.metrics_page)
        app.router.add_post("/_/specialise", self.specialise)
        app.router.add_route("*", "/_/{rest:.*}", self.not_found)
        app.router.add_route("*", "/{tail:.*}", self.invoke)
        return app

    async def health(self, request: web.Request) -> web.Response:
        if self.host is not None:
            return await self.host.health(request)
        if self.claimed:  # specialising now: not ready for anyone else
            return web.json_response({"ready": False, "generic": True, "runtime": self.runtime, "specialising": True},
                                     status=503)
        return web.json_response({"ready": True, "generic": True, "runtime": self.runtime, "hash": None, "error": None})

    async def live(self, _: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def metrics_page(self, request: web.Request) -> web.Response:
        if self.host is not None:
            return await self.host.metrics_page(request)
        return web.Response(text="", content_type="text/plain")

    async def not_found(self, request: web.Request) -> web.Response:
        return _error("NotFound", f"no endpoint {request.path}", 404)

    async def invoke(self, request: web.Request) -> web.Response:
        if self.host is None:
            return _error("NotSpecialised", "this warm pool instance serves no function yet", 503)
        return await self.host.invoke(request)

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and hmac.compare_digest(given.encode(), self.token.encode())

    async def specialise(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error("Unauthorized", "a valid pool token is required", 401)
        try:
            spec = Specialisation.model_validate_json(await request.read())
        except ValidationError as exc:
            return _error("BadRequest", str(exc)[:2000], 400)
        if spec.runtime != self.runtime:
            return _error("BadRequest", f"this instance runs {self.runtime}, not {spec.runtime}", 400)
        problem = check_hash(spec)
        if problem:
            return _error("BadRequest", problem, 400)
        async with self._lock:
            if self.claimed:
                return _error("AlreadySpecialised", "this instance was specialised already; it never changes function",
                              409)
            self.claimed = True
        started = time.monotonic()
        try:
            if spec.source.files is not None:
                write_files(self.code_dir, spec.source.files)
            else:
                archive = spec.source.archive
                assert archive is not None
                await asyncio.get_running_loop().run_in_executor(None, fetch.fetch, archive.url, archive.sha256,
                                                                 self.code_dir)
        except Exception as exc:  # noqa: BLE001 - a FetchError, a bad name: the caller falls back
            log.error("specialising for %s failed: %s", spec.function, exc)
            return _error("BuildFailed", str(exc)[:1024], 422)
        env = {k: v for k, v in os.environ.items()}
        env.update(spec.env)
        env.update(MPCLOUD_FUNCTION=spec.function, MPCLOUD_CODE_HASH=spec.hash)
        host = Host(self.runtime, str(self.code_dir), spec.handler, spec.timeout_seconds, spec.concurrency, env=env)
        await host.start()
        self.host = host
        load_ms = (time.monotonic() - started) * 1000
        if host.load_error:
            return web.json_response(protocol.error_body("InvalidSource", str(host.load_error.get("message", ""))),
                                     status=422)
        log.info("specialised for %s (%s) in %.0f ms", spec.function, spec.hash[:12], load_ms)
        return web.json_response({"ready": True, "hash": spec.hash, "function": spec.function, "loadMs": load_ms})


def _error(type_: str, message: str, status: int) -> web.Response:
    return web.json_response(protocol.error_body(type_, message), status=status)


def specialise_body(function: str, runtime: str, handler: str, code_hash: str, source: dict[str, Any],
                    env: dict[str, str], timeout: float, concurrency: int) -> dict[str, Any]:
    """The request body the gateway sends (kept beside the model that parses it)."""
    return {"function": function, "runtime": runtime, "handler": handler, "hash": code_hash, "source": source,
            "env": env, "timeoutSeconds": timeout, "concurrency": concurrency}
