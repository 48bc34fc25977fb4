"""File storage for function code: `context.storage`, one bucket with the function's own S3 key.

An asyncio facade over the `minio` S3 client (path-style requests, SigV4); each blocking call runs in a thread
executor so a slow upload never stalls the runtime host's event loop. Pre-signed URLs are signed for
`public_endpoint` — the address the mini-program client reaches, which is usually not the one pods use — and
need no credentials to use. Signing is local (the region is given), so presigning works while the server is down.

Errors carry `.type` as the runtime host reports them: `StorageUnavailable` (server unreachable or failing),
`PermissionDenied` (the key may not do this: another tenant's bucket, a write with read access, a revoked key),
`NotFound` (no such object), `BadRequest` (an unusable key or argument).
"""

from __future__ import annotations

import asyncio
import functools
import io
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, TypeVar

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

T = TypeVar("T")
MAX_KEY_BYTES = 1024
MAX_EXPIRES = 7 * 24 * 3600  # SigV4's limit for pre-signed URLs
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "AccountProblem"}
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}


class StorageError(Exception):
    type = "StorageError"


class StorageUnavailable(StorageError):
    type = "StorageUnavailable"


class PermissionDenied(StorageError):
    type = "PermissionDenied"


class NotFound(StorageError):
    type = "NotFound"


class BadRequest(StorageError):
    type = "BadRequest"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "etag": self.etag,
                "lastModified": self.last_modified.isoformat() if self.last_modified else None}


def _host(endpoint: str) -> tuple[str, bool]:
    if "://" in endpoint:
        scheme, _, rest = endpoint.partition("://")
        if scheme not in ("http", "https"):
            raise ValueError(f"S3 endpoint must be http(s)://host:port, got {endpoint!r}")
        return rest.rstrip("/"), scheme == "https"
    return endpoint.rstrip("/"), False


def check_key(key: str) -> str:
    """An object key the client can use: non-empty, at most 1024 UTF-8 bytes, no control characters."""
    if not isinstance(key, str) or not key:
        raise BadRequest("object key must be a non-empty string")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise BadRequest(f"object key is longer than {MAX_KEY_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise BadRequest("object key must not contain control characters")
    return key


def check_expires(expires: int | float) -> timedelta:
    if not 1 <= expires <= MAX_EXPIRES:
        raise BadRequest(f"expires must be between 1 and {MAX_EXPIRES} seconds, got {expires}")
    return timedelta(seconds=int(expires))


def _http(timeout: float) -> urllib3.PoolManager:
    # One quick retry for a dropped keep-alive connection; a server that is down fails in about a second
    # instead of minio's default five retries with back-off.
    return urllib3.PoolManager(timeout=urllib3.Timeout(connect=min(2.0, timeout), read=timeout), maxsize=16,
                               retries=urllib3.Retry(total=1, connect=1, read=0, backoff_factor=0.1,
                                                     status_forcelist=[502, 503, 504], allowed_methods=None))


class Storage:
    """One bucket, one key: the client a function's context hands to its code."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, region: str = "us-east-1",
                 public_endpoint: str | None = None, *, timeout: float = 30.0, executor: Executor | None = None):
        host, secure = _host(endpoint)
        self.endpoint = endpoint
        self.bucket = bucket
        self._executor = executor
        self._http = _http(timeout)
        self._client = Minio(host, access_key=access_key, secret_key=secret_key, secure=secure, region=region,
                             http_client=self._http)
        pub_host, pub_secure = _host(public_endpoint or endpoint)
        self._signer = Minio(pub_host, access_key=access_key, secret_key=secret_key, secure=pub_secure,
                             region=region)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "Storage | None":
        """From the bindings Secret's variables; None when the function has no storage binding."""
        if not env.get("MPCLOUD_S3_ENDPOINT") or not env.get("MPCLOUD_S3_BUCKET"):
            return None
        return cls(env["MPCLOUD_S3_ENDPOINT"], env.get("MPCLOUD_S3_ACCESS_KEY", ""),
                   env.get("MPCLOUD_S3_SECRET_KEY", ""), env["MPCLOUD_S3_BUCKET"],
                   env.get("MPCLOUD_S3_REGION") or "us-east-1", env.get("MPCLOUD_S3_PUBLIC_ENDPOINT") or None)

    def close(self) -> None:
        """Drop pooled connections (the runtime host calls it at shutdown)."""
        self._http.clear()

    async def _run(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except S3Error as exc:
            raise self._translate(what, exc) from exc
        except (ServerError, InvalidResponseError) as exc:
            raise StorageUnavailable(f"storage {what}: the S3 server at {self.endpoint} failed: "
                                     f"{str(exc).splitlines()[0][:300]}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise StorageUnavailable(f"storage {what}: the S3 server at {self.endpoint} is unreachable "
                                     f"({type(exc).__name__})") from exc
        except ValueError as exc:  # minio's own argument checks (bucket name, lengths)
            raise BadRequest(f"storage {what}: {exc}") from exc

    def _translate(self, what: str, exc: S3Error) -> StorageError:
        if exc.code in _DENIED:
            return PermissionDenied(f"storage {what}: access denied to bucket {self.bucket} ({exc.code})")
        if exc.code in _MISSING:
            return NotFound(f"storage {what}: {exc.code} in bucket {self.bucket}")
        status = getattr(exc.response, "status", 500)
        if status >= 500:
            return StorageUnavailable(f"storage {what}: the S3 server at {self.endpoint} failed: {exc.code}: "
                                      f"{exc.message}")
        return BadRequest(f"storage {what}: {exc.code}: {exc.message}")

    async def put(self, key: str, data: bytes | str, content_type: str = "application/octet-stream") -> dict:
        """Store `data` under `key` (str is stored as UTF-8); returns {"key", "size", "etag"}."""
        check_key(key)
        if isinstance(data, str):
            data = data.encode()
            if content_type == "application/octet-stream":
                content_type = "text/plain; charset=utf-8"
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BadRequest(f"data must be bytes or str, not {type(data).__name__}")
        size = len(data)
        result = await self._run(f"put {key!r}", self._client.put_object, self.bucket, key, io.BytesIO(data), size,
                                 content_type=content_type)
        return {"key": key, "size": size, "etag": (result.etag or "").strip('"')}

    async def get(self, key: str) -> bytes:
        check_key(key)
        return await self._run(f"get {key!r}", self._get, key)

    def _get(self, key: str) -> bytes:
        resp = self._client.get_object(self.bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    async def delete(self, key: str) -> None:
        """Remove `key`; removing a key that is not there is not an error (as in S3)."""
        check_key(key)
        await self._run(f"delete {key!r}", self._client.remove_object, self.bucket, key)

    async def list(self, prefix: str = "", limit: int = 1000) -> list[dict]:
        """Objects under `prefix` (all levels), in key order, at most `limit`."""
        if limit < 1:
            raise BadRequest("limit must be at least 1")
        infos = await self._run(f"list {prefix!r}", self._list, prefix, limit)
        return [i.to_dict() for i in infos]

    def _list(self, prefix: str, limit: int) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        for obj in self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True):
            out.append(ObjectInfo(obj.object_name or "", obj.size or 0, (obj.etag or "").strip('"'),
                                  obj.last_modified))
            if len(out) >= limit:
                break
        return out

    async def presign_get(self, key: str, expires: int = 3600) -> str:
        """A URL anyone can GET the object with until it expires (signed locally for the public endpoint)."""
        check_key(key)
        return self._signer.presigned_get_object(self.bucket, key, expires=check_expires(expires))

    async def presign_put(self, key: str, expires: int = 3600) -> str:
        """A URL anyone can PUT the object's bytes to until it expires."""
        check_key(key)
        return self._signer.presigned_put_object(self.bucket, key, expires=check_expires(expires))
