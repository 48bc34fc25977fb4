"""context.db / context.storage from user code to the host's clients, with in-memory doubles of the clients.

The host runs in this process (aiohttp test server) and its workers are real Python / Node processes; only the
backing clients are doubles (injected through `Host(backends=...)`; integration tests use the real ones).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mpcloud_operator.functions.backends import Backends
from mpcloud_operator.functions.host import Host, code_hash, language


class DatabaseUnavailable(Exception):
    type = "DatabaseUnavailable"


class MemoryCollection:
    def __init__(self, docs: dict, name: str) -> None:
        self.docs, self.name, self.ids = docs.setdefault(name, {}), name, itertools.count(1)

    async def add(self, doc):
        if doc.get("fail"):
            raise DatabaseUnavailable("the database is down")
        _id = f"{self.name}-{next(self.ids)}"
        self.docs[_id] = {**doc, "_id": _id}
        return _id

    async def get(self, id):  # noqa: A002
        return self.docs.get(id)

    async def query(self, where=None, sort=None, limit=100, skip=0):
        rows = [d for d in self.docs.values() if all(d.get(k) == v for k, v in (where or {}).items())]
        for field, direction in reversed(sort or []):
            rows.sort(key=lambda d: d[field], reverse=direction == -1)
        return rows[skip: skip + limit]

    async def count(self, where=None):
        return len(await self.query(where, limit=10**9))


class MemoryDatabase:
    def __init__(self) -> None:
        self.docs: dict = {}
        self.collections: dict = {}

    def collection(self, name):
        return self.collections.setdefault(name, MemoryCollection(self.docs, name))


class MemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, key, data, content_type):
        self.objects[key] = data

    async def get(self, key):
        return self.objects[key]

    async def list(self, prefix):
        return sorted(k for k in self.objects if k.startswith(prefix))

    async def presign_get(self, key, expires):
        return f"http://s3.example/{key}?expires={expires}"


PY = """\
async def main(event, context):
    todos = context.db.collection("todos")
    if event["path"] == "/down":
        await todos.add({"fail": True})
    first = await todos.add({"title": "milk", "done": False})
    await todos.add({"title": "bread", "done": True})
    await context.storage.put("pics/1.png", b"\\x89PNG")
    return {"id": first, "open": await todos.query({"done": False}, sort=[("title", 1)]),
            "count": await todos.count(), "pic": (await context.storage.get("pics/1.png")).hex(),
            "keys": await context.storage.list("pics/"), "url": await context.storage.presign_get("pics/1.png", 60)}
"""

PY_SYNC = """\
def main(event, context):
    todos = context.db.collection("todos")
    todos.add({"title": "tea"})
    context.storage.put("a.txt", "text is stored as UTF-8")
    return {"count": todos.count(), "a": context.storage.get("a.txt").decode()}
"""

JS = """\
exports.main = async (event, context) => {
  const todos = context.db.collection('todos');
  if (event.path === '/down') await todos.add({ fail: true });
  const first = await todos.add({ title: 'milk', done: false });
  await context.storage.put('pics/1.png', Buffer.from([0x89, 0x50]));
  const pic = await context.storage.get('pics/1.png');
  return { id: first, open: await todos.query({ done: false }), pic: pic.toString('hex'),
           url: await context.storage.presignGet('pics/1.png', 60) };
};
"""


async def _run(runtime: str, files: dict[str, str], tmp_path, calls, backends=None):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    host = Host(runtime, str(tmp_path), "index.main", timeout=10, concurrency=2, env={"MPCLOUD_FUNCTION": "todo/add"},
                backends=backends or Backends({}, db=MemoryDatabase(), storage=MemoryStorage()))
    async with TestClient(TestServer(host.app())) as client:
        out = []
        for method, path in calls:
            resp = await client.request(method, path)
            out.append((resp.status, await resp.json()))
        return out, host


def test_python_handler_reaches_db_and_storage_through_the_host(tmp_path):
    (first, down), _ = asyncio.run(_run("python3.11", {"index.py": PY}, tmp_path, [("POST", "/"), ("GET", "/down")]))
    assert first == (200, {"id": "todos-1", "open": [{"title": "milk", "done": False, "_id": "todos-1"}], "count": 2,
                           "pic": "89504e47", "keys": ["pics/1.png"], "url": "http://s3.example/pics/1.png?expires=60"})
    # An error of the database reaches the handler typed; uncaught, it becomes the response.
    assert down[0] == 503 and down[1]["error"]["type"] == "DatabaseUnavailable"
    assert "the database is down" in down[1]["error"]["message"]


def test_sync_python_handler_calls_block_instead_of_awaiting(tmp_path):
    (result,), _ = asyncio.run(_run("python3.11", {"index.py": PY_SYNC}, tmp_path, [("GET", "/")]))
    assert result == (200, {"count": 1, "a": "text is stored as UTF-8"})


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_handler_reaches_db_and_storage_through_the_host(tmp_path):
    (first, down), _ = asyncio.run(_run("nodejs20", {"index.js": JS}, tmp_path, [("POST", "/"), ("GET", "/down")]))
    assert first == (200, {"id": "todos-1", "open": [{"title": "milk", "done": False, "_id": "todos-1"}],
                           "pic": "8950", "url": "http://s3.example/pics/1.png?expires=60"})
    assert down[0] == 503 and down[1]["error"]["type"] == "DatabaseUnavailable"


def test_unbound_function_gets_permission_denied_and_only_allowlisted_methods_run(tmp_path):
    py = """\
async def main(event, context):
    return await context.db.collection("todos").count()
"""
    (unbound,), _ = asyncio.run(_run("python3.11", {"index.py": py}, tmp_path, [("GET", "/")], backends=Backends({})))
    assert unbound[0] == 403 and unbound[1]["error"]["type"] == "PermissionDenied"
    assert "no database binding" in unbound[1]["error"]["message"]

    # The workers' API cannot name other methods, so the allowlist is exercised on the host's side directly.
    async def direct():
        from mpcloud_operator.functions.pool import RpcError

        backends = Backends({}, db=MemoryDatabase())
        with pytest.raises(RpcError) as info:
            await backends.call({"type": "rpc", "target": "db", "method": "_pool", "collection": "t", "args": []})
        assert info.value.type == "BadRequest"
        with pytest.raises(RpcError) as info:
            await backends.call({"type": "rpc", "target": "db", "method": "add", "collection": "t", "args": [1, 2, 3]})
        assert info.value.type == "BadRequest"  # wrong arguments are the caller's mistake

    asyncio.run(direct())


def test_language_and_code_hash(tmp_path):
    assert language("python3.11") == "python" and language("nodejs20") == "node"
    with pytest.raises(ValueError):
        language("go1.22")
    (tmp_path / "index.py").write_text("x")
    before = code_hash(str(tmp_path))
    (tmp_path / "index.py").write_text("y")
    assert code_hash(str(tmp_path)) != before and len(before) == 64
