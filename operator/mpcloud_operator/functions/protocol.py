"""The wire between the runtime host and its language workers, and the HTTP shapes both ends agree on.

Host → worker: JSON lines on the worker's stdin. Worker → host: JSON lines on a pipe whose descriptor the host
passes as `--proto-fd` (the worker's own stdout and stderr stay free for the user's prints, which the host
forwards to its log). One message per line:

- worker → host: `{"type": "ready"}` once the handler loaded, or `{"type": "load_error", "error": {...}}`;
  `{"type": "result", "id", "value"}` / `{"type": "error", "id", "error": {"type", "message", "stack"}}` per
  invocation; `{"type": "rpc", "id", "call", "target": "db"|"storage", "method", "collection"?, "args", "kwargs"}`
  when user code calls `context.db…` or `context.storage…` (the host owns the backing clients).
- host → worker: `{"type": "invoke", "id", "event", "context": {"function", "request_id"}}`;
  `{"type": "rpc_result", "id", "value"}` / `{"type": "rpc_error", "id", "error": {"type", "message"}}`.

Bytes cannot travel in JSON, so they go as `{"$bytes": "<base64>"}` both ways (storage get/put, binary request
bodies, a handler that returns bytes as a response body). Also here: building the event from an HTTP request
and turning a handler's return value or error into an HTTP response (pure, unit-tested).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Mapping

# What a worker may ask the host to run: anything else is refused before it reaches a client library.
DB_METHODS = frozenset({"add", "get", "query", "count", "update", "delete"})
STORAGE_METHODS = frozenset({"put", "get", "delete", "list", "presign_get", "presign_put"})

# error.type → HTTP status, for the host's own errors and for errors that user code let escape.
ERROR_STATUS = {
    "HandlerError": 500,
    "Timeout": 504,
    "InvalidSource": 503,
    "DatabaseUnavailable": 503,
    "StorageUnavailable": 503,
    "PermissionDenied": 403,
    "BadRequest": 400,
    "NotFound": 404,
}

MAX_LINE = 64 << 20  # the longest protocol line either side accepts (bodies are capped lower)
MAX_BODY = 6 << 20  # request bodies the host and the gateway accept, as AWS Lambda's synchronous limit


class ProtocolError(ValueError):
    """A malformed message on the wire (a worker bug, never user input)."""


def encode_bytes(value: Any) -> Any:
    """`value` with every bytes object replaced by {"$bytes": base64}, ready for json.dumps."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: encode_bytes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_bytes(v) for v in value]
    return value


def decode_bytes(value: Any) -> Any:
    """The inverse of encode_bytes."""
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"])
        return {k: decode_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_bytes(v) for v in value]
    return value


def dumps(message: Mapping[str, Any]) -> bytes:
    """One protocol line. Values JSON cannot express (dates, decimals) go as their str()."""
    return json.dumps(encode_bytes(message), separators=(",", ":"), default=str).encode() + b"\n"


def loads(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {line[:200]!r}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(f"not a message: {line[:200]!r}")
    return decode_bytes(message)


def error_body(type_: str, message: str, stack: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message}
    if stack:
        error["stack"] = stack
    return {"error": error}


def error_status(type_: str) -> int:
    return ERROR_STATUS.get(type_, 500)


def build_event(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes,
                content_type: str) -> dict[str, Any]:
    """The event a handler receives. The body is parsed JSON for a JSON content type, text when it is UTF-8,
    {"$bytes"} (bytes / Buffer in the handler) otherwise, None when empty. Bad JSON raises ValueError."""
    parsed: Any = None
    if body:
        if content_type == "application/json" or content_type.endswith("+json"):
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                raise ValueError(f"the request body is not valid JSON: {exc}") from exc
        else:
            try:
                parsed = body.decode("utf-8")
            except UnicodeDecodeError:
                parsed = body
    # A repeated query parameter keeps its last value (the contract's `query` is a flat map).
    return {"method": method, "path": path, "query": dict(query), "headers": {k.lower(): v for k, v in headers.items()},
            "body": parsed}


def _body_bytes(body: Any) -> tuple[bytes, str | None]:
    """A response body and the content type it implies (None: leave it to the handler's headers)."""
    if body is None:
        return b"", None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body, separators=(",", ":"), default=str).encode(), "application/json"


def response_from_result(value: Any) -> tuple[int, dict[str, str], bytes]:
    """A handler's return value → (status, headers, body). An object with `statusCode` is an HTTP response
    (`statusCode`, `headers`, `body`); anything else is a 200 JSON body (None → `null`)."""
    if isinstance(value, dict) and "statusCode" in value:
        try:
            status = int(value["statusCode"])
        except (TypeError, ValueError):
            status = 0
        if not 100 <= status <= 599:
            return response_from_error(
                {"type": "HandlerError", "message": f"the handler returned an invalid statusCode: {value['statusCode']!r}"})
        headers = {str(k): str(v) for k, v in (value.get("headers") or {}).items()}
        body, implied = _body_bytes(value.get("body"))
        if implied and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = implied
        return status, headers, body
    return 200, {"Content-Type": "application/json"}, json.dumps(value, separators=(",", ":"), default=str).encode()


def response_from_error(error: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """A structured error → (status, headers, JSON body)."""
    type_ = str(error.get("type") or "HandlerError")
    body = error_body(type_, str(error.get("message", "")), error.get("stack"))
    return error_status(type_), {"Content-Type": "application/json"}, json.dumps(body).encode()


def check_rpc(message: Mapping[str, Any]) -> str | None:
    """Why an RPC request may not run (None: it may). Only allowlisted methods reach a client library."""
    target, method = message.get("target"), message.get("method")
    if target == "db":
        if method not in DB_METHODS:
            return f"context.db has no method {method!r}"
        if not isinstance(message.get("collection"), str) or not message["collection"]:
            return "context.db.collection(name) needs a collection name"
    elif target == "storage":
        if method not in STORAGE_METHODS:
            return f"context.storage has no method {method!r}"
    else:
        return f"unknown RPC target {target!r}"
    if not isinstance(message.get("args", []), list) or not isinstance(message.get("kwargs", {}), dict):
        return "RPC args must be a list and kwargs an object"
    return None
