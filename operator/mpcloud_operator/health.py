"""/healthz and /readyz for the operator process.

/healthz is 200 while the process is healthy: a standby waiting for the Lease, or a leader whose kopf
event loop has ticked within the last 30 s (a wedged loop fails the liveness probe and gets restarted).
/readyz is 200 only on the leader once kopf has started.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HealthState:
    def __init__(self) -> None:
        self.leader = False
        self.ready = False
        self.heartbeat = time.monotonic()

    def healthy(self) -> bool:
        return not self.leader or time.monotonic() - self.heartbeat < 30

    async def beat(self) -> None:
        """Run inside kopf's event loop: proves the loop is responsive."""
        while True:
            self.heartbeat = time.monotonic()
            await asyncio.sleep(5)


def send_json(handler: BaseHTTPRequestHandler, code: int, body: dict) -> None:
    """Answer an http.server request with `body` as JSON (the operator's /demand and webhook endpoints)."""
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def serve(state: HealthState, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.startswith("/healthz"):
                ok = state.healthy()
            elif self.path.startswith("/readyz"):
                ok = state.leader and state.ready
            else:
                self.send_error(404)
                return
            body = b"ok\n" if ok else b"not ok\n"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # probes every few seconds: keep logs quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
