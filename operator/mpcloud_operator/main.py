"""The operator process: leader Lease, kopf settings and handlers, /healthz, /readyz and /metrics.

`mpcloud operator run` calls `run()`: serve probes and metrics, wait for the Lease (see leader.py), then
run kopf until SIGTERM/SIGINT (kopf installs those handlers and stops gracefully), then release the Lease.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os

import kopf
from prometheus_client import start_http_server

from mpcloud_operator import health, metrics
from mpcloud_operator.config import GROUP, OperatorConfig
from mpcloud_operator.kube.client import api_client
from mpcloud_operator.leader import LeaderElector

log = logging.getLogger("mpcloud")
HANDLER_MODULES = ("mpcloud_operator.handlers",)
STATE = health.HealthState()
CONFIG: OperatorConfig | None = None  # set by run(); read by the startup handler


def configure(settings: kopf.OperatorSettings) -> None:
    # Keep kopf's own bookkeeping under our API group, not kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.networking.request_timeout = 30
    # Sync handlers run on this pool; each reconcile is a few sequential API calls (latency-bound).
    settings.execution.max_workers = 16
    # kopf keeps one worker task (with its queue and body) per object with pending events; at thousands of
    # apps × 6 watched kinds that is most of the memory. MPCLOUD_WORKER_LIMIT=100 halved RSS at 1,000 apps at
    # the same throughput (bench/reconcile.py), but an idle worker holds its slot for idle_timeout, which
    # delayed drift repair by up to a minute in the tests: so it is off by default, a knob for big fleets.
    # No kopf indexes are used, so a limit cannot deadlock.
    settings.queueing.worker_limit = (CONFIG.worker_limit if CONFIG else 0) or None


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: object) -> None:
    configure(settings)
    asyncio.get_running_loop().create_task(STATE.beat())
    _start_scaling(CONFIG)
    STATE.ready = True


def _start_scaling(config: OperatorConfig | None) -> None:
    """One operator-level scaling thread (leader only: kopf starts after the Lease is held)."""
    global SCALING
    if config is None or not config.prometheus_url:
        log.info("scaling loop off: no Prometheus URL (MPCLOUD_PROMETHEUS_URL / --prometheus-url)")
        return
    from mpcloud_operator.scaling.loop import ScalingLoop

    if SCALING is None:
        SCALING = ScalingLoop(api_client(), config.prometheus_url, namespaces=config.namespaces).start()


SCALING = None


@kopf.on.cleanup()
async def _cleanup(**_: object) -> None:
    if SCALING is not None:
        SCALING.stop()


def run(config: OperatorConfig) -> None:
    global CONFIG
    CONFIG = config
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kopf logs every handler success per event (children included); mpcloud logs what it did itself.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    for module in HANDLER_MODULES:
        importlib.import_module(module)  # registers the module's kopf handlers
    health_server = health.serve(STATE, config.bind_address, config.health_port)
    metrics_server, _ = start_http_server(config.metrics_port, addr=config.bind_address)
    log.info("probes on :%d (/healthz, /readyz), metrics on :%d/metrics", config.health_port, config.metrics_port)

    elector = LeaderElector(api_client(), config.lease_name, config.lease_namespace)
    elector.acquire()
    STATE.leader = True
    metrics.LEADER.set(1)

    def lost() -> None:
        # Another process may already be acting: stop at once rather than finish in-flight work.
        log.critical("lost the leader lease; exiting")
        os._exit(1)

    elector.keep_renewing(on_lost=lost)
    try:
        kopf.run(
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=True,  # no kopf peering: the Lease above is the only arbiter
        )
    finally:
        elector.release()
        metrics.LEADER.set(0)
        health_server.shutdown()
        metrics_server.shutdown()
        log.info("operator stopped")
