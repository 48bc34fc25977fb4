"""Language worker processes and the pool the runtime host runs invocations on.

A `WorkerProcess` is one `python_worker.py` or `node_worker.js` child speaking `protocol`: it takes up to
`capacity` invocations at once (1 for Python, the host's concurrency for Node). The `WorkerPool` keeps at most
`concurrency` invocations running, reserves a slot on a worker with room (a starting one counts, so concurrent
requests never spawn more than they need) and starts workers lazily, so an instance is ready as soon as its
first worker has loaded the code.

Why processes per invocation for Python and one process for Node: a Python handler is often synchronous and
CPU-bound (the GIL would serialise it, and a thread cannot be stopped), while Node handlers are asynchronous by
contract and cheap to multiplex. Either way a timed-out invocation *retires* its worker: it gets no new work, a
fresh one takes its place, and it is killed (its whole process group) once the invocations still running on it
have finished or timed out themselves. So a runaway handler costs only what it already holds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from mpcloud_operator.functions import protocol

log = logging.getLogger("mpcloud.functions.pool")

RpcHandler = Callable[[dict[str, Any]], Awaitable[Any]]


class WorkerGone(Exception):
    """The worker exited (or was killed) while an invocation ran on it."""


@dataclass
class Outcome:
    """What an invocation ended with: a value, or a structured error (`error` = {"type", "message", ...})."""

    value: Any = None
    error: dict[str, Any] | None = None


class WorkerProcess:
    def __init__(self, argv: list[str], env: dict[str, str], capacity: int, on_rpc: RpcHandler,
                 on_exit: Callable[["WorkerProcess"], None]) -> None:
        self.argv, self.env, self.capacity = argv, env, capacity
        self.on_rpc, self.on_exit = on_rpc, on_exit
        self.proc: asyncio.subprocess.Process | None = None
        self.calls: dict[int, asyncio.Future] = {}
        self.reserved = 0  # slots taken by invocations (sent or about to be)
        self.retired = False
        self.alive = True
        self.started: asyncio.Future = asyncio.get_running_loop().create_future()  # None or a load error
        self._reader: asyncio.Task | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._rpc_tasks: set[asyncio.Task] = set()

    @property
    def has_room(self) -> bool:
        return self.alive and not self.retired and self.reserved < self.capacity

    async def start(self, load_timeout: float) -> dict[str, Any] | None:
        """Spawn and wait for the handler to load; the load error (structured) or None."""
        try:
            error = await asyncio.wait_for(self._start(), load_timeout)
        except asyncio.TimeoutError:
            error = {"type": "InvalidSource", "message": f"the handler did not load within {load_timeout:g} s"}
        except OSError as exc:
            error = {"type": "InvalidSource", "message": f"cannot start the language worker: {exc}"}
        if error is not None:
            self.kill()
        if not self.started.done():
            self.started.set_result(error)
        return error

    async def _start(self) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        try:
            # The worker's stdout/stderr are the host's (its log); replies come on their own pipe.
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, "--proto-fd", str(write_fd), stdin=asyncio.subprocess.PIPE, pass_fds=(write_fd,),
                env=self.env, start_new_session=True)
        finally:
            os.close(write_fd)
        reader = asyncio.StreamReader(limit=protocol.MAX_LINE)
        self._transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                          os.fdopen(read_fd, "rb", 0))
        first = await reader.readline()
        if not first:
            code = await self.proc.wait()
            return {"type": "InvalidSource", "message": f"the language worker exited with code {code} while loading"}
        message = protocol.loads(first)
        if message["type"] == "load_error":
            return message.get("error") or {"type": "InvalidSource", "message": "the handler failed to load"}
        self._reader = loop.create_task(self._read(reader))
        return None

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                message = protocol.loads(line)
                kind = message["type"]
                if kind in ("result", "error"):
                    future = self.calls.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(Outcome(message.get("value"), message.get("error") if kind == "error" else None))
                elif kind == "rpc":
                    task = asyncio.get_running_loop().create_task(self._rpc(message))
                    self._rpc_tasks.add(task)
                    task.add_done_callback(self._rpc_tasks.discard)
        except (protocol.ProtocolError, ValueError) as exc:
            log.error("worker %s spoke garbage, killing it: %s", self.pid, exc)
        finally:
            self._gone()

    async def _rpc(self, message: dict[str, Any]) -> None:
        try:
            reply = {"type": "rpc_result", "id": message["id"], "value": await self.on_rpc(message)}
        except RpcError as exc:
            reply = {"type": "rpc_error", "id": message["id"], "error": {"type": exc.type, "message": str(exc)}}
        self.send(reply)

    def send(self, message: dict[str, Any]) -> None:
        if self.alive and self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.write(protocol.dumps(message))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def invoke(self, call_id: int, event: dict[str, Any], context: dict[str, Any]) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if not self.alive:
            future.set_exception(WorkerGone())
            return future
        self.calls[call_id] = future
        self.send({"type": "invoke", "id": call_id, "event": event, "context": context})
        return future

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the handler's own children too
            except ProcessLookupError:
                pass
        self._gone()

    def _gone(self) -> None:
        if not self.alive:
            return
        self.alive = False
        for future in self.calls.values():
            if not future.done():
                future.set_exception(WorkerGone())
        self.calls.clear()
        for task in self._rpc_tasks:
            task.cancel()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if self._transport is not None:
            self._transport.close()
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc is not None:
            asyncio.get_running_loop().create_task(self.proc.wait())  # reap it
        self.on_exit(self)


class RpcError(Exception):
    """A context.db / context.storage call that failed; `.type` is the error type the handler sees."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_


class WorkerPool:
    """At most `concurrency` invocations at once, on lazily started workers of `capacity` slots each."""

    def __init__(self, argv: list[str], env: dict[str, str], concurrency: int, capacity: int, on_rpc: RpcHandler,
                 load_timeout: float = 30.0, on_restart: Callable[[str], None] = lambda reason: None) -> None:
        self.argv, self.env, self.capacity, self.on_rpc = argv, env, capacity, on_rpc
        self.concurrency, self.load_timeout, self.on_restart = concurrency, load_timeout, on_restart
        self.workers: list[WorkerProcess] = []  # those that take new work
        self.retiring: set[WorkerProcess] = set()  # timed out: killed once their other invocations end
        self.slots = asyncio.Semaphore(concurrency)
        self.ids = itertools.count(1)
        self.inflight = 0

    async def start(self) -> dict[str, Any] | None:
        """Start the first worker: the load error of the user's code, or None when it loaded."""
        worker = self._spawn()
        return await worker.started

    def _spawn(self) -> WorkerProcess:
        worker = WorkerProcess(self.argv, self.env, self.capacity, self.on_rpc, self._exited)
        self.workers.append(worker)
        asyncio.get_running_loop().create_task(worker.start(self.load_timeout))
        return worker

    def _exited(self, worker: WorkerProcess) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
            if not worker.retired and worker.started.done() and worker.started.result() is None:
                self.on_restart("exit")  # it died on its own (os._exit, a crash, the OOM killer)

    def _reserve(self) -> WorkerProcess:
        # No await between the check and the reservation: concurrent requests cannot both take the last slot.
        candidates = [w for w in self.workers if w.has_room]
        ready = [w for w in candidates if w.started.done()]
        worker = min(ready or candidates, key=lambda w: w.reserved, default=None) or self._spawn()
        worker.reserved += 1
        return worker

    def _release(self, worker: WorkerProcess) -> None:
        worker.reserved -= 1
        if worker.retired and worker.reserved == 0:
            worker.kill()
            self.retiring.discard(worker)

    def _retire(self, worker: WorkerProcess) -> None:
        if not worker.retired:
            worker.retired = True
            self.on_restart("timeout")
            self.retiring.add(worker)
            if worker in self.workers:
                self.workers.remove(worker)
            if not any(w.has_room for w in self.workers):
                self._spawn()  # the replacement loads while the timed-out request is answered

    async def run(self, event: dict[str, Any], context: dict[str, Any], timeout: float) -> Outcome:
        async with self.slots:
            worker = self._reserve()
            self.inflight += 1
            try:
                error = await worker.started
                if error is not None:
                    return Outcome(error=error)
                call_id = next(self.ids)
                future = worker.invoke(call_id, event, context)
                try:
                    return await asyncio.wait_for(future, timeout)
                except asyncio.TimeoutError:
                    worker.calls.pop(call_id, None)
                    self._retire(worker)
                    return Outcome(error={"type": "Timeout",
                                          "message": f"the handler did not finish within {timeout:g} s; it was stopped"})
                except WorkerGone:
                    code = worker.proc.returncode if worker.proc else None
                    return Outcome(error={"type": "HandlerError",
                                          "message": f"the language worker exited (code {code}) during the invocation"})
            finally:
                self.inflight -= 1
                self._release(worker)

    async def close(self) -> None:
        everyone = [*self.workers, *self.retiring]
        for worker in everyone:
            worker.retired = True
            worker.kill()
        await asyncio.gather(*(w.proc.wait() for w in everyone if w.proc is not None), return_exceptions=True)
        self.workers.clear()
        self.retiring.clear()
