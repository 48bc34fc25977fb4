"""Every kopf registration of the operator, made once from the kind registry (imported by main.py).

Per registered kind, one `@kopf.on.event` handler hands each watch event to the controller, which keeps
the latest version and queues work; nothing here reconciles. Event handlers (not create/update handlers)
keep kopf from writing its own annotations on every object: one PATCH and one echo event less per change.
"""

from __future__ import annotations

from typing import Any

import kopf

from mpcloud_operator.config import GROUP, VERSION
from mpcloud_operator.kinds import KINDS
from mpcloud_operator.reconcile.controller import observe_primary


def _plain(obj: Any) -> Any:
    if hasattr(obj, "items"):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _register(plural: str) -> None:
    @kopf.on.event(GROUP, VERSION, plural, id=f"watch-{plural}")
    async def _on_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:  # noqa: A002
        observe_primary(memo.runtime, type, _plain(body))


for _kind in KINDS:
    _register(_kind.plural)
