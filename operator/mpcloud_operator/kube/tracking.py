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


def key(obj: dict[str, Any]) -> Key:
    return obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]


def marker(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"g{meta['generation']}" if meta.get("generation") else f"rv{meta.get('resourceVersion')}"


class DriftTracker:
    """Per-process record of the last version of each child we wrote (thread-safe)."""

    def __init__(self) -> None:
        self._written: dict[Key, str] = {}
        self._lock = threading.Lock()

    def record(self, live: dict[str, Any]) -> None:
        """The object as our write left it."""
        with self._lock:
            self._written[key(live)] = marker(live)

    def expect_change(self, k: Key) -> None:
        with self._lock:
            self._written[k] = _EXPECTED

    def forget(self, k: Key) -> None:
        with self._lock:
            self._written.pop(k, None)

    def is_drift(self, event_type: str | None, obj: dict[str, Any]) -> bool:
        """True when the event shows a change we did not make. Unknown objects (operator start-up) are not
        drift: the owner's first reconcile after start re-applies them anyway."""
        k = key(obj)
        with self._lock:
            if event_type == "DELETED":
                self._written.pop(k, None)
                return True
            expected = self._written.get(k)
            if expected == _EXPECTED:
                self._written[k] = marker(obj)
                return False
        return expected is not None and expected != marker(obj)

    def __len__(self) -> int:
        return len(self._written)
