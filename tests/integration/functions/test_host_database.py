"""A runtime host process whose handlers use context.db on a real PostgreSQL, through the function's own role.

The tenant, its collection and the function role come from backing.postgres (as the operator provisions them);
the host gets the binding as environment variables, exactly as a function pod gets them from its Secret.
"""

from __future__ import annotations

import asyncio

import pytest
import requests

from tests.integration.docdb.conftest import pg, tenant  # noqa: F401 - the session's PostgreSQL and a fresh tenant

pytestmark = pytest.mark.integration

PY = """\
async def main(event, context):
    todos = context.db.collection("todos")
    if event["method"] == "POST":
        return {"id": await todos.add(event["body"])}
    if event["path"] == "/secret":
        return await context.db.collection("secrets").count()
    return await todos.query({"done": False}, sort=[("title", 1)])
"""

JS = """\
exports.main = async (event, context) => {
  const todos = context.db.collection('todos');
  if (event.method === 'POST') return { id: await todos.add(event.body) };
  await todos.update({ done: false }, { $set: { seen: true } });
  return { open: await todos.count({ done: false }), seen: await todos.count({ seen: true }) };
};
"""


@pytest.mark.parametrize("runtime,files", [("python3.11", {"index.py": PY}), ("nodejs20", {"index.js": JS})])
def test_handlers_read_and_write_collections_as_the_function_role(procs, tenant, monkeypatch, runtime, files):  # noqa: F811
    async def provision():
        t = await tenant.setup({"todos": ["done"], "secrets": []})
        role, dsn = await tenant.function("add", {"todos": "readWrite"})  # no grant on "secrets"
        return t, dsn

    t, dsn = asyncio.run(provision())
    for key, value in {"MPCLOUD_DB_DSN": dsn, "MPCLOUD_DB_SCHEMA": t.schema, "MPCLOUD_FUNCTION": "ns/add"}.items():
        monkeypatch.setenv(key, value)
    host = procs.host(runtime, files)
    for title, done in (("milk", False), ("bread", True), ("eggs", False)):
        r = requests.post(f"{host.url}/", json={"title": title, "done": done}, timeout=30)
        assert r.status_code == 200, r.text
    r = requests.get(f"{host.url}/", timeout=30)
    assert r.status_code == 200, r.text
    if runtime == "python3.11":
        assert [d["title"] for d in r.json()] == ["eggs", "milk"] and all("_id" in d for d in r.json())
        denied = requests.get(f"{host.url}/secret", timeout=30)
        assert denied.status_code == 403 and denied.json()["error"]["type"] == "PermissionDenied"
    else:
        assert r.json() == {"open": 2, "seen": 2}
