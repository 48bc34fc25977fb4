"""Which child-object versions mpcloud wrote itself, so watch events can tell drift from our own writes.

After each write the writer records the child's generation (or resourceVersion for kinds without one).
A watch event showing anything else means someone else changed the object. A writer whose response does
not carry the new generation (a scale-subresource write) marks the child `expect_change`: the next event
is taken as its own.
"""

from __future__ import annotations

import threading
from typing import Any

Key = tuple[str, str, str]  # kind, namespace, name
_EXPECTED = "expected"
_written: dict[Key, str] = {}
_lock = threading.Lock()


def key(obj: dict[str, Any]) -> Key:
    return obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]


def marker(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"g{meta['generation']}" if meta.get("generation") else f"rv{meta.get('resourceVersion')}"


def record(live: dict[str, Any]) -> None:
    """The object as our write left it."""
    with _lock:
        _written[key(live)] = marker(live)


def expect_change(k: Key) -> None:
    with _lock:
        _written[k] = _EXPECTED


def forget(k: Key) -> None:
    with _lock:
        _written.pop(k, None)


def is_drift(event_type: str | None, obj: dict[str, Any]) -> bool:
    """True when the event shows a change we did not make. Unknown objects (operator start-up) are not
    drift: the owner's resume handler re-applies them anyway."""
    k = key(obj)
    with _lock:
        if event_type == "DELETED":
            _written.pop(k, None)
            return True
        expected = _written.get(k)
        if expected == _EXPECTED:
            _written[k] = marker(obj)
            return False
    return expected is not None and expected != marker(obj)
