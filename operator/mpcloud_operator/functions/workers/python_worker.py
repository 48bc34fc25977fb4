"""The Python language worker: loads the user's handler and runs one invocation at a time for the host.

Started by the host as `python3 python_worker.py --code-dir DIR --handler index.main --proto-fd N`; speaks
`mpcloud_operator.functions.protocol` (requests on stdin, replies on descriptor N). One invocation at a time:
the host runs a pool of these for concurrency, so a CPU-bound or runaway handler holds only its own process,
and a timeout kills exactly that one.

`def main(event, context)` may be sync or async. `context.db` / `context.storage` calls are RPCs to the host:
awaitable when called from async code (the worker's event loop), blocking when called from a sync handler
(which runs in a thread so the loop stays free to receive the reply).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import itertools
import json
import os
import sys
import traceback
from typing import Any

from mpcloud_operator.functions import protocol

WORKER_FILE = os.path.abspath(__file__)
STDLIB = os.path.dirname(os.path.abspath(os.__file__))


class FunctionError(Exception):
    """An error from a backing service (DatabaseUnavailable, PermissionDenied, ...); `.type` names it."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_


def _user_stack(exc: BaseException) -> str:
    """The traceback without the worker's own frames (users debug their code, not ours)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.abspath(f.filename) != WORKER_FILE and not os.path.abspath(f.filename).startswith(STDLIB + os.sep)]
    return "".join(["Traceback (most recent call last):\n", *traceback.format_list(frames),
                    *traceback.format_exception_only(type(exc), exc)])


class Worker:
    def __init__(self, code_dir: str, handler: str, out_fd: int) -> None:
        self.code_dir, self.handler_name, self.out_fd = code_dir, handler, out_fd
        self.loop = asyncio.get_running_loop()
        self.rpc_ids = itertools.count(1)
        self.rpcs: dict[int, asyncio.Future] = {}
        self.handler: Any = None

    def send(self, message: dict[str, Any]) -> None:
        data = protocol.dumps(message)
        while data:  # a pipe write may be partial for long lines
            data = data[os.write(self.out_fd, data):]

    def load(self) -> dict[str, Any] | None:
        """Import the handler; the load error as the interpreter reports it, or None."""
        stem, _, fn = self.handler_name.rpartition(".")
        path = os.path.join(self.code_dir, stem.replace(".", os.sep) + ".py")
        if not stem or not fn:
            return {"type": "InvalidSource", "message": f"handler {self.handler_name!r} must be <file>.<function>"}
        if not os.path.isfile(path):
            return {"type": "InvalidSource", "message": f"handler file {os.path.relpath(path, self.code_dir)} not found"}
        sys.path.insert(0, self.code_dir)
        try:
            spec = importlib.util.spec_from_file_location(stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[stem] = module
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            return {"type": "InvalidSource", "message": "".join(traceback.format_exception_only(type(exc), exc))}
        except BaseException as exc:  # noqa: BLE001 - any failure at import is the user's code failing to load
            return {"type": "InvalidSource", "message": "".join(traceback.format_exception_only(type(exc), exc)).strip(),
                    "stack": _user_stack(exc)}
        self.handler = getattr(module, fn, None)
        if not callable(self.handler):
            return {"type": "InvalidSource", "message": f"{os.path.basename(path)} defines no function {fn!r}"}
        return None

    # ------------------------------------------------------------------ RPC to the host
    async def rpc(self, call: int, target: str, method: str, collection: str | None, args: list, kwargs: dict) -> Any:
        rpc_id = next(self.rpc_ids)
        future = self.loop.create_future()
        self.rpcs[rpc_id] = future
        message = {"type": "rpc", "id": rpc_id, "call": call, "target": target, "method": method,
                   "args": list(args), "kwargs": kwargs}
        if collection is not None:
            message["collection"] = collection
        self.send(message)
        try:
            return await future
        finally:
            self.rpcs.pop(rpc_id, None)

    def call(self, call: int, target: str, method: str, collection: str | None, args: tuple, kwargs: dict) -> Any:
        """Awaitable in the loop's thread, blocking in a sync handler's thread."""
        coro = self.rpc(call, target, method, collection, list(args), kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        return coro

    # ------------------------------------------------------------------ invocations
    async def invoke(self, message: dict[str, Any]) -> None:
        call = message["id"]
        context = Context(self, call, message.get("context") or {})
        try:
            if inspect.iscoroutinefunction(self.handler):
                value = await self.handler(message["event"], context)
            else:
                value = await self.loop.run_in_executor(None, self.handler, message["event"], context)
                if inspect.isawaitable(value):
                    value = await value
            self.send({"type": "result", "id": call, "value": value})
        except BaseException as exc:  # noqa: BLE001 - every failure of user code becomes a structured error
            type_ = exc.type if isinstance(exc, FunctionError) else "HandlerError"
            self.send({"type": "error", "id": call, "error": {"type": type_, "message": f"{type(exc).__name__}: {exc}",
                                                              "stack": _user_stack(exc)}})

    def on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "invoke":
            self.loop.create_task(self.invoke(message))
        elif kind in ("rpc_result", "rpc_error"):
            future = self.rpcs.get(message["id"])
            if future is None or future.done():
                return
            if kind == "rpc_result":
                future.set_result(message.get("value"))
            else:
                error = message.get("error") or {}
                future.set_exception(FunctionError(error.get("type", "HandlerError"), error.get("message", "")))


class Collection:
    """`context.db.collection(name)`: the document API (see mpcloud_operator.functions.docdb)."""

    def __init__(self, worker: Worker, call: int, name: str) -> None:
        self._worker, self._call, self.name = worker, call, name

    def _rpc(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._worker.call(self._call, "db", method, self.name, args, kwargs)

    def add(self, doc): return self._rpc("add", doc)  # noqa: E704
    def get(self, id): return self._rpc("get", id)  # noqa: E704,A002
    def query(self, where=None, sort=None, limit=100, skip=0): return self._rpc("query", where, sort, limit, skip)  # noqa: E704
    def count(self, where=None): return self._rpc("count", where)  # noqa: E704
    def update(self, id_or_where, change): return self._rpc("update", id_or_where, change)  # noqa: E704
    def delete(self, id_or_where): return self._rpc("delete", id_or_where)  # noqa: E704


class Database:
    def __init__(self, worker: Worker, call: int) -> None:
        self._worker, self._call = worker, call

    def collection(self, name: str) -> Collection:
        return Collection(self._worker, self._call, name)


class Storage:
    """`context.storage`: the function's file bucket (see mpcloud_operator.functions.storage)."""

    def __init__(self, worker: Worker, call: int) -> None:
        self._worker, self._call = worker, call

    def _rpc(self, method: str, *args: Any) -> Any:
        return self._worker.call(self._call, "storage", method, None, args, {})

    def put(self, key, data, content_type="application/octet-stream"):  # noqa: E301
        return self._rpc("put", key, data.encode() if isinstance(data, str) else data, content_type)

    def get(self, key): return self._rpc("get", key)  # noqa: E704
    def delete(self, key): return self._rpc("delete", key)  # noqa: E704
    def list(self, prefix=""): return self._rpc("list", prefix)  # noqa: E704
    def presign_get(self, key, expires=3600): return self._rpc("presign_get", key, expires)  # noqa: E704
    def presign_put(self, key, expires=3600): return self._rpc("presign_put", key, expires)  # noqa: E704


class Log:
    """`context.log`: one JSON line per call on stderr, tagged with the request id."""

    def __init__(self, function: str, request_id: str) -> None:
        self._function, self._request_id = function, request_id

    def _write(self, level: str, message: Any) -> None:
        print(json.dumps({"level": level, "function": self._function, "request_id": self._request_id,
                          "message": message if isinstance(message, str) else repr(message)}), file=sys.stderr, flush=True)

    def info(self, message): self._write("info", message)  # noqa: E704
    def warning(self, message): self._write("warning", message)  # noqa: E704
    def error(self, message): self._write("error", message)  # noqa: E704
    __call__ = info


class Context:
    def __init__(self, worker: Worker, call: int, info: dict[str, Any]) -> None:
        self.function = info.get("function", "")
        self.request_id = info.get("request_id", "")
        self.db = Database(worker, call)
        self.storage = Storage(worker, call)
        self.log = Log(self.function, self.request_id)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--proto-fd", type=int, required=True)
    args = parser.parse_args()
    worker = Worker(os.path.abspath(args.code_dir), args.handler, args.proto_fd)
    os.chdir(worker.code_dir)
    error = worker.load()
    if error:
        worker.send({"type": "load_error", "error": error})
        return
    reader = asyncio.StreamReader(limit=protocol.MAX_LINE)
    await worker.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker.send({"type": "ready"})
    while line := await reader.readline():
        worker.on_message(protocol.loads(line))


if __name__ == "__main__":
    asyncio.run(main())
