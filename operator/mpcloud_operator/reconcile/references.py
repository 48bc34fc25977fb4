"""Do the objects a custom resource points at exist? Checked before any child is applied; and who points at what.

A missing Secret, ConfigMap or RuntimeClass becomes `Ready=False` with a clear reason and a retry with
backoff, while the children applied earlier keep running untouched.

Referenced objects the operator may watch (ConfigMaps, RuntimeClasses; not Secrets) are watched: every full
reconcile records what the object points at (`ReferenceIndex`), and a referenced object that appears, changes
or goes re-reconciles the objects pointing at it at once (e.g. a function's configMapRef source edited: the
new code rolls out in seconds; a missing ConfigMap created: no waiting out the backoff). Only objects with
dependents are tracked, and an event that does not change the resourceVersion last seen wakes nobody.

The operator holds no cluster-wide read access to Secrets (reading any tenant's credentials is not a power
a controller should have just to check existence). A tenant namespace opts in by binding the ClusterRole
`mpcloud-operator-references` to the operator's ServiceAccount (see manifests/rbac.yaml); where it has not,
the API answers 403, the Secret's existence is left unchecked, and a missing one shows up where the
workload reports it (the Deployment's pods do not start: Ready stays False / Progressing).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from mpcloud_operator.kube.client import ApiException
from mpcloud_operator.reconcile.kind import Reference
from mpcloud_operator.reconcile.queue import FULL

if TYPE_CHECKING:
    from mpcloud_operator.runtime import Runtime

Key = tuple[str, str, str]  # (kind, namespace, name) of a custom resource
CLUSTER_SCOPED = ("RuntimeClass",)


class ReferenceProblem(Exception):
    """Something the object points at does not exist (yet): report, keep the old children, retry."""

    def __init__(self, reason: str, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.reason, self.problems = reason, problems


def env_references(env: list, env_from: list) -> list[Reference]:
    """The Secrets and ConfigMaps a container's env / envFrom (api.parts EnvVar, EnvFromSource) point at."""
    refs = []
    for var in env:
        for ref, kind in ((var.value_from and var.value_from.secret_key_ref, "Secret"),
                          (var.value_from and var.value_from.config_map_key_ref, "ConfigMap")):
            if ref:
                refs.append(Reference(kind, ref.name, ref.optional))
    for ef in env_from:
        ref, kind = (ef.secret_ref, "Secret") if ef.secret_ref else (ef.config_map_ref, "ConfigMap")
        refs.append(Reference(kind, ref.name, ref.optional))
    return refs


def _exists(runtime: Runtime, ref: Reference, namespace: str) -> bool | None:
    """True/False, or None when the operator may not look (403)."""
    try:
        return runtime.kube.get(ref.kind, namespace, ref.name) is not None
    except ApiException as exc:
        if exc.status == 403:
            return None
        raise


def _runtime_class_exists(runtime: Runtime, name: str) -> bool:
    # RuntimeClasses are few and change rarely: a positive answer is reused for 30 s (one GET per class,
    # not one per reconcile); a missing class is re-checked every time, so installing it is noticed at once.
    if runtime.runtime_classes.fresh(name):
        return True
    if runtime.kube.get("RuntimeClass", None, name) is None:
        return False
    runtime.runtime_classes.add(name)
    return True


def check(runtime: Runtime, namespace: str, refs: list[Reference]) -> None:
    """Raise ReferenceProblem naming every missing, non-optional reference (namespaced ones first)."""
    wanted: dict[tuple[str, str], bool] = {}  # (kind, name) -> optional (required wins over optional)
    for ref in refs:
        wanted[(ref.kind, ref.name)] = ref.optional and wanted.get((ref.kind, ref.name), True)
    missing = [f"{kind} {name!r} not found in namespace {namespace}"
               for (kind, name), optional in sorted(wanted.items())
               if kind != "RuntimeClass" and not optional
               and _exists(runtime, Reference(kind, name), namespace) is False]
    if missing:
        raise ReferenceProblem("ReferenceNotFound", missing)
    for (kind, name), _ in sorted(wanted.items()):
        if kind == "RuntimeClass" and not _runtime_class_exists(runtime, name):
            raise ReferenceProblem("RuntimeClassNotFound", [f"RuntimeClass {name!r} is not installed on the cluster"])


def _ref_key(ref: Reference, namespace: str) -> tuple[str, str, str]:
    return ref.kind, "" if ref.kind in CLUSTER_SCOPED else namespace, ref.name


class ReferenceIndex:
    """Which custom resources point at which referenced objects, as of each one's last full reconcile."""

    def __init__(self) -> None:
        self._dependents: dict[tuple[str, str, str], set[Key]] = {}
        self._refs: dict[Key, set[tuple[str, str, str]]] = {}
        self._versions: dict[tuple[str, str, str], str] = {}  # resourceVersion last seen, tracked refs only
        self._lock = threading.Lock()

    def record(self, owner: Key, namespace: str, refs: list[Reference]) -> None:
        new = {_ref_key(r, namespace) for r in refs}
        with self._lock:
            old = self._refs.get(owner, set())
            for ref in old - new:
                self._drop(owner, ref)
            for ref in new - old:
                self._dependents.setdefault(ref, set()).add(owner)
            if new:
                self._refs[owner] = new
            else:
                self._refs.pop(owner, None)

    def forget(self, owner: Key) -> None:
        with self._lock:
            for ref in self._refs.pop(owner, set()):
                self._drop(owner, ref)

    def _drop(self, owner: Key, ref: tuple[str, str, str]) -> None:
        owners = self._dependents.get(ref)
        if owners is not None:
            owners.discard(owner)
            if not owners:
                del self._dependents[ref]
                self._versions.pop(ref, None)

    def changed(self, kind: str, namespace: str | None, name: str, version: str | None,
                deleted: bool = False) -> list[Key]:
        """A watch event of a referenced object: the custom resources to reconcile again (none when nothing
        points at it, or when it is the version already seen)."""
        ref = (kind, namespace or "", name)
        with self._lock:
            owners = self._dependents.get(ref)
            if not owners:
                return []
            if deleted:
                self._versions.pop(ref, None)
            else:
                if version is not None and self._versions.get(ref) == version:
                    return []
                if version is not None:
                    self._versions[ref] = version
            return sorted(owners)

    def __len__(self) -> int:
        return len(self._dependents)


def on_referenced_event(runtime: Runtime, event_type: str, obj: dict[str, Any]) -> None:
    """A watched referenced object changed: its dependents go to the front of the queue (they exist)."""
    meta = obj.get("metadata") or {}
    for owner in runtime.references.changed(obj.get("kind", ""), meta.get("namespace"), meta.get("name", ""),
                                            meta.get("resourceVersion"), deleted=event_type == "DELETED"):
        runtime.queue.add(owner, FULL, front=True)
