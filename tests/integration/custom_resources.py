"""One namespaced mpcloud custom resource kind as integration tests use it: create, read, patch, its conditions,
waiting for a condition of the current generation, and its Events. Each kind's tests subclass it."""

from __future__ import annotations

from kubernetes import client

from tests.integration.conftest import wait_until

GROUP, VERSION = "mpcloud.io", "v1alpha1"


class CustomResources:
    kind = ""
    plural = ""

    def __init__(self, api_client, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def create(self, body: dict) -> dict:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, self.plural, body)

    def get(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, self.plural, name)

    def patch(self, name: str, patch: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, self.plural, name, patch)

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, self.plural, name)

    def condition(self, name: str, type_: str = "Ready") -> dict:
        conds = (self.get(name).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == type_), {})

    def wait_condition(self, name: str, type_: str = "Ready", status: str | None = None,
                       reasons: tuple[str, ...] = (), timeout: float = 60, interval: float = 0.25) -> dict:
        """The object once its `type_` condition, written for its current generation, has `status` and/or a
        reason in `reasons`."""
        def reached():
            obj = self.get(name)
            conds = (obj.get("status") or {}).get("conditions") or []
            cond = next((c for c in conds if c["type"] == type_), {})
            return (cond.get("observedGeneration") == obj["metadata"]["generation"]
                    and (status is None or cond.get("status") == status)
                    and (not reasons or cond.get("reason") in reasons) and obj)
        wanted = " ".join(filter(None, (f"status {status}" if status else "", f"reason in {reasons}" if reasons else "")))
        return wait_until(reached, timeout, interval=interval, what=f"{self.kind} {name} {type_} {wanted}")

    def events(self, name: str) -> list:
        return self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.kind={self.kind},involvedObject.name={name}").items
