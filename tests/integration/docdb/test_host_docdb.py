"""The runtime host's `context.db` on a real PostgreSQL (no cluster), through the function's own role as the
operator provisions it: Python and Node handlers (add, query, update, count), errors as JSON, the server down and
back with nothing lost."""

from __future__ import annotations

import pytest
import requests

from tests.integration.functions.conftest import Processes

pytestmark = pytest.mark.integration

PY = """\
async def main(event, context):
    todos = context.db.collection("todos")
    if event["path"] == "/add":
        return {"id": await todos.add(event["body"])}
    if event["path"] == "/secrets":
        return await context.db.collection("secrets").count()
    return {"count": await todos.count(), "open": await todos.query({"done": False}, sort=[("n", -1)], limit=2)}
"""

JS = """\
exports.main = async (event, context) => {
  const todos = context.db.collection('todos');
  if (event.path === '/add') return { id: await todos.add(event.body) };
  if (event.path === '/seen') {
    await todos.update({ done: false }, { $set: { seen: true } });
    return { seen: await todos.count({ seen: true }) };
  }
  const open = await todos.query({ done: false }, [['n', -1]], 2);
  return { count: await todos.count(), open };
};
"""


def test_handlers_use_the_document_api_and_see_clear_errors(tenant, pg, tmp_path, monkeypatch):
    async def provision():
        await tenant.setup({"todos": ["n"], "secrets": []})
        _, dsn = await tenant.function("fn", {"todos": "readWrite"})
        monkeypatch.setenv("MPCLOUD_DB_DSN", dsn)
        monkeypatch.setenv("MPCLOUD_DB_SCHEMA", tenant.tenant.schema)

    tenant.run(provision)
    procs = Processes(tmp_path)
    try:
        py = procs.host("python3.11", {"index.py": PY})
        js = procs.host("nodejs20", {"index.js": JS})
        for i, host in enumerate([py, js, py]):
            r = requests.post(f"{host.url}/add", json={"n": i, "done": i == 1}, timeout=10)
            assert r.status_code == 200 and len(r.json()["id"]) == 24, r.text
        for host in (py, js):
            body = requests.get(f"{host.url}/list", timeout=10).json()
            assert body["count"] == 3 and [d["n"] for d in body["open"]] == [2, 0], body
        r = requests.post(f"{js.url}/seen", timeout=10)  # Node's update() through the same role
        assert r.status_code == 200 and r.json() == {"seen": 2}, r.text

        r = requests.get(f"{py.url}/secrets", timeout=10)
        assert r.status_code == 403 and r.json()["error"]["type"] == "PermissionDenied", r.text
        r = requests.post(f"{py.url}/add", json=[1], timeout=10)
        assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequest", r.text

        pg.down()
        try:
            for host in (py, js):
                r = requests.get(f"{host.url}/list", timeout=20)
                assert r.status_code == 503, r.text
                err = r.json()["error"]
                assert err["type"] == "DatabaseUnavailable" and "retry" in err["message"], err
        finally:
            pg.up()
        for host in (py, js):  # the first call after the restart works, and every document is there
            body = requests.get(f"{host.url}/list", timeout=10).json()
            assert body["count"] == 3, body
    finally:
        for proc in procs.started:
            proc.stop()
