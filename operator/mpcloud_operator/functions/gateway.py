"""The gateway (activator): routes function requests to instances and holds them while a function scales up.

`python -m mpcloud_operator.functions.gateway --port 8000 --demand-url URL [--kubeconfig PATH | --routes FILE]`

- `/<namespace>/<function>/<rest>` and each function's custom path → an instance's `/<rest>` (see `routes`),
  over one shared aiohttp ClientSession (keep-alive connections to instances).
- Balancing: the instance with the fewest requests in flight; at most `concurrency` per instance and
  `concurrency × min(instances, maxInstances)` per function. Excess requests wait in a bounded FIFO per
  function (`--max-queue`); a request that waited `--queue-timeout` seconds gets 503 JSON.
- Demand, pushed, not scraped (as Knative's activator): when a request has to wait, a POST to `--demand-url`
  at once, then every second while requests wait, and every 2 s for functions with traffic:
  `{"namespace", "name", "waiting", "inFlight", "requests", "coldStarts", "instances", "gateway"}` where
  `requests` and `coldStarts` are totals since this gateway started (the receiver takes differences, so a lost
  POST loses nothing) and `gateway` tells replicas apart.
- A connection refused by an instance (a pod gone before its EndpointSlice said so) is retried on another:
  the request was never sent. The instance is left out until the routes mention it again.
- Metrics on `/_/metrics`: `mpcloud_function_requests_total{namespace,function,code}`,
  `mpcloud_function_request_duration_seconds`, `mpcloud_function_cold_start_seconds` (how long requests
  waited for a first instance, `start="pool"` when a warm pool pod served it, `"pod"` when the function's own
  pod did), `mpcloud_function_inflight`, `mpcloud_gateway_queued`, and the demand POSTs.
- Warm pool (with `--pool-key-file` and a cluster route source): a request that finds a function with no
  instance also claims and specialises a generic pod of its runtime (`poolclaim`); whichever is ready first, that
  pod or the function's own, serves it. The pod is retired once the function has an instance of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import socket
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from yarl import URL

from mpcloud_operator.functions import protocol, service
from mpcloud_operator.functions.routes import (FunctionRoute, Key, KubeRouteSource, RouteSource, RouteTable,
                                               StaticRouteSource)

log = logging.getLogger("mpcloud.functions.gateway")

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "host", "content-length"})
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
COLD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)
CONNECT_ATTEMPTS = 3


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        labels = ["namespace", "function"]
        self.requests = Counter("mpcloud_function_requests_total", "Requests by status.", [*labels, "code"], registry=r)
        self.duration = Histogram("mpcloud_function_request_duration_seconds", "Time in the gateway, waiting included.",
                                  labels, buckets=DURATION_BUCKETS, registry=r)
        self.cold = Histogram("mpcloud_function_cold_start_seconds", "Time a request waited for a first instance, "
                              "by what served it (start: pool or pod).", [*labels, "start"], buckets=COLD_BUCKETS,
                              registry=r)
        self.claims = Counter("mpcloud_gateway_pool_claims_total", "Warm pool claims by outcome.", ["outcome"],
                              registry=r)
        self.inflight = Gauge("mpcloud_function_inflight", "Requests at instances now.", labels, registry=r)
        self.queued = Gauge("mpcloud_gateway_queued", "Requests waiting for an instance.", labels, registry=r)
        self.instances = Gauge("mpcloud_function_instances", "Ready instances the gateway routes to.", labels, registry=r)
        self.demand = Counter("mpcloud_gateway_demand_posts_total", "Demand POSTs by outcome.", ["outcome"], registry=r)


class NoCapacity(Exception):
    """No instance slot within the deadline, or the queue is full; the message says which."""


class FunctionState:
    """One function's instances, in-flight counts and waiting requests (touched only on the event loop)."""

    def __init__(self, route: FunctionRoute, metrics: Metrics) -> None:
        self.route = route
        self.key: Key = route.key
        self.inflight: dict[str, int] = {}  # instance → requests in flight
        self.usable: list[str] = []  # the instances taking requests (at most maxInstances)
        self.total = 0
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.requests = 0
        self.cold_starts = 0
        self.pool_starts = 0
        self.table_instances: list[str] = []  # from the route table (EndpointSlices)
        self.pool_instances: dict[str, str] = {}  # claimed warm pool pods serving this function: address -> pod
        self.claiming: asyncio.Task | None = None
        self.retired: set[str] = set()  # retired pool pods the EndpointSlices may list a moment longer
        self.reported: tuple[int, int] = (-1, -1)  # (requests, cold_starts) in the last POST
        self.last_demand = 0.0
        self.demanding: asyncio.Task | None = None
        ns, name = self.key
        self.m_inflight = metrics.inflight.labels(ns, name)
        self.m_queued = metrics.queued.labels(ns, name)
        self.m_instances = metrics.instances.labels(ns, name)
        self.m_duration = metrics.duration.labels(ns, name)
        self.m_cold = {start: metrics.cold.labels(ns, name, start) for start in ("pod", "pool")}
        self._codes: dict[int, Any] = {}
        self._requests_metric = metrics.requests

    def count(self, status: int, seconds: float) -> None:
        child = self._codes.get(status)
        if child is None:
            child = self._codes[status] = self._requests_metric.labels(*self.key, str(status))
        child.inc()
        self.m_duration.observe(seconds)

    @property
    def route(self) -> FunctionRoute:
        return self._route

    @route.setter
    def route(self, route: FunctionRoute) -> None:
        self._route = route
        self.client_timeout = aiohttp.ClientTimeout(total=route.timeout + 5)  # the host answers its own 504 first

    def set_instances(self, instances: list[str]) -> None:
        self.retired &= set(instances)  # forgotten once the slices forget it (an address may come back as a new pod)
        instances = [a for a in instances if a not in self.retired]
        self.table_instances = instances
        instances = list(dict.fromkeys([*instances, *self.pool_instances]))
        # An instance that left keeps its count while requests run there (a retiring pool pod waits for them).
        self.inflight = {**{a: n for a, n in self.inflight.items() if n > 0}, **{a: self.inflight.get(a, 0) for a in instances}}
        self.usable = instances[: self.route.max_instances]
        self.m_instances.set(len(self.usable))
        self._wake()

    def own_instances(self) -> list[str]:
        """The function's own ready pods (the route table's, without claimed pool pods the Service lists too)."""
        return [a for a in self.table_instances if a not in self.pool_instances]

    def add_pool_instance(self, address: str, pod: str) -> None:
        self.pool_instances[address] = pod
        self.set_instances(self.table_instances)

    def remove_pool_instance(self, address: str) -> None:
        self.pool_instances.pop(address, None)
        self.retired.add(address)
        self.set_instances(self.table_instances)

    def drop(self, instance: str) -> None:
        """Stop sending to an instance that refused a connection."""
        if instance in self.usable:
            self.usable = [a for a in self.usable if a != instance]
            self.m_instances.set(len(self.usable))

    def _pick(self) -> str | None:
        limit = self.route.concurrency
        best, best_load = None, limit
        for instance in self.usable:
            load = self.inflight.get(instance, 0)
            if load < best_load:
                best, best_load = instance, load
        if best is not None:
            self.inflight[best] = best_load + 1
            self.total += 1
            self.m_inflight.inc()
        return best

    def _wake(self) -> None:
        while self.waiters:
            if self.waiters[0].done():  # timed out meanwhile
                self.waiters.popleft()
                continue
            instance = self._pick()
            if instance is None:
                return
            self.waiters.popleft().set_result(instance)
        self.m_queued.set(0)

    def release(self, instance: str) -> None:
        if instance in self.inflight:
            self.inflight[instance] -= 1
        self.total -= 1
        self.m_inflight.dec()
        if self.waiters:
            self._wake()

    def try_acquire(self) -> str | None:
        return None if self.waiters else self._pick()  # FIFO: nobody overtakes a waiting request

    def enqueue(self, max_queue: int) -> asyncio.Future:
        """A place in the queue (its future gets an instance), or NoCapacity when the queue is full."""
        if len(self.waiters) >= max_queue:
            raise NoCapacity(f"{self.key[0]}/{self.key[1]} has {max_queue} requests waiting already")
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self.m_queued.set(len(self.waiters))
        return future

    async def wait(self, future: asyncio.Future, deadline: float) -> str:
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:  # the client went away: give back a slot it may have been handed
            if future.done() and not future.cancelled():
                self.release(future.result())
            raise
        except asyncio.TimeoutError:
            if future.done() and not future.cancelled():  # an instance came just as the deadline passed
                return future.result()
            future.cancel()
            what = "a free instance" if self.usable else "a ready instance (scaling from zero)"
            raise NoCapacity(f"{self.key[0]}/{self.key[1]} did not get {what} within the deadline") from None
        finally:
            if not future.done():
                future.cancel()
            self.m_queued.set(sum(1 for w in self.waiters if not w.done()))


class Gateway:
    def __init__(self, source: RouteSource, demand_url: str | None = None, queue_timeout: float = 30.0,
                 max_queue: int = 1000, gateway_id: str | None = None, pool_key: str | None = None) -> None:
        self.source, self.demand_url = source, demand_url
        self.queue_timeout, self.max_queue = queue_timeout, max_queue
        self.gateway_id = gateway_id or f"{socket.gethostname()}-{os.getpid()}"
        self.table = RouteTable()
        self.table.listeners.append(self._route_changed)
        self.metrics = Metrics()
        self.states: dict[Key, FunctionState] = {}
        self.session: aiohttp.ClientSession | None = None
        self._ticker: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        self.claimer: Any = None
        kube = getattr(source, "kube", None)
        if pool_key and kube is not None:
            from mpcloud_operator.functions.poolclaim import PoolClaimer

            if hasattr(source, "watch_pool_pods"):
                source.watch_pool_pods()
            self.claimer = PoolClaimer(kube, pool_key, self.gateway_id, source)
        self._retiring: set[str] = set()

    # ------------------------------------------------------------------ routes
    def _route_changed(self, key: Key) -> None:
        route = self.table.functions.get(key)
        state = self.states.get(key)
        if route is None:
            if state is not None:
                state.set_instances([])
            return
        if state is None:
            state = self.states[key] = FunctionState(route, self.metrics)
        state.route = route
        state.set_instances(self.table.instances(key))
        if state.pool_instances and state.own_instances():
            self._retire_pool_pods(state)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        # One pool of keep-alive connections to all instances; no total limit (per-function limits apply).
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=None)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",),
                                             cookie_jar=aiohttp.DummyCookieJar())  # a proxy keeps no cookies
        await self.source.start(self.table)
        self._ticker = asyncio.get_running_loop().create_task(self._demand_ticker())
        if self.claimer is not None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_claims())

    async def close(self) -> None:
        for task in (self._ticker, self._sweeper):
            if task is not None:
                task.cancel()
        await self.source.stop()
        if self.session is not None:
            await self.session.close()

    def app(self) -> web.Application:
        app = service.application(self.start, self.close)
        app.router.add_get("/_/health", self.health)
        app.router.add_get("/_/metrics", self.metrics_page)
        app.router.add_get("/_/routes", self.routes_page)
        app.router.add_route("*", "/{tail:.*}", self.proxy)
        return app

    async def health(self, _: web.Request) -> web.Response:
        ready = self.source.ready()
        return web.json_response({"ready": ready, "functions": len(self.table.functions)}, status=200 if ready else 503)

    async def metrics_page(self, _: web.Request) -> web.Response:
        return service.metrics_response(self.metrics.registry)

    async def routes_page(self, _: web.Request) -> web.Response:
        return web.json_response({"functions": [
            {"namespace": r.namespace, "name": r.name, "path": r.path, "concurrency": r.concurrency,
             "maxInstances": r.max_instances, "timeoutSeconds": r.timeout, "instances": self.table.instances(k)}
            for k, r in sorted(self.table.functions.items())]})

    # ------------------------------------------------------------------ demand
    def _demand_body(self, state: FunctionState) -> dict[str, Any]:
        return {"namespace": state.key[0], "name": state.key[1], "waiting": len(state.waiters),
                "inFlight": state.total, "requests": state.requests, "coldStarts": state.cold_starts,
                "poolStarts": state.pool_starts, "instances": len(state.usable), "gateway": self.gateway_id}

    def demand(self, state: FunctionState) -> None:
        """POST this function's demand now (unless a POST for it is on its way)."""
        if not self.demand_url or self.session is None or (state.demanding and not state.demanding.done()):
            return
        state.last_demand = time.monotonic()
        state.reported = (state.requests, state.cold_starts)
        state.demanding = asyncio.get_running_loop().create_task(self._post_demand(self._demand_body(state)))

    async def _post_demand(self, body: dict[str, Any]) -> None:
        assert self.session is not None and self.demand_url
        try:
            async with self.session.post(self.demand_url, json=body, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                await resp.read()
                self.metrics.demand.labels("ok" if resp.status < 300 else f"http_{resp.status}").inc()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.metrics.demand.labels("error").inc()
            log.warning("demand POST to %s failed: %r", self.demand_url, exc)

    async def _demand_ticker(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for state in self.states.values():
                since = now - state.last_demand
                if state.waiters and since >= 1.0:
                    self.demand(state)
                elif since >= 2.0 and (state.total or (state.requests, state.cold_starts) != state.reported):
                    self.demand(state)

    # ------------------------------------------------------------------ requests
    async def proxy(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        resolved = self.table.resolve(request.rel_url.raw_path)
        if resolved is None:
            return _error(404, "NotFound", f"no function routes {request.path}")
        route, rest = resolved
        state = self.states[route.key]
        state.requests += 1
        response = await self._forward(request, state, rest, started)
        state.count(response.status, time.monotonic() - started)
        return response

    async def _acquire(self, state: FunctionState, started: float) -> str:
        instance = state.try_acquire()
        if instance is not None:
            return instance
        cold = not state.usable
        place = state.enqueue(self.max_queue)
        self.demand(state)  # after enqueueing: the POST counts this request as waiting (the scale-up starts)
        if cold and self.claimer is not None and state.route.pool is not None and \
                (state.claiming is None or state.claiming.done()):
            state.claiming = asyncio.get_running_loop().create_task(self._claim_for(state))
        instance = await state.wait(place, started + self.queue_timeout)
        if cold:
            state.cold_starts += 1
            start = "pool" if instance in state.pool_instances else "pod"
            if start == "pool":
                state.pool_starts += 1
            state.m_cold[start].observe(time.monotonic() - started)
        return instance

    # ------------------------------------------------------------------ warm pool
    async def _claim_for(self, state: FunctionState) -> None:
        """Claim and specialise a pool pod for a function with no instance; on any failure the waiting requests
        keep waiting for the function's own pod (the cold path without a pool)."""
        route = state.route
        assert self.session is not None and route.pool is not None
        try:
            claimed = await self.claimer.claim(route)
        except Exception as exc:  # noqa: BLE001 - the API server refused or is away: the plain cold path
            self.metrics.claims.labels("error").inc()
            log.warning("claiming a %s pod for %s/%s failed: %s", route.pool.pool, *state.key, exc)
            return
        if claimed is None:
            self.metrics.claims.labels("empty").inc()
            return
        problem = await self.claimer.specialise(self.session, claimed, route)
        if problem is not None:
            self.metrics.claims.labels("specialise_failed").inc()
            log.warning("pool pod %s/%s did not specialise for %s: %s", claimed.namespace, claimed.pod, state.key[1],
                        problem)
            await self._retire(claimed.namespace, claimed.pod)
            return
        self.metrics.claims.labels("ok").inc()
        log.info("pool pod %s/%s serves %s/%s", claimed.namespace, claimed.pod, *state.key)
        state.add_pool_instance(claimed.address, claimed.pod)
        if state.own_instances():  # the function's own pod won the race
            self._retire_pool_pods(state)
            return
        try:  # off the request's path: the held requests are on their way to the pod already
            await self.claimer.join(claimed, route)
        except Exception as exc:  # noqa: BLE001 - this gateway routes to it anyway; the sweep retires it
            log.warning("labelling pool pod %s/%s for %s failed: %s", claimed.namespace, claimed.pod, state.key[1], exc)

    def _retire_pool_pods(self, state: FunctionState) -> None:
        """Stop routing to the function's pool pods now that it has its own; delete each once idle here."""
        for address, pod in list(state.pool_instances.items()):
            state.remove_pool_instance(address)
            asyncio.get_running_loop().create_task(self._retire_when_idle(state, address, pod))

    async def _retire_when_idle(self, state: FunctionState, address: str, pod: str) -> None:
        deadline = time.monotonic() + state.route.timeout + 5
        while state.inflight.get(address, 0) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await self._retire(state.key[0], pod)

    async def _retire(self, namespace: str, pod: str) -> None:
        if pod in self._retiring:
            return
        self._retiring.add(pod)
        try:
            await self.claimer.retire(namespace, pod)
            log.info("retired pool pod %s/%s", namespace, pod)
        except Exception as exc:  # noqa: BLE001 - the sweep tries again
            log.warning("retiring pool pod %s/%s failed: %s", namespace, pod, exc)
        finally:
            self._retiring.discard(pod)

    async def _sweep_claims(self, every: float = 10.0) -> None:
        """Claimed pods any gateway left behind (it stopped before retiring them)."""
        from mpcloud_operator.functions.poolclaim import sweep_decisions

        def own(namespace: str, name: str) -> list[str] | None:
            state = self.states.get((namespace, name))
            return None if state is None or (namespace, name) not in self.table.functions else state.own_instances()

        def busy(address: str) -> bool:
            return any(s.inflight.get(address, 0) for s in self.states.values())

        while True:
            await asyncio.sleep(every)
            if not self.source.ready():
                continue
            try:
                pods = await self.claimer.claimed_pods()
            except Exception as exc:  # noqa: BLE001
                log.warning("listing claimed pool pods failed: %s", exc)
                continue
            for namespace, pod, why in sweep_decisions(pods, own, busy, time.time()):
                log.info("retiring pool pod %s/%s: %s", namespace, pod, why)
                await self._retire(namespace, pod)

    async def _forward(self, request: web.Request, state: FunctionState, rest: str, started: float) -> web.Response:
        assert self.session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if "X-Request-Id" not in request.headers:
            headers["X-Request-Id"] = uuid.uuid4().hex
        headers["X-Forwarded-Host"] = request.host
        if request.remote:
            headers["X-Forwarded-For"] = request.remote
        query = request.rel_url.raw_query_string
        timeout = state.client_timeout
        for _ in range(CONNECT_ATTEMPTS):
            try:
                instance = await self._acquire(state, started)
            except NoCapacity as exc:
                return _error(503, "Unavailable", str(exc))
            url = URL(f"http://{instance}{rest}" + (f"?{query}" if query else ""), encoded=True)
            try:
                async with self.session.request(request.method, url, headers=headers, data=body or None,
                                                timeout=timeout, allow_redirects=False) as upstream:
                    data = await upstream.read()
                    out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                    return web.Response(status=upstream.status, headers=out, body=data)
            except aiohttp.ClientConnectorError as exc:
                log.warning("instance %s of %s/%s refused a connection: %s", instance, *state.key, exc)
                state.drop(instance)
            except asyncio.TimeoutError:
                return _error(504, "Timeout", f"the instance did not answer within {state.route.timeout + 5:g} s")
            except aiohttp.ClientError as exc:
                return _error(502, "UpstreamError", f"the instance failed: {exc}")
            finally:
                state.release(instance)
        return _error(502, "UpstreamError", f"no instance of {state.key[0]}/{state.key[1]} accepted a connection")


def _error(status: int, type_: str, message: str) -> web.Response:
    return web.json_response(protocol.error_body(type_, message), status=status)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mpcloud_operator.functions.gateway", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--demand-url", default=os.environ.get("MPCLOUD_DEMAND_URL"),
                   help="where to POST demand (the operator's demand endpoint); none: no POSTs")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--kubeconfig", help="watch this cluster (default: in-cluster ServiceAccount, else ~/.kube/config)")
    source.add_argument("--routes", help="a static routes JSON file instead of the cluster (reloaded on change)")
    p.add_argument("--queue-timeout", type=float, default=30.0, help="seconds a request may wait for an instance")
    p.add_argument("--max-queue", type=int, default=1000, help="requests that may wait per function")
    p.add_argument("--pool-key-file", default=os.environ.get("MPCLOUD_POOL_KEY_FILE"),
                   help="the warm pools' key (the operator's MPCLOUD_POOL_KEY); none: no warm pool claims")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    service.configure_logging()
    source: RouteSource = (StaticRouteSource(args.routes) if args.routes
                           else KubeRouteSource.from_kubeconfig(args.kubeconfig))
    pool_key = None
    if args.pool_key_file and os.path.isfile(args.pool_key_file):  # an optional Secret: absent means no pool
        with open(args.pool_key_file, encoding="utf-8") as f:
            pool_key = f.read().strip() or None
    gateway = Gateway(source, args.demand_url, args.queue_timeout, args.max_queue, pool_key=pool_key)
    log.info("gateway on %s:%d (routes from %s, demand to %s)", args.host, args.port,
             args.routes or args.kubeconfig or "the cluster", args.demand_url or "nowhere")
    service.serve(gateway.app(), args.host, args.port)


if __name__ == "__main__":
    main()
