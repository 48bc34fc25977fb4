"""The operator process: leader Lease, kopf settings and handlers, /healthz, /readyz and /metrics.

`mpcloud operator run` calls `run()`: serve probes and metrics, wait for the Lease (see leader.py), then
run kopf until SIGTERM/SIGINT (kopf installs those handlers and stops gracefully), then release the Lease.
A SIGTERM that arrives before kopf's handler is in place (while waiting for the Lease, or in the moment between
kopf's startup activity, which makes /readyz answer 200, and its signal set-up) stops the process the same way:
exit 0, Lease released, instead of dying by the signal with the Lease held until it expires.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal

import kopf
from prometheus_client import start_http_server

from mpcloud_operator import health, metrics
from mpcloud_operator.config import GROUP, OperatorConfig
from mpcloud_operator.kinds import KINDS, WATCHED_REFERENCES, paths
from mpcloud_operator.kube.client import KubeClient, new_api_client
from mpcloud_operator.leader import LeaderElector
from mpcloud_operator.reconcile.controller import Controller
from mpcloud_operator.runtime import Runtime

log = logging.getLogger("mpcloud")
HANDLER_MODULES = ("mpcloud_operator.handlers",)
STATE = health.HealthState()


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    # Keep kopf's own bookkeeping under our API group, not kopf.zalando.org (event handlers store none).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.networking.request_timeout = 30
    # kopf keeps one worker task per object with pending events; its handlers only enqueue, so the tasks
    # are short-lived. The limit bounds them in a burst (no kopf indexes are used, so it cannot deadlock).
    settings.queueing.worker_limit = config.worker_limit or None


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: object) -> None:
    runtime: Runtime = memo.runtime
    configure(settings, runtime.config)
    asyncio.get_running_loop().create_task(STATE.beat())
    memo.controller = Controller(runtime, workers=runtime.config.workers).start()
    for kind in KINDS:
        for make_loop in kind.loops:  # leader only: kopf starts after the Lease is held
            loop = make_loop(runtime)
            if loop is not None:
                runtime.loops.append(loop)
    STATE.ready = True


@kopf.on.cleanup()
async def _cleanup(memo: kopf.Memo, **_: object) -> None:
    for loop in memo.runtime.loops:
        loop.stop()
    if memo.get("controller"):
        memo.controller.stop()


def _stop_before_kopf(signum: int, _frame: object) -> None:
    log.info("signal %d before kopf's handlers: stopping", signum)
    raise SystemExit(0)  # unwinds through run()'s finally: the Lease is released


def run(config: OperatorConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _stop_before_kopf)  # kopf's loop.add_signal_handler replaces it once it runs
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    for module in HANDLER_MODULES:
        importlib.import_module(module)  # registers the module's kopf handlers
    health_server = health.serve(STATE, config.bind_address, config.health_port)
    metrics_server, _ = start_http_server(config.metrics_port, addr=config.bind_address)
    log.info("probes on :%d (/healthz, /readyz), metrics on :%d/metrics", config.health_port, config.metrics_port)

    api = new_api_client()
    runtime = Runtime.for_kinds(KubeClient(api, paths()), KINDS, config=config,
                                watched_references=WATCHED_REFERENCES)
    admission = None
    if config.admission_port:  # every replica serves admission: it must not wait for (or stop with) the Lease
        from mpcloud_operator.riskpolicy.admission import AdmissionServer

        admission = AdmissionServer(KubeClient(api, paths()), config, is_leader=lambda: STATE.leader).start()
    elector = LeaderElector(api, config.lease_name, config.lease_namespace)

    def lost() -> None:
        # Another process may already be acting: stop at once rather than finish in-flight work.
        log.critical("lost the leader lease; exiting")
        os._exit(1)

    try:  # from the first acquire attempt: a SIGTERM at any point after it releases what was acquired
        elector.acquire()
        STATE.leader = True
        metrics.LEADER.set(1)
        elector.keep_renewing(on_lost=lost)
        kopf.run(
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=True,  # no kopf peering: the Lease above is the only arbiter
            memo=kopf.Memo(runtime=runtime),
        )
    finally:
        elector.release()
        if admission is not None:
            admission.stop()
        metrics.LEADER.set(0)
        health_server.shutdown()
        metrics_server.shutdown()
        log.info("operator stopped")
