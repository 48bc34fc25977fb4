"""What the runtime host and the gateway share as aiohttp services: start/stop hooks, metrics page, logging."""

from __future__ import annotations

import logging
import sys
from typing import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mpcloud_operator.functions import protocol


def application(start: Callable[[], Awaitable[None]], close: Callable[[], Awaitable[None]]) -> web.Application:
    """An app (request bodies up to protocol.MAX_BODY) that runs `start` before serving and `close` after."""
    app = web.Application(client_max_size=protocol.MAX_BODY)

    async def on_startup(_: web.Application) -> None:
        await start()

    async def on_cleanup(_: web.Application) -> None:
        await close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def metrics_response(registry: CollectorRegistry) -> web.Response:
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def configure_logging() -> None:
    """One format for both programs' logs on stderr (the pod's log)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def serve(app: web.Application, host: str, port: int) -> None:
    """Run until SIGTERM/SIGINT; the app's cleanup hooks stop workers and sessions."""
    web.run_app(app, host=host, port=port, print=None, access_log=None)
