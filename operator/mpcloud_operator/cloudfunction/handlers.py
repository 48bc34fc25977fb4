"""CloudFunction as a registered kind: source checks, bindings, children, status, and the function scaler.

Everything generic (watching, the reconcile sequence, status writes, failure reporting, retries) is in
`mpcloud_operator.reconcile`; this module says what is particular to functions:

- `prepare`: read the source (inline, or the referenced ConfigMap), check it with the runtime's own
  interpreter (a syntax error becomes Ready=False/InvalidSource with the interpreter's message and the
  instances already running keep serving the previous code), hash it, and provision the bindings;
- the Deployment's replicas belong to the function scaler (`scaler.py`): claimed right after creation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from mpcloud_operator.cloudfunction import bindings, resources
from mpcloud_operator.cloudfunction.model import KIND, CloudFunction
from mpcloud_operator.cloudfunction.resources import Prepared
from mpcloud_operator.reconcile import replicas
from mpcloud_operator.reconcile.references import env_references
from mpcloud_operator.reconcile.kind import ChildKind, Kind, KindHooks, Observed, Reference, StatusInput
from mpcloud_operator.reconcile.references import ReferenceProblem

CHILDREN = (
    ChildKind("ServiceAccount", "v1", "serviceaccounts"),
    ChildKind("ConfigMap", "v1", "configmaps"),
    ChildKind("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies"),
    ChildKind("Service", "v1", "services"),
    ChildKind("Deployment", "apps/v1", "deployments", status_view=resources.deployment_view),
)
# Pods that fetch an archive: their init container's failure is the function's BuildFailed (read, not created).
OBSERVED = (Observed("Pod", "v1", "pods", f"{resources.SOURCE_LABEL}=archive,{resources.FUNCTION_LABEL}",
                     owner=resources.pod_owner, view=resources.pod_build_view),)
# Not a watched child: the operator writes the bindings Secret but may not read Secrets (no list/watch).
SECRET = ("Secret", "v1", "secrets")


def references(fn: CloudFunction) -> list[Reference]:
    spec = fn.spec
    refs = env_references(spec.env, spec.env_from)
    if spec.source.config_map_ref is not None:
        refs.append(Reference("ConfigMap", spec.source.config_map_ref.name))
    if not spec.sandbox.unsandboxed:
        refs.append(Reference("RuntimeClass", spec.sandbox.runtime_class_name))
    return refs


class SourceChecks:
    """check_source results by (runtime, handler, code hash): a `node --check` per reconcile would cost more
    than the rest of it, and the same code always gets the same answer."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._results: OrderedDict[tuple[str, str, str], str | None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, runtime_name: str, handler: str, code_hash: str, files: dict[str, str]) -> str | None:
        key = (runtime_name, handler, code_hash)
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        from mpcloud_operator.functions.validate import check_source

        result = check_source(runtime_name, files, handler)
        with self._lock:
            self._results[key] = result
            while len(self._results) > self.size:
                self._results.popitem(last=False)
        return result


def source_files(runtime: Any, fn: CloudFunction) -> dict[str, str] | None:
    """The code to check and hash; None for an archive (checked where it is unpacked, by the init container)."""
    source = fn.spec.source
    if source.inline is not None:
        return dict(source.inline.files)
    if source.config_map_ref is not None:
        cm = runtime.kube.get("ConfigMap", fn.metadata.namespace, source.config_map_ref.name)
        if cm is None:
            raise ReferenceProblem("ReferenceNotFound", [f"ConfigMap {source.config_map_ref.name!r} not found"])
        return dict(cm.get("data") or {})
    return None


def prepare(runtime: Any, fn: CloudFunction) -> Prepared:
    files = source_files(runtime, fn)
    if files is None:
        assert fn.spec.source.archive is not None
        code_hash = fn.spec.source.archive.sha256
    else:
        code_hash = resources.source_hash(files)
        checks = runtime.service("cloudfunction-source-checks", SourceChecks)
        problem = checks.check(fn.spec.runtime, fn.spec.handler, code_hash, files)
        if problem:
            raise ReferenceProblem("InvalidSource", [problem])
    bindings.revoke_removed(runtime, fn)
    env = bindings.bind(runtime, fn)
    HOOKS.remember(fn)
    b = fn.spec.bindings
    bound = tuple(k for k, v in (("database", b.database), ("storage", b.storage)) if v is not None)
    return Prepared(image=runtime.config.function_image, code_hash=code_hash,
                    files=files if fn.spec.source.inline is not None else {}, binding_env=env, bound=bound,
                    unsandboxed_node_pool=runtime.config.unsandboxed_node_pool,
                    image_pull_policy=runtime.config.function_pull_policy)


OFFLINE = "<provisioned at reconcile>"


def offline(fn: CloudFunction) -> Prepared:
    """`mpcloud render`'s stand-in for prepare(): the default settings, no source check, credentials as
    placeholders under the keys the operator would write (so a scanner sees the Secret and its env wiring)."""
    from mpcloud_operator.config import OperatorConfig

    source = fn.spec.source
    if source.inline is not None:
        code_hash = resources.source_hash(dict(source.inline.files))
    elif source.archive is not None:
        code_hash = source.archive.sha256
    else:
        code_hash = "0" * 64  # a ConfigMap source: its hash is only known from the cluster
    keys = [*(("MPCLOUD_DB_DSN", "MPCLOUD_DB_SCHEMA") if fn.spec.bindings.database else ()),
            *(("MPCLOUD_S3_ENDPOINT", "MPCLOUD_S3_PUBLIC_ENDPOINT", "MPCLOUD_S3_REGION", "MPCLOUD_S3_BUCKET",
               "MPCLOUD_S3_ACCESS_KEY", "MPCLOUD_S3_SECRET_KEY") if fn.spec.bindings.storage else ())]
    defaults = OperatorConfig()
    return Prepared(image=defaults.function_image, code_hash=code_hash,
                    files=dict(source.inline.files) if source.inline is not None else {},
                    binding_env=dict.fromkeys(keys, OFFLINE), unsandboxed_node_pool=defaults.unsandboxed_node_pool,
                    image_pull_policy=defaults.function_pull_policy,
                    bound=tuple(k for k in ("database", "storage") if getattr(fn.spec.bindings, k) is not None))


def status(fn: CloudFunction, given: StatusInput) -> dict[str, Any]:
    gateway_url = given.config.gateway_url if given.config is not None else "http://mpcloud-gateway.mpcloud-system.svc"
    return resources.compute_status(fn, given.children.get("Deployment"), given.old, given.problems, given.now,
                                    gateway_url, given.observed.get("Pod"))


def events(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    if new.get("servingHash") and old.get("servingHash") and old["servingHash"] != new["servingHash"]:
        return [("CodeServed", f"serving {new['servingHash'][:12]} (was {old['servingHash'][:12]})", "Normal")]
    return []


class FunctionHooks(KindHooks):
    """The scaler hand-off, and the credentials to drop when a function goes away."""

    def __init__(self) -> None:
        self.runtime: Any = None  # set by the function scaler when it starts (leader only)
        self._bound: dict[tuple[str, str], tuple[str, bool, bool]] = {}
        self._lock = threading.Lock()

    def remember(self, fn: CloudFunction) -> None:
        b = fn.spec.bindings
        with self._lock:
            self._bound[(fn.metadata.namespace or "", fn.metadata.name)] = (
                fn.spec.app, b.database is not None, b.storage is not None)

    def after_apply(self, runtime: Any, fn: CloudFunction, live: dict[str, Any]) -> None:
        if live["kind"] == "Deployment":  # a new one starts at the API default (1): the scaler owns it from now on
            replicas.claim(runtime, fn.metadata.namespace, resources.child_name(fn), live,
                           max(1, fn.spec.scaling.min_instances), fn.spec.scaling.clamp)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            bound = self._bound.pop((namespace, name), None)
        scaler = self.runtime and self.runtime.services.get("cloudfunction-scaler")
        if scaler is not None:
            scaler.forget(namespace, name)
        if bound and self.runtime is not None and (bound[1] or bound[2]):
            app, database, storage = bound
            threading.Thread(target=bindings.unbind, args=(self.runtime, namespace, app, name, database, storage),
                             name="cf-unbind", daemon=True).start()


HOOKS = FunctionHooks()
OWN_CONDITIONS = ("Ready", "Degraded")
OWNED_STATUS_FIELDS = ("bindings", "codeHash", "servingHash", "servingGeneration", "url", "instances", "desiredInstances",
                       "sandbox")


def function_scaler(runtime: Any) -> Any:
    """Scale to zero, scale from the gateway's demand, keep-alive and pre-warm (leader only)."""
    from mpcloud_operator.cloudfunction.scaler import FunctionScaler

    HOOKS.runtime = runtime
    return runtime.service("cloudfunction-scaler", lambda: FunctionScaler(runtime)).start()


def credential_sweep(runtime: Any) -> Any:
    """Drop roles and keys whose function or binding is gone (leader only; see cleanup.py)."""
    from mpcloud_operator.cloudfunction.cleanup import CredentialSweep

    return runtime.service("cloudfunction-credential-sweep",
                           lambda: CredentialSweep(runtime, runtime.config.credential_sweep_seconds)).start()


def _kind() -> Kind:
    from mpcloud_operator.api.crdgen import column

    return Kind(
        kind=KIND, plural="cloudfunctions", model=CloudFunction, children=CHILDREN, observed=OBSERVED,
        child_name=resources.children_name, desired=resources.desired_objects, absent=resources.absent_objects,
        references=references, spec_problems=resources.spec_problems, prepare=prepare, offline=offline,
        status=status, events=events, hooks=HOOKS, conditions=OWN_CONDITIONS,
        owned_status_fields=OWNED_STATUS_FIELDS, loops=(function_scaler, credential_sweep),
        short_names=("cf",),
        printer_columns=(
            column("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"),
            column("Reason", '.status.conditions[?(@.type=="Ready")].reason', description="Why (ScaledToZero, ...)"),
            column("Runtime", ".spec.runtime", description="Language runtime"),
            column("Instances", ".status.instances", "integer", "Ready instances"),
            column("Hash", ".status.servingHash", description="Code hash being served", priority=1),
            column("URL", ".status.url", description="Gateway URL", priority=1),
            column("Age", ".metadata.creationTimestamp", "date"),
        ),
    )


CLOUD_FUNCTION = _kind()
