"""The function scaler's keep-alive history, saved by the leader and restored by the next one.

`KeepAliveBank` (scaler.py) holds one vectorised policy per policy name with a slot per function; its state is
what the policies learned from every minute so far (gap histograms, the hybrid windows, mpcloud's price). Lost
on a restart, every function would fall back to warm-after-use until it had history again — hours for the
rare ones, where keep-alive matters most. So the leader saves it every `MPCLOUD_KEEPALIVE_SAVE_SECONDS` (180)
and on a clean stop, and the scaler restores it when it starts.

Where, and why there: ConfigMaps `mpcloud-keepalive-state-<i>` in the operator's namespace (the Lease's),
holding one compressed blob (`predictors.keepalive.state` arrays + the slot table, `numpy.savez_compressed`)
split into ≤ 768 KiB chunks; chunk 0 carries the manifest (chunks, SHA-256, minute, minute length) and is
written last, so a reader never mixes two saves (a digest mismatch is discarded). Weighed against a status
field or annotation per function: at 10,000 functions that would be 10,000 writes per save (≈ 55 writes/s
every 3 minutes, each a watch event for every watcher of CloudFunctions); here it is a few writes of a few
MB per save — histograms are sparse, a few hundred bytes per function compressed (`bench/README.md`).
The ConfigMaps are labelled `mpcloud.io/internal` and left out of the operator's own ConfigMap watches.

A save from another clock (a different `function_minute_seconds`, or a minute ahead of now) is ignored; minutes
while no operator ran are not replayed (the policies see them as minutes without calls).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import threading
import time
from typing import Any

import numpy as np

from mpcloud_operator.reconcile.controller import INTERNAL_LABEL  # left out of the operator's own watches

log = logging.getLogger("mpcloud.cloudfunction.keepalive")
NAME = "mpcloud-keepalive-state"
MANIFEST_ANNOTATION = "mpcloud.io/keepalive-state"
CHUNK_BYTES = 768 * 1024
MAX_CHUNKS = 64
FORMAT = 1


# ---------------------------------------------------------------- bank <-> bytes (pure)

def bank_bytes(bank: Any, minute_seconds: float) -> bytes:
    """The bank's policies, slots and last decisions as one compressed blob."""
    from predictors.keepalive import state

    meta: dict[str, Any] = {"format": FORMAT, "minute": bank.minute, "minuteSeconds": minute_seconds, "policies": []}
    arrays: dict[str, np.ndarray] = {}
    for i, (name, policy) in enumerate(sorted(bank.policies.items())):
        meta["policies"].append({"name": name, "capacity": bank.capacity_of(name),
                                 "slots": [[ns, fn, slot] for (ns, fn), slot in sorted(bank.slots[name].items())]})
        for key, value in state.dump(policy).items():
            arrays[f"p{i}.{key}"] = value
        arrays[f"p{i}.bank_loaded"] = np.asarray(bank.loaded[name], dtype=bool)
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


def restore_bank(bank: Any, data: bytes, minute_seconds: float, now_minute: int) -> int:
    """Put a blob back into an empty bank; the number of functions restored (0: the blob does not apply)."""
    from predictors.keepalive import make_policy, state

    with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    if meta.get("format") != FORMAT or float(meta.get("minuteSeconds", 0)) != float(minute_seconds):
        log.info("keep-alive state from another clock (minute %ss): not restored", meta.get("minuteSeconds"))
        return 0
    if meta.get("minute") is None or int(meta["minute"]) > now_minute:
        return 0
    restored = 0
    for i, entry in enumerate(meta["policies"]):
        name, capacity = entry["name"], int(entry["capacity"])
        prefix = f"p{i}."
        policy = make_policy(name)
        policy.reset(capacity, np.ones(capacity))
        state.load(policy, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        bank.policies[name] = policy
        bank.slots[name] = {(ns, fn): int(slot) for ns, fn, slot in entry["slots"]}
        bank.loaded[name] = np.asarray(arrays[f"{prefix}bank_loaded"], dtype=bool)
        restored += len(entry["slots"])
    bank.minute = int(meta["minute"])
    return restored


def chunks(data: bytes, size: int | None = None) -> list[bytes]:
    size = size or CHUNK_BYTES
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


# ---------------------------------------------------------------- the ConfigMaps

class KeepAliveStore:
    """Reads and writes the blob through the operator's API client (ConfigMaps in `namespace`)."""

    def __init__(self, runtime: Any, clock: Any = time.monotonic) -> None:
        self.runtime, self.clock = runtime, clock
        self.namespace = runtime.config.lease_namespace
        self.every = float(runtime.config.keepalive_save_seconds)
        self.minute_seconds = float(runtime.config.function_minute_seconds)
        self.last_save = clock()
        self._writing = threading.Lock()
        self.saved_bytes = 0

    def _config_map(self, index: int, data: bytes, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": f"{NAME}-{index}", "namespace": self.namespace,
                                "labels": {INTERNAL_LABEL: "keepalive-state"}}
        if manifest is not None:
            meta["annotations"] = {MANIFEST_ANNOTATION: json.dumps(manifest, separators=(",", ":"))}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                "binaryData": {"chunk": base64.b64encode(data).decode()}}

    def write(self, data: bytes, minute: int | None) -> None:
        parts = chunks(data)
        if len(parts) > MAX_CHUNKS:
            raise ValueError(f"keep-alive state of {len(data)} bytes is more than {MAX_CHUNKS} chunks")
        manifest = {"format": FORMAT, "chunks": len(parts), "sha256": hashlib.sha256(data).hexdigest(),
                    "minute": minute, "minuteSeconds": self.minute_seconds, "bytes": len(data)}
        for i in range(len(parts) - 1, 0, -1):
            self.runtime.kube.apply(self._config_map(i, parts[i]))
        self.runtime.kube.apply(self._config_map(0, parts[0], manifest))  # the commit
        for i in range(len(parts), MAX_CHUNKS):  # chunks of a larger earlier save
            if not self.runtime.kube.delete("ConfigMap", self.namespace, f"{NAME}-{i}"):
                break
        self.saved_bytes = len(data)

    def read(self) -> bytes | None:
        head = self.runtime.kube.get("ConfigMap", self.namespace, f"{NAME}-0")
        if head is None:
            return None
        manifest = json.loads(((head.get("metadata") or {}).get("annotations") or {}).get(MANIFEST_ANNOTATION, "{}"))
        parts = [base64.b64decode((head.get("binaryData") or {}).get("chunk", ""))]
        for i in range(1, int(manifest.get("chunks", 1))):
            cm = self.runtime.kube.get("ConfigMap", self.namespace, f"{NAME}-{i}")
            if cm is None:
                return None
            parts.append(base64.b64decode((cm.get("binaryData") or {}).get("chunk", "")))
        data = b"".join(parts)
        if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
            log.warning("keep-alive state in %s/%s-*: digest mismatch (a save was interrupted): not restored",
                        self.namespace, NAME)
            return None
        return data

    # ---------------------------------------------------------------- hooks of the scaler
    def restore(self, bank: Any, now: float) -> int:
        """At start: the saved history into the (empty) bank; never fails the scaler."""
        try:
            data = self.read()
            if data is None:
                return 0
            n = restore_bank(bank, data, self.minute_seconds, int(now // self.minute_seconds))
            log.info("keep-alive history of %d functions restored (%d bytes)", n, len(data))
            return n
        except Exception as exc:  # noqa: BLE001 - no history is the old behaviour, not a failure
            log.warning("keep-alive history not restored: %s", exc)
            return 0

    def maybe_save(self, bank: Any, force: bool = False) -> None:
        """Every `every` seconds (after a minute step, in the scaler's thread): serialise now, write in the
        background so a tick never waits for the API server."""
        if not bank.policies or (not force and self.clock() - self.last_save < self.every):
            return
        if not self._writing.acquire(timeout=10.0 if force else 0.0):
            return  # the previous save is still being written (the last one, on stop: waited for)
        self.last_save = self.clock()
        try:
            data = bank_bytes(bank, self.minute_seconds)
        except Exception:
            self._writing.release()
            raise

        def write() -> None:
            try:
                self.write(data, bank.minute)
            except Exception as exc:  # noqa: BLE001 - the next save retries
                log.warning("keep-alive history not saved: %s", exc)
            finally:
                self._writing.release()

        if force:
            write()
        else:
            threading.Thread(target=write, name="cf-keepalive-save", daemon=True).start()
