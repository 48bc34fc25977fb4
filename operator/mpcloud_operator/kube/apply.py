"""Server-side apply, status patches and Events: the one layer that writes to the API server.

Every kind's handlers build desired objects with pure functions and hand them here. Apply uses
`application/apply-patch+yaml` with field manager `mpcloud` and `force=true` (mpcloud owns the fields it
sends; anything else on the object is left to whoever set it). An apply that changes nothing leaves the
object's resourceVersion as it was, which is what makes a no-op resync write-free.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from mpcloud_operator.config import FIELD_MANAGER

# kind -> (API path prefix, plural). Only the kinds mpcloud manages; no discovery round-trips.
_KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "MiniProgramApp": ("/apis/mpcloud.io/v1alpha1", "miniprogramapps"),
}


def object_path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural = _KINDS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def _call(api: client.ApiClient, method: str, path: str, body: Any = None, content_type: str = "application/json",
          query: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    method, url, headers, _, _ = api.param_serialize(
        method=method, resource_path=path, query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"}, auth_settings=["BearerToken"],
    )
    # The REST client JSON-encodes bodies of `*json` content types itself; an apply patch goes as a JSON
    # string (valid YAML), which the client sends unchanged.
    payload = body if body is None or "json" in content_type else json.dumps(body)
    response = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=30)
    response.read()
    text = response.data.decode("utf-8") if response.data else ""
    if not 200 <= response.status <= 299:
        raise ApiException(status=response.status, reason=response.reason, body=text)
    return json.loads(text) if text else {}


def apply(api: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply `obj` (must carry apiVersion, kind, metadata.name/namespace); return the live object."""
    meta = obj["metadata"]
    path = object_path(obj["kind"], meta["namespace"], meta["name"])
    return _call(api, "PATCH", path, body=obj, content_type="application/apply-patch+yaml",
                 query=[("fieldManager", FIELD_MANAGER), ("force", "true")])


def _get_or_none(api: client.ApiClient, path: str) -> dict[str, Any] | None:
    try:
        return _call(api, "GET", path)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def get(api: client.ApiClient, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return _get_or_none(api, object_path(kind, namespace, name))


def delete(api: client.ApiClient, kind: str, namespace: str, name: str) -> bool:
    try:
        _call(api, "DELETE", object_path(kind, namespace, name), body={"propagationPolicy": "Background"})
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def apply_status(api: client.ApiClient, owner: dict[str, Any], status: dict[str, Any],
                 manager: str = FIELD_MANAGER) -> dict[str, Any]:
    """Server-side apply `status` on the status subresource as `manager`.

    Several writers share an object's status (the reconciler: Ready/Progressing/Degraded and replica counts;
    the scaler: ScalingDegraded, desiredReplicas, forecast). Conditions are a list-map keyed by type, so each
    writer owns only its own entries and never drops another's — which a merge patch of the whole list would.
    Each writer must send every field it owns on every write: what it stops sending is removed.
    """
    meta = owner["metadata"]
    body = {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "status": status}
    return _call(api, "PATCH", object_path(owner["kind"], meta["namespace"], meta["name"], "status"), body=body,
                 content_type="application/apply-patch+yaml", query=[("fieldManager", manager), ("force", "true")])


def post_event(api: client.ApiClient, involved: dict[str, Any], reason: str, message: str,
               type_: str = "Normal") -> None:
    """Record a core/v1 Event on `involved` (kopf ≥ 1.45 posts none by default). Best effort."""
    meta = involved["metadata"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "reason": reason, "message": message[:1024], "type": type_,
        "source": {"component": "mpcloud-operator"}, "reportingComponent": "mpcloud.io/operator",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
    try:
        _call(api, "POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
    except ApiException:
        pass


def error_message(exc: ApiException) -> str:
    """The API server's own message (e.g. a validation failure) rather than the HTTP reason."""
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


def get_cluster_scoped(api: client.ApiClient, collection_path: str, name: str) -> dict[str, Any] | None:
    return _get_or_none(api, f"{collection_path}/{name}")
