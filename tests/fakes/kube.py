"""FakeClient: KubeClient's methods over an in-memory object map, recording every call.

Only for unit tests of reconcile logic (integration tests talk to the real API server). It mimics what
reconcile depends on: server-side apply creates or replaces the fields sent and bumps `generation` only
when `spec` changed and `resourceVersion` only when anything changed (a no-op apply is no write), status
applies merge conditions by type, refused kinds answer like the API server (422 with a message), and
kinds in `forbidden` answer 403 to GET.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from dataclasses import dataclass
from typing import Any

from mpcloud_operator.kinds import paths
from mpcloud_operator.kube.client import ApiException, api_error

Key = tuple[str, str | None, str]


@dataclass(frozen=True)
class Action:
    verb: str  # apply | apply_status | apply_scale | patch | create | get | list | delete | event
    kind: str
    namespace: str | None
    name: str
    detail: Any = None  # the body sent, or (reason, message, type) for an Event


class FakeClient:
    def __init__(self, objects: list[dict[str, Any]] = (), refuse: dict[str, str] | None = None,
                 forbidden: set[str] = frozenset(), deployments_become_ready: bool = True) -> None:
        self.paths = paths()
        self.objects: dict[Key, dict[str, Any]] = {}
        self.actions: list[Action] = []
        self.refuse, self.forbidden = dict(refuse or {}), set(forbidden)
        self.deployments_become_ready = deployments_become_ready
        self._rv = itertools.count(100)
        for obj in objects:
            self.put(obj)

    # ------------------------------------------------------------------ test helpers
    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._rv))
        self.objects[self._key(obj)] = obj
        return copy.deepcopy(obj)

    def writes(self) -> list[Action]:
        return [a for a in self.actions if a.verb in ("apply", "apply_status", "apply_scale", "create", "delete",
                                                             "event", "patch")]

    def verbs(self, *verbs: str) -> list[tuple[str, str]]:
        return [(a.verb, a.kind) for a in self.actions if a.verb in verbs]

    def events(self) -> list[tuple[str, str]]:
        return [(a.detail[0], a.detail[2]) for a in self.actions if a.verb == "event"]

    def status_writes(self) -> list[dict[str, Any]]:
        return [a.detail for a in self.actions if a.verb == "apply_status"]

    @staticmethod
    def _key(obj: dict[str, Any]) -> Key:
        return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]

    # ------------------------------------------------------------------ KubeClient's interface
    def apply(self, obj: dict[str, Any], manager: str | None = None) -> dict[str, Any]:
        key = self._key(obj)
        self.actions.append(Action("apply", *key, copy.deepcopy(obj)))
        if obj["kind"] in self.refuse:
            raise api_error(422, "Unprocessable Entity", json.dumps({"message": self.refuse[obj["kind"]]}))
        old = self.objects.get(key)
        new = copy.deepcopy(obj)
        if old is None:
            new["metadata"].update(uid=str(uuid.uuid4()), generation=1, resourceVersion=str(next(self._rv)))
        else:
            kept = {k: old["metadata"][k] for k in ("uid", "generation", "resourceVersion")}
            new["metadata"] = {**old["metadata"], **new["metadata"], **kept}
            new["status"] = old.get("status")
            if {k: v for k, v in old.items() if k not in ("metadata", "status")} != \
                    {k: v for k, v in new.items() if k not in ("metadata", "status")} or \
                    old["metadata"] != new["metadata"]:
                new["metadata"]["resourceVersion"] = str(next(self._rv))
                if old.get("spec") != new.get("spec"):
                    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
            if new["status"] is None:
                del new["status"]
        if obj["kind"] == "Deployment" and self.deployments_become_ready:
            replicas = (new.get("spec") or {}).get("replicas", 1)
            new["status"] = {"observedGeneration": new["metadata"]["generation"], "replicas": replicas,
                             "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas,
                             "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}
        self.objects[key] = new
        return copy.deepcopy(new)

    def apply_status(self, owner: dict[str, Any], status: dict[str, Any], manager: str | None = None) -> dict[str, Any]:
        key = self._key(owner)
        self.actions.append(Action("apply_status", *key, copy.deepcopy(status)))
        obj = self.objects[key]
        merged = {**(obj.get("status") or {}), **{k: v for k, v in status.items() if k != "conditions"}}
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        conds.update({c["type"]: c for c in status.get("conditions") or []})
        merged["conditions"] = list(conds.values())
        if merged != obj.get("status"):
            obj["status"] = merged
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(obj)

    def apply_scale(self, kind: str, namespace: str, name: str, replicas: int, manager: str) -> dict[str, Any]:
        self.actions.append(Action("apply_scale", kind, namespace, name, replicas))
        obj = self.objects[(kind, namespace, name)]
        obj.setdefault("spec", {})["replicas"] = replicas
        return {"spec": {"replicas": replicas}}

    def patch(self, kind: str, namespace: str | None, name: str, body: dict[str, Any], manager: str) -> dict[str, Any]:
        """A JSON merge patch (null deletes); refused kinds answer 403 as an admission webhook's denial."""
        self.actions.append(Action("patch", kind, namespace, name, copy.deepcopy(body)))
        if kind in self.refuse:
            raise api_error(403, "Forbidden", json.dumps({"message": self.refuse[kind]}))
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise api_error(404, "Not Found", json.dumps({"message": f'{kind} "{name}" not found'}))

        def merge(into: dict[str, Any], change: dict[str, Any]) -> None:
            for k, v in change.items():
                if v is None:
                    into.pop(k, None)
                elif isinstance(v, dict) and isinstance(into.get(k), dict):
                    merge(into[k], v)
                else:
                    into[k] = copy.deepcopy(v)

        before = copy.deepcopy(obj.get("spec"))
        merge(obj, body)
        if obj.get("spec") != before:
            obj["metadata"]["generation"] += 1
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(obj)

    def create(self, obj: dict[str, Any], manager: str | None = None) -> dict[str, Any] | None:
        key = self._key(obj)
        self.actions.append(Action("create", *key, copy.deepcopy(obj)))
        if key in self.objects:
            return None
        return self.put(obj)

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.actions.append(Action("get", kind, namespace, name))
        if kind in self.forbidden:
            raise ApiException(status=403, reason="Forbidden")
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None, query: Any = None) -> dict[str, Any]:
        self.actions.append(Action("list", kind, namespace, ""))
        selector = dict(q[1].split("=", 1) for q in query or () if q[0] == "labelSelector" and "=" in q[1])
        return {"items": [copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
                          if k == kind and (namespace is None or ns == namespace)
                          and all((o["metadata"].get("labels") or {}).get(lk) == lv for lk, lv in selector.items())]}

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        self.actions.append(Action("delete", kind, namespace, name))
        return self.objects.pop((kind, namespace, name), None) is not None

    def post_event(self, involved: dict[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        meta = involved["metadata"]
        self.actions.append(Action("event", involved["kind"], meta.get("namespace"), meta["name"],
                                   (reason, message, type_)))


class FakeWatch:
    """The watch cache of one child kind, answered from the FakeClient's objects (always synced)."""

    def __init__(self, kube: FakeClient, kind: str) -> None:
        self.kube, self.kind = kube, kind

    def has(self, namespace: str, name: str) -> bool:
        return (self.kind, namespace, name) in self.kube.objects
