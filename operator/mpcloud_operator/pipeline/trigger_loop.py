"""The triggers' loop in the leader: the cron Scheduler's tick and the Git webhook listener (stop() ends both).

Registered on the Pipeline kind (`Kind.loops`), so it runs only in the process that holds the Lease, as the
scaling loops do; a standby neither schedules nor answers webhooks (the Service routes to the ready leader).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

from mpcloud_operator.pipeline import webhook
from mpcloud_operator.pipeline.cron import Scheduler

log = logging.getLogger("mpcloud.pipeline.triggers")


class TriggerLoop:
    def __init__(self, runtime: Any, tick_seconds: float = 1.0) -> None:
        self.runtime, self.tick_seconds = runtime, tick_seconds
        self.scheduler = Scheduler(runtime)
        self.webhooks = webhook.Webhooks(runtime)
        self.server: Any = None
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.scheduler.tick(datetime.now(timezone.utc))
            except Exception:  # noqa: BLE001 - keep scheduling; the next tick retries
                log.exception("pipeline schedule tick failed")

    def _listen(self) -> None:
        config = self.runtime.config
        self.server = webhook.listen(self.webhooks, config.bind_address, config.webhook_port, self._stop)

    def start(self) -> TriggerLoop:
        threading.Thread(target=self.run, name="mpcloud-pipeline-cron", daemon=True).start()
        threading.Thread(target=self._listen, name="mpcloud-webhook-listen", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def pipeline_triggers(runtime: Any) -> TriggerLoop:
    """Kind.loops entry of the Pipeline kind."""
    return runtime.service("pipeline-triggers", lambda: TriggerLoop(runtime)).start()
