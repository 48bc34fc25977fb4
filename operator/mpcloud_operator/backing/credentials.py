"""Credentials the operator derives and provisions, shared by every kind that binds a backing service.

The secrets are derived, not stored: HMAC-SHA256 of the operator's binding key over the binder's identity
(namespace, app, name, uid). Every reconcile derives the same values, so provisioning is idempotent without
reading a Secret back (the operator holds no read access to tenants' Secrets), a re-created object gets fresh
credentials, and changing the binding key rotates every credential on the next pass.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from typing import Any


def derive(key: str, *parts: str, length: int = 32) -> str:
    """A credential from the binding key and an identity (hex, `length` characters)."""
    return hmac.new(key.encode(), "\x00".join(parts).encode(), hashlib.sha256).hexdigest()[:length]


class TTLMemo:
    """Provisioning results by their inputs for `ttl` seconds: a resync of every object must not cost a
    round of SQL each, yet a database restored from scratch is re-provisioned within the TTL."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            item = self._items.get(key)
        return item[1] if item and time.monotonic() - item[0] < self.ttl else None

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)

    def drop(self, match: Any) -> None:
        with self._lock:
            for key in [k for k in self._items if match(k)]:
                del self._items[key]


def first_line(exc: BaseException) -> str:
    """An exception as one bounded line for a condition message."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
