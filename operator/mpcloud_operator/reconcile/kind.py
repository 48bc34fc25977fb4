"""How a kind declares itself to the controller layer: one `Kind` value per custom resource.

A kind is its pydantic model plus pure functions (desired children, children that must be absent, the
objects it references, its status) and a few optional hooks for what only it knows. The registry
(`mpcloud_operator.kinds`) lists every Kind once; handler registration, CRD generation, API paths, child
watches, metrics and the RBAC test all derive from that list, and `reconcile.runner` runs the same
parse → references → apply → delete → status → Events → metrics sequence for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from mpcloud_operator.runtime import Runtime

Object = dict[str, Any]


@dataclass(frozen=True)
class ChildKind:
    """A kind of object the operator creates for its custom resources and watches for drift.

    `status_view` (only for children the owner's status is computed from, e.g. a Deployment) keeps the few
    fields that status needs; the watch cache stores that view instead of the whole object, and an event
    whose view did not change wakes nobody."""

    kind: str
    api_version: str
    plural: str
    status_view: Callable[[Object], Object] | None = None
    # A change of its status view calls for a full reconcile, not just a status refresh: for bounded runs, where
    # a finished child (a task's Job) means the next children can start.
    status_drives_apply: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


@dataclass(frozen=True)
class Reference:
    """An object a custom resource points at and that must exist before its children are applied."""

    kind: str  # Secret, ConfigMap (namespaced) or RuntimeClass (cluster-scoped)
    name: str
    optional: bool = False


@dataclass(frozen=True)
class Observed:
    """Objects a kind reads but does not create (a function's pods): watched by label, each reduced to a small
    view the moment it arrives and handed to the owner's `status`; a changed view refreshes that status.

    Unlike children they are not owned by the custom resource (a pod's owner is a ReplicaSet), so `owner`
    names the custom resource (same namespace) from the object itself, e.g. from a label."""

    kind: str
    api_version: str
    plural: str
    label_selector: str
    owner: Callable[[Object], str | None]
    view: Callable[[Object], Object | None]  # None: nothing the status needs (not kept)


@dataclass(frozen=True)
class StatusInput:
    """What a kind's `status` function is given (all of it already read; the function stays pure)."""

    old: dict[str, Any]  # the object's current .status (as stored)
    children: dict[str, Object | None]  # kind -> status view of the live child (None: not there yet)
    problems: list[str]  # failed applies and spec problems of this reconcile
    now: datetime
    config: Any = None  # the operator's OperatorConfig (e.g. a base URL the status names)
    observed: dict[str, list[Object]] = field(default_factory=dict)  # Observed kind -> views of the owner's objects
    prepared: Any = None  # what the kind's `prepare` returned this reconcile (None on a status-only refresh)


@dataclass(frozen=True)
class Kind:
    """Everything the generic layer needs to run a custom resource kind."""

    kind: str
    plural: str
    model: type[BaseModel]  # must offer `from_body(dict)` and `.metadata` / `.spec`
    desired: Callable[[Any], list[Object]]
    status: Callable[[Any, StatusInput], dict[str, Any]]  # camelCase .status fields this reconciler owns
    conditions: tuple[str, ...]  # condition types the reconciler owns; the primary first (Ready, or Succeeded for runs)
    owned_status_fields: tuple[str, ...]  # other .status fields it owns (sent on every status write)
    children: tuple[ChildKind, ...] = ()
    observed: tuple[Observed, ...] = ()
    # Name of the children (with a status view) an object's status is computed from, from the object's name.
    child_name: Callable[[str], str] = lambda name: name
    absent: Callable[..., list[Object]] = lambda obj, *prepared: []  # (obj[, prepared]) like desired
    references: Callable[[Any], list[Reference]] = lambda obj: []
    spec_problems: Callable[[Any], list[str]] = lambda obj: []
    # Inputs of desired() that need the cluster or a backing service (e.g. the source's hash, provisioned
    # credentials): (runtime, obj) -> value passed as desired(obj, value). It may raise
    # reconcile.references.ReferenceProblem(reason, problems): Ready=False/<reason>, children untouched, retry.
    prepare: Callable[[Runtime, Any], Any] | None = None
    # What `mpcloud render` passes instead (no cluster, no backing service): obj -> the same type as prepare's,
    # with visible placeholders where the cluster would answer. Required when `prepare` is set.
    offline: Callable[[Any], Any] | None = None
    # When to reconcile again although nothing changed (a deadline): (obj, prepared) -> seconds or None.
    requeue_after: Callable[[Any, Any], float | None] | None = None
    # Kind-specific Events on a status change: (old status, new status) -> [(reason, message, type)].
    events: Callable[[dict[str, Any], dict[str, Any]], list[tuple[str, str, str]]] = lambda old, new: []
    hooks: KindHooks | None = None
    # Background loops the kind runs in the leader (e.g. the scaling tick): runtime -> object with stop().
    loops: tuple[Callable[[Runtime], Any], ...] = ()
    # CRD metadata (crdgen): shortNames, categories, printer columns, scale subresource.
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("mpcloud",)
    printer_columns: Sequence[dict[str, Any]] = field(default_factory=tuple)
    scale: Any = None  # api.crdgen.Scale or None

    @property
    def api_version(self) -> str:
        from mpcloud_operator.config import GROUP, VERSION

        return f"{GROUP}/{VERSION}"

    def child(self, kind: str) -> ChildKind | None:
        return next((c for c in self.children if c.kind == kind), None)

    @property
    def primary_condition(self) -> str:
        return self.conditions[0]


class NotObservable(Exception):
    """A kind's `prepare` cannot see what it needs yet (a watch cache not synced, a child of a deleted owner
    still being collected): write nothing, try again shortly."""


class KindHooks:
    """Optional kind-specific steps around the generic apply; every method is a no-op by default."""

    def before_apply(self, runtime: Runtime, obj: Any) -> None:
        """Before the children are applied (e.g. hand a field to another writer first)."""

    def after_apply(self, runtime: Runtime, obj: Any, live: Object) -> None:
        """After one child was applied; `live` is the API server's answer."""

    def record_metrics(self, obj: Any, status: dict[str, Any]) -> None:
        """Kind-specific gauges from the status just computed."""

    def forget(self, namespace: str, name: str) -> None:
        """The object was deleted: drop its metric series."""
