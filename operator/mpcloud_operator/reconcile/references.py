"""Do the objects a custom resource points at exist? Checked before any child is applied.

A missing Secret, ConfigMap or RuntimeClass becomes `Ready=False` with a clear reason and a retry with
backoff, while the children applied earlier keep running untouched.

The operator holds no cluster-wide read access to Secrets (reading any tenant's credentials is not a power
a controller should have just to check existence). A tenant namespace opts in by binding the ClusterRole
`mpcloud-operator-references` to the operator's ServiceAccount (see manifests/rbac.yaml); where it has not,
the API answers 403, the Secret's existence is left unchecked, and a missing one shows up where the
workload reports it (the Deployment's pods do not start: Ready stays False / Progressing).
"""

from __future__ import annotations

from mpcloud_operator.kube.client import ApiException
from mpcloud_operator.reconcile.kind import Reference
from mpcloud_operator.runtime import Runtime


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
