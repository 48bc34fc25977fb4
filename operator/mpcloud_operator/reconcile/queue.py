"""A deduplicating work queue with per-key serialisation and delayed retries (client-go's workqueue shape).

Watch events only *name* work: a key (kind, namespace, name) and how much is needed — a full reconcile
(apply children) or a status refresh. A key queued twice is queued once (the larger need wins), a key is
never processed by two workers at once (an event during processing re-queues it after), and a failed key
comes back after an exponential backoff. So a burst of events for one object costs one reconcile, and the
number of objects in flight is bounded by the worker count, not by the number of objects.

Work on objects that already exist goes to the front (`front=True`): a child changed by hand, or a child's
status that moved, is repaired or reported before the next of a thousand new objects is started — so drift is
repaired in seconds even during a burst, and started objects finish (become Ready) before new ones begin.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Hashable

FULL = 2  # re-apply the children, then status
STATUS = 1  # recompute and write status only


class WorkQueue:
    def __init__(self, base_delay: float = 5.0, max_delay: float = 300.0) -> None:
        self._cond = threading.Condition()
        self._order: deque[Hashable] = deque()
        self._need: dict[Hashable, int] = {}  # queued (or re-queued while processing) -> need
        self._processing: set[Hashable] = set()
        self._delayed: list[tuple[float, int, Hashable, int]] = []
        self._due: dict[Hashable, tuple[float, int]] = {}  # key -> its earliest pending wake-up (time, need)
        self._seq = itertools.count()
        self._failures: dict[Hashable, int] = {}
        self.base_delay, self.max_delay = base_delay, max_delay
        self._closed = False
        self._urgent: set[Hashable] = set()  # re-queued while processing, to go to the front

    def add(self, key: Hashable, need: int = FULL, front: bool = False) -> None:
        with self._cond:
            if self._closed:
                return
            queued = key in self._need
            self._need[key] = max(need, self._need.get(key, 0))
            if key in self._processing:
                if front:
                    self._urgent.add(key)
                return  # done() re-queues it
            if not queued:
                self._order.appendleft(key) if front else self._order.append(key)
                self._cond.notify()
            elif front and self._order[0] != key:
                # Queued and not processing means waiting in the order. O(n) in a C loop: ~0.1 ms at 10,000.
                self._order.remove(key)
                self._order.appendleft(key)

    def add_after(self, key: Hashable, delay: float, need: int = FULL) -> None:
        """Queue `key` in `delay` seconds. One wake-up per key: an earlier one already pending makes a later one
        redundant (a run re-asking for its deadline on every reconcile costs one entry, not one each time)."""
        if delay <= 0:
            return self.add(key, need)
        with self._cond:
            due = time.monotonic() + delay
            pending = self._due.get(key)
            if pending is not None and pending[0] <= due and pending[1] >= need:
                return
            self._due[key] = (due, need)
            heapq.heappush(self._delayed, (due, next(self._seq), key, need))
            self._cond.notify_all()

    def retry(self, key: Hashable, need: int = FULL, delay: float | None = None) -> float:
        """Re-queue `key` after its next backoff step (5 s, 10 s, ... 300 s) or `delay`; returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        wait = delay if delay is not None else min(self.max_delay, self.base_delay * 2 ** min(failures, 16))
        self.add_after(key, wait, need)
        return wait

    def failures(self, key: Hashable) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def forget(self, key: Hashable) -> None:
        """Reset the key's backoff (after a success)."""
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> tuple[Hashable, int] | None:
        """The next key and its need, or None on shutdown/timeout. Call done(key) afterwards."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_due()
                if self._order:
                    key = self._order.popleft()
                    need = self._need.pop(key)
                    self._processing.add(key)
                    return key, need
                if self._closed:
                    return None
                wait = self._delayed[0][0] - time.monotonic() if self._delayed else None
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._need:  # events arrived while it was being processed
                if key in self._urgent:
                    self._order.appendleft(key)
                else:
                    self._order.append(key)
                self._cond.notify()
            self._urgent.discard(key)

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key, need = heapq.heappop(self._delayed)
            if self._due.get(key, (None,))[0] == due:
                del self._due[key]
            queued = key in self._need
            self._need[key] = max(need, self._need.get(key, 0))
            if not queued and key not in self._processing:
                self._order.append(key)

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._order) + len(self._delayed)

    def idle(self) -> bool:
        """Nothing queued, nothing delayed, nothing being processed (tests and benchmarks wait on it)."""
        with self._cond:
            return not self._order and not self._delayed and not self._processing
