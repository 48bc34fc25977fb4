"""The gateway's routing table and where it comes from: the cluster (CloudFunctions + EndpointSlices) or a file.

`RouteTable` holds, per function (`namespace/name`), its route settings (custom path, concurrency, max
instances, timeout) and its ready instances (`host:port`, merged from all of its EndpointSlices), and resolves
a request path: a custom `spec.triggers.http.path` (longest prefix first), else `/<namespace>/<name>/<rest>`.
Listeners hear which function changed. Everything here but the two sources' loops is pure.

- `KubeRouteSource` lists and watches CloudFunctions (mpcloud.io/v1alpha1) and EndpointSlices labelled
  `mpcloud.io/function` in all namespaces, each in its own thread through the operator's `KubeClient`
  (plain dicts, no kopf). Every (re)connect relists and replaces that half of the table, so a missed event
  heals at the next watch cycle (the server ends each watch after `WATCH_SECONDS`); errors back off 1 → 30 s.
- `StaticRouteSource` reads a JSON file (`StaticRoutes`) and reloads it when it changes: tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger("mpcloud.functions.routes")

Key = tuple[str, str]  # (namespace, name)
FUNCTION_LABEL = "mpcloud.io/function"
DEFAULT_CONCURRENCY, DEFAULT_MAX_INSTANCES, DEFAULT_TIMEOUT = 10, 10, 10.0
WATCH_SECONDS = 300


@dataclass(frozen=True)
class PoolTarget:
    """What a warm pool pod needs to become this function (`poolclaim`): set only for a function that wants the
    pool, can use it, and whose current code an instance of its own has loaded (status.servingHash), so a pool
    pod never runs code the operator has not seen load."""

    pool: str  # the pool's name in the function's namespace
    runtime: str
    uid: str  # the CloudFunction's, for the claimed pod's owner reference
    app: str
    handler: str
    code_hash: str
    source: str  # JSON: {"files": {...}} or {"archive": {"url", "sha256"}}
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FunctionRoute:
    namespace: str
    name: str
    path: str | None = None  # a custom path besides /<namespace>/<name>
    concurrency: int = DEFAULT_CONCURRENCY
    max_instances: int = DEFAULT_MAX_INSTANCES
    timeout: float = DEFAULT_TIMEOUT
    pool: PoolTarget | None = None

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


def _normal_path(path: str | None) -> str | None:
    if not path:
        return None
    path = "/" + path.strip("/")
    return path if path != "/" else None


class RouteTable:
    def __init__(self) -> None:
        self.functions: dict[Key, FunctionRoute] = {}
        self.slices: dict[Key, dict[str, tuple[str, ...]]] = {}
        self.custom: list[tuple[str, Key]] = []  # (path, function), longest path first
        self.listeners: list[Callable[[Key], None]] = []

    # ------------------------------------------------------------------ reading
    def instances(self, key: Key) -> list[str]:
        """Ready instances of a function, deduplicated over its slices, in a stable order."""
        return sorted({a for addrs in self.slices.get(key, {}).values() for a in addrs})

    def resolve(self, path: str) -> tuple[FunctionRoute, str] | None:
        """(function, path to send to the instance) for a request path, or None."""
        for prefix, key in self.custom:
            if path == prefix or path.startswith(prefix + "/"):
                return self.functions[key], path[len(prefix):] or "/"
        parts = path.split("/", 3)  # "", namespace, name, rest
        if len(parts) >= 3:
            route = self.functions.get((parts[1], parts[2]))
            if route is not None:
                return route, "/" + (parts[3] if len(parts) == 4 else "")
        return None

    # ------------------------------------------------------------------ writing
    def _changed(self, keys: set[Key]) -> None:
        for key in keys:
            for listener in self.listeners:
                listener(key)

    def _index(self) -> None:
        claimed: dict[str, Key] = {}
        for key in sorted(self.functions):  # two functions claiming one path: the first by namespace/name wins
            path = _normal_path(self.functions[key].path)
            if path is None:
                continue
            if path in claimed:
                log.warning("path %s of %s/%s is already %s/%s's", path, *key, *claimed[path])
                continue
            claimed[path] = key
        self.custom = sorted(claimed.items(), key=lambda item: -len(item[0]))

    def set_function(self, route: FunctionRoute) -> None:
        if self.functions.get(route.key) != route:
            self.functions[route.key] = route
            self._index()
            self._changed({route.key})

    def remove_function(self, key: Key) -> None:
        if self.functions.pop(key, None) is not None:
            self._index()
            self._changed({key})

    def replace_functions(self, routes: list[FunctionRoute]) -> None:
        new = {r.key: r for r in routes}
        changed = {k for k in new.keys() | self.functions.keys() if new.get(k) != self.functions.get(k)}
        self.functions = new
        self._index()
        self._changed(changed)

    def set_slice(self, key: Key, slice_name: str, addresses: tuple[str, ...]) -> None:
        before = self.instances(key)
        self.slices.setdefault(key, {})[slice_name] = addresses
        if self.instances(key) != before:
            self._changed({key})

    def remove_slice(self, key: Key, slice_name: str) -> None:
        before = self.instances(key)
        self.slices.get(key, {}).pop(slice_name, None)
        if not self.slices.get(key):
            self.slices.pop(key, None)
        if self.instances(key) != before:
            self._changed({key})

    def replace_slices(self, slices: dict[Key, dict[str, tuple[str, ...]]]) -> None:
        keys = slices.keys() | self.slices.keys()
        before = {k: self.instances(k) for k in keys}
        self.slices = {k: dict(v) for k, v in slices.items() if v}
        self._changed({k for k in keys if self.instances(k) != before[k]})


# ---------------------------------------------------------------------- the cluster's objects (pure)
def route_of(obj: dict[str, Any]) -> FunctionRoute:
    """A CloudFunction object → its route (defaults for what the spec leaves out)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    scaling = spec.get("scaling") or {}
    http = (spec.get("triggers") or {}).get("http") or {}
    return FunctionRoute(
        namespace=meta["namespace"], name=meta["name"], path=_normal_path(http.get("path")),
        concurrency=max(1, int(scaling.get("concurrency") or DEFAULT_CONCURRENCY)),
        max_instances=max(1, int(scaling.get("maxInstances") or DEFAULT_MAX_INSTANCES)),
        timeout=float(spec.get("timeoutSeconds") or DEFAULT_TIMEOUT), pool=pool_target_of(obj))


def pool_target_of(obj: dict[str, Any]) -> PoolTarget | None:
    """The function as a warm pool pod would serve it, or None (no pool for it, or its code is not proven)."""
    serving = (obj.get("status") or {}).get("servingHash")
    if not serving or not (obj.get("metadata") or {}).get("uid"):
        return None
    from mpcloud_operator.cloudfunction.model import CloudFunction
    from mpcloud_operator.cloudfunction.resources import source_hash
    from mpcloud_operator.cloudfunction.warmpool import pool_key, wants_pool

    try:
        fn = CloudFunction.model_validate(obj)
    except ValidationError:
        return None
    if not wants_pool(fn):
        return None
    source = fn.spec.source
    if source.inline is not None:
        code_hash, ref = source_hash(dict(source.inline.files)), {"files": dict(source.inline.files)}
    elif source.archive is not None:
        code_hash, ref = source.archive.sha256, {"archive": {"url": source.archive.url, "sha256": source.archive.sha256}}
    else:
        return None
    if code_hash != serving:
        return None
    return PoolTarget(pool=pool_key(fn).name, runtime=fn.spec.runtime, uid=fn.metadata.uid or "", app=fn.spec.app,
                      handler=fn.spec.handler, code_hash=code_hash, source=json.dumps(ref, sort_keys=True),
                      env=tuple((e.name, e.value or "") for e in fn.spec.env))


def slice_of(obj: dict[str, Any]) -> tuple[Key, str, tuple[str, ...]] | None:
    """An EndpointSlice → (function, slice name, ready `host:port`s), None when it belongs to no function.
    An endpoint is ready unless `conditions.ready` is false (unset means ready, as the API documents)."""
    meta = obj.get("metadata") or {}
    function = (meta.get("labels") or {}).get(FUNCTION_LABEL)
    if not function:
        return None
    port = next((p.get("port") for p in obj.get("ports") or [] if p.get("name") == "http"), None)
    addresses: list[str] = []
    if port:
        for endpoint in obj.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False or not endpoint.get("addresses"):
                continue
            host = endpoint["addresses"][0]
            addresses.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return (meta["namespace"], function), meta["name"], tuple(sorted(addresses))


class RouteSource(Protocol):
    async def start(self, table: RouteTable) -> None: ...
    async def stop(self) -> None: ...
    def ready(self) -> bool: ...  # the table is complete (the first lists arrived)


# ---------------------------------------------------------------------- a file (tests, benchmarks)
class StaticFunction(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    namespace: str
    name: str
    path: str | None = None
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1)
    max_instances: int = Field(DEFAULT_MAX_INSTANCES, ge=1, alias="maxInstances")
    timeout_seconds: float = Field(DEFAULT_TIMEOUT, gt=0, alias="timeoutSeconds")
    endpoints: list[str] = []


class StaticRoutes(BaseModel):
    """`{"functions": [{"namespace", "name", "path"?, "concurrency"?, "maxInstances"?, "timeoutSeconds"?,
    "endpoints": ["127.0.0.1:8081"]}]}`"""

    model_config = ConfigDict(extra="forbid")
    functions: list[StaticFunction] = []

    def apply(self, table: RouteTable) -> None:
        table.replace_functions([FunctionRoute(f.namespace, f.name, _normal_path(f.path), f.concurrency,
                                               f.max_instances, f.timeout_seconds) for f in self.functions])
        table.replace_slices({(f.namespace, f.name): {"static": tuple(sorted(f.endpoints))}
                              for f in self.functions if f.endpoints})


class StaticRouteSource:
    """Routes from a JSON file, reloaded when its mtime or size changes (write it atomically: os.replace).
    A file that does not parse is reported and ignored: the routes in force stay."""

    def __init__(self, path: str | os.PathLike[str], poll_seconds: float = 0.05) -> None:
        self.path, self.poll_seconds = Path(path), poll_seconds
        self._task: asyncio.Task | None = None
        self._seen: tuple[int, int] | None = None

    def load(self, table: RouteTable) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return
        if self._seen == (stat.st_mtime_ns, stat.st_size):
            return
        self._seen = (stat.st_mtime_ns, stat.st_size)
        try:
            routes = StaticRoutes.model_validate(json.loads(self.path.read_text()))
        except (ValueError, ValidationError) as exc:
            log.error("routes file %s is invalid, keeping the routes in force: %s", self.path, exc)
            return
        routes.apply(table)

    async def start(self, table: RouteTable) -> None:
        self.load(table)

        async def poll() -> None:
            while True:
                await asyncio.sleep(self.poll_seconds)
                self.load(table)

        self._task = asyncio.get_running_loop().create_task(poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def ready(self) -> bool:
        return True


# ---------------------------------------------------------------------- the cluster
class KubeRouteSource:
    """CloudFunctions and EndpointSlices from the API server, one list+watch thread each."""

    def __init__(self, kube: Any) -> None:  # a mpcloud_operator.kube.client.KubeClient
        self.kube = kube
        kube.paths.add("CloudFunction", "mpcloud.io/v1alpha1", "cloudfunctions")
        kube.paths.add("EndpointSlice", "discovery.k8s.io/v1", "endpointslices")
        self._stop = threading.Event()
        self.synced = {"CloudFunction": threading.Event(), "EndpointSlice": threading.Event()}
        self.pool_pods: dict[tuple[str, str], dict[str, Any]] | None = None  # see watch_pool_pods

    def watch_pool_pods(self) -> None:
        """Also keep the warm pools' pods (label mpcloud.io/pool), so a claim reads them without a LIST on the
        request's path. Call before start(); the gateway does when it has a pool key (it needs pods list/watch)."""
        self.kube.paths.add("Pod", "v1", "pods")
        self.pool_pods = {}
        self.pool_synced = threading.Event()

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None) -> "KubeRouteSource":
        """In-cluster (ServiceAccount) when there is no kubeconfig, else that file."""
        from kubernetes import client, config

        from mpcloud_operator.kube.client import KubeClient, ResourcePaths

        configuration = client.Configuration()
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
        return cls(KubeClient(client.ApiClient(configuration), ResourcePaths(), component="mpcloud-gateway"))

    async def start(self, table: RouteTable) -> None:
        loop = asyncio.get_running_loop()

        def on_functions(kind: str, items: list[dict[str, Any]] | None, event: dict[str, Any] | None) -> None:
            if items is not None:
                table.replace_functions([route_of(o) for o in items])
            elif event["type"] == "DELETED":
                meta = event["object"]["metadata"]
                table.remove_function((meta["namespace"], meta["name"]))
            else:
                table.set_function(route_of(event["object"]))

        def on_slices(kind: str, items: list[dict[str, Any]] | None, event: dict[str, Any] | None) -> None:
            if items is not None:
                slices: dict[Key, dict[str, tuple[str, ...]]] = {}
                for parsed in filter(None, map(slice_of, items)):
                    slices.setdefault(parsed[0], {})[parsed[1]] = parsed[2]
                table.replace_slices(slices)
                return
            parsed = slice_of(event["object"])
            if parsed is not None:
                if event["type"] == "DELETED":
                    table.remove_slice(parsed[0], parsed[1])
                else:
                    table.set_slice(*parsed)

        watches = [("CloudFunction", on_functions, []), ("EndpointSlice", on_slices, [("labelSelector", FUNCTION_LABEL)])]
        if self.pool_pods is not None:
            from mpcloud_operator.cloudfunction.warmpool import POOL_LABEL

            pods = self.pool_pods

            def on_pods(kind: str, items: list[dict[str, Any]] | None, event: dict[str, Any] | None) -> None:
                if items is not None:
                    pods.clear()
                    pods.update({(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in items})
                    self.pool_synced.set()
                    return
                meta = event["object"]["metadata"]
                if event["type"] == "DELETED":
                    pods.pop((meta["namespace"], meta["name"]), None)
                else:
                    pods[(meta["namespace"], meta["name"])] = event["object"]

            watches.append(("Pod", on_pods, [("labelSelector", POOL_LABEL)]))
        for kind, handler, query in watches:
            threading.Thread(target=self._run, args=(kind, query, handler, loop), name=f"watch-{kind}",
                             daemon=True).start()

    def _run(self, kind: str, query: list[tuple[str, str]], handler: Callable[..., None],
             loop: asyncio.AbstractEventLoop) -> None:
        backoff = 1.0
        path = self.kube.paths.collection(kind)
        while not self._stop.is_set():
            try:
                listed = self.kube.list(kind, None, query=query)
                version = listed["metadata"]["resourceVersion"]
                loop.call_soon_threadsafe(handler, kind, listed.get("items") or [], None)
                if kind in self.synced:
                    self.synced[kind].set()
                backoff = 1.0
                watch = query + [("watch", "true"), ("allowWatchBookmarks", "true"),
                                 ("timeoutSeconds", str(WATCH_SECONDS))]
                for event in self.kube.stream(path, watch + [("resourceVersion", version)], timeout=WATCH_SECONDS + 30):
                    if self._stop.is_set():
                        return
                    if event.get("type") == "ERROR":  # 410 Gone and friends: relist
                        log.info("watch of %s ended: %s", kind, (event.get("object") or {}).get("message"))
                        break
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        loop.call_soon_threadsafe(handler, kind, None, event)
            except Exception as exc:  # noqa: BLE001 - any failure: back off, relist, carry on
                if self._stop.is_set():
                    return
                log.warning("list/watch of %s failed (retrying in %.0f s): %s", kind, backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    async def stop(self) -> None:
        self._stop.set()

    def ready(self) -> bool:
        return all(event.is_set() for event in self.synced.values())
