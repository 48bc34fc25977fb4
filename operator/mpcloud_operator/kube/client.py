"""The one layer that talks to the API server: server-side apply, status, scale, Events, GET/LIST/DELETE/WATCH.

`KubeClient` wraps one kubernetes `ApiClient` (in-cluster config, else $KUBECONFIG / ~/.kube/config) and
speaks plain dicts: builders produce dicts, the API returns dicts, nothing is converted into the client's
typed models (which cost CPU and memory per object at thousands of apps). Paths come from `ResourcePaths`,
filled from the kind registry, so there are no discovery round-trips.

Apply uses `application/apply-patch+yaml`, `force=true` and a field manager per writer (`mpcloud` for the
reconciler, `mpcloud-scaler` for the scaling loop): each writer owns only the fields it sends. An apply
that changes nothing leaves the object's resourceVersion as it was (no etcd write).

Tests use `tests/fakes/kube.FakeClient`, which has the same methods and records every call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines
from prometheus_client import Counter, Histogram

from mpcloud_operator.config import FIELD_MANAGER
from mpcloud_operator.kube.events import EventRecorder

__all__ = ["ApiException", "KubeClient", "ResourcePaths", "error_message", "new_api_client"]


@dataclass
class ResourcePaths:
    """kind -> (API path prefix, plural, namespaced) for every kind mpcloud reads or writes."""

    kinds: dict[str, tuple[str, str, bool]] = field(default_factory=dict)

    def add(self, kind: str, api_version: str, plural: str, namespaced: bool = True) -> None:
        prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        self.kinds[kind] = (prefix, plural, namespaced)

    def collection(self, kind: str, namespace: str | None = None) -> str:
        prefix, plural, namespaced = self.kinds[kind]
        if namespaced and namespace:
            return f"{prefix}/namespaces/{namespace}/{plural}"
        return f"{prefix}/{plural}"

    def object(self, kind: str, namespace: str | None, name: str, subresource: str | None = None) -> str:
        path = f"{self.collection(kind, namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path


def new_api_client(pool_size: int = 32) -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    # Reconcile workers and the scaler share the client from several threads: a pooled connection each.
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def api_error(status: int, reason: str | None, body: Any = None) -> ApiException:
    """An ApiException carrying the response body (its `body=` keyword exists only from client 37 on)."""
    exc = ApiException(status=status, reason=reason)
    exc.body = body
    return exc


def error_message(exc: ApiException) -> str:
    """The API server's own message (e.g. a validation failure) rather than the HTTP reason."""
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


REQUESTS = Counter("mpcloud_kube_requests_total", "Requests to the API server, by method, resource and HTTP code.",
                   ["method", "resource", "code"])
REQUEST_SECONDS = Histogram("mpcloud_kube_request_duration_seconds", "API request latency, by method.", ["method"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


def resource_of(path: str) -> str:
    """`deployments`, `miniprogramapps/status`, `events`… from an API path (a bounded label set)."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]  # after /api/v1 or /apis/<group>/<version>
    if len(rest) >= 2 and rest[0] == "namespaces":
        rest = rest[2:] or ["namespaces"]
    if not rest:
        return "discovery"
    return f"{rest[0]}/{rest[2]}" if len(rest) >= 3 else rest[0]


class KubeClient:
    """Plain-dict API calls on one ApiClient; thread-safe (urllib3 pools connections)."""

    def __init__(self, api: client.ApiClient, paths: ResourcePaths, field_manager: str = FIELD_MANAGER,
                 component: str = "mpcloud-operator") -> None:
        self.api, self.paths, self.field_manager, self.component = api, paths, field_manager, component
        self.events = EventRecorder(self.request, component)

    # ------------------------------------------------------------------ transport
    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                query: list[tuple[str, str]] | None = None, timeout: float = 30) -> dict[str, Any]:
        method, url, headers, _, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"}, auth_settings=["BearerToken"],
        )
        # The REST client JSON-encodes bodies of `*json` content types itself; an apply patch goes as a JSON
        # string (valid YAML), which the client sends unchanged.
        payload = body if body is None or "json" in content_type else json.dumps(body)
        started, resource = time.monotonic(), resource_of(path)
        try:
            response = self.api.call_api(method, url, header_params=headers, body=payload, _request_timeout=timeout)
            response.read()
        except Exception:
            REQUESTS.labels(method, resource, "error").inc()
            raise
        REQUEST_SECONDS.labels(method).observe(time.monotonic() - started)
        REQUESTS.labels(method, resource, str(response.status)).inc()
        text = response.data.decode("utf-8") if response.data else ""
        if not 200 <= response.status <= 299:
            raise api_error(response.status, response.reason, text)
        return json.loads(text) if text else {}

    def stream(self, path: str, query: list[tuple[str, str]], timeout: float) -> Iterator[dict[str, Any]]:
        """A WATCH request: yields each event as a dict ({"type", "object"}) until the server closes it."""
        method, url, headers, _, _ = self.api.param_serialize(
            method="GET", resource_path=path, query_params=query, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, header_params=headers, _request_timeout=timeout)
        raw = response.response  # the urllib3 response, read as a stream
        try:
            if response.status != 200:
                raise api_error(response.status, response.reason, raw.read())
            for line in iter_resp_lines(raw):
                if line:
                    yield json.loads(line)
        finally:
            raw.release_conn()

    # ------------------------------------------------------------------ objects
    def apply(self, obj: dict[str, Any], manager: str | None = None) -> dict[str, Any]:
        """Server-side apply `obj` (apiVersion, kind, metadata.name[/namespace]); return the live object."""
        meta = obj["metadata"]
        return self.request("PATCH", self.paths.object(obj["kind"], meta.get("namespace"), meta["name"]), body=obj,
                            content_type="application/apply-patch+yaml",
                            query=[("fieldManager", manager or self.field_manager), ("force", "true")])

    def apply_status(self, owner: dict[str, Any], status: dict[str, Any], manager: str | None = None) -> dict[str, Any]:
        """Server-side apply `status` on the status subresource as `manager`.

        Several writers share an object's status (the reconciler: its conditions and counts; the scaler:
        ScalingDegraded, desiredReplicas, forecast). Conditions are a list-map keyed by type, so each writer
        owns only its own entries and never drops another's — which a merge patch of the whole list would.
        Each writer must send every field it owns on every write: what it stops sending is removed.
        """
        meta = owner["metadata"]
        body = {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "status": status}
        return self.request("PATCH", self.paths.object(owner["kind"], meta["namespace"], meta["name"], "status"),
                            body=body, content_type="application/apply-patch+yaml",
                            query=[("fieldManager", manager or self.field_manager), ("force", "true")])

    def apply_scale(self, kind: str, namespace: str, name: str, replicas: int, manager: str) -> dict[str, Any]:
        """Server-side apply spec.replicas through the scale subresource as `manager`."""
        body = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": int(replicas)}}
        return self.request("PATCH", self.paths.object(kind, namespace, name, "scale"), body=body,
                            content_type="application/apply-patch+yaml",
                            query=[("fieldManager", manager), ("force", "true")])

    def patch(self, kind: str, namespace: str | None, name: str, body: dict[str, Any], manager: str) -> dict[str, Any]:
        """JSON merge patch (null deletes a field) as `manager`; for a change to an object another writer owns
        (a pipeline's deploy task setting an app's image, as `kubectl set image` would): 404 if it is gone."""
        return self.request("PATCH", self.paths.object(kind, namespace, name), body=body,
                            content_type="application/merge-patch+json", query=[("fieldManager", manager)])

    def create(self, obj: dict[str, Any], manager: str | None = None) -> dict[str, Any] | None:
        """POST `obj` as `manager`; None when an object of its name already exists (the API server's 409), which
        makes a deterministic name a dedupe key (runs a trigger starts)."""
        meta = obj["metadata"]
        try:
            return self.request("POST", self.paths.collection(obj["kind"], meta.get("namespace")), body=obj,
                                query=[("fieldManager", manager or self.field_manager)])
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", self.paths.object(kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, query: list[tuple[str, str]] | None = None,
             ) -> dict[str, Any]:
        return self.request("GET", self.paths.collection(kind, namespace), query=query)

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete (background propagation); False when it was already gone."""
        try:
            self.request("DELETE", self.paths.object(kind, namespace, name), body={"propagationPolicy": "Background"})
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def post_event(self, involved: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        """Record a core/v1 Event on `involved`, asynchronously (kopf ≥ 1.45 posts none by default)."""
        self.events.post(involved, reason, message, type_)
