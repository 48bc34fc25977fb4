"""The runtime host as a real process, for both runtimes: results, structured errors, timeouts, bad source."""

from __future__ import annotations

import concurrent.futures

import pytest
import requests

from tests.integration.functions.conftest import wait_until

pytestmark = pytest.mark.integration

PY = """\
import time

def main(event, context):
    if event["path"] == "/boom":
        raise ValueError("no such todo")
    if event["path"] == "/slow":
        time.sleep(float(event["query"].get("s", "60")))
    if event["path"] == "/status":
        return {"statusCode": 201, "headers": {"X-Made": "yes"}, "body": {"created": True}}
    return {"hello": event["query"].get("name", "world"), "method": event["method"], "body": event["body"],
            "request_id": context.request_id}
"""

JS = """\
exports.main = async (event, context) => {
  if (event.path === '/boom') throw new RangeError('no such todo');
  if (event.path === '/slow') {
    const until = Date.now() + 1000 * Number(event.query.s || 60);
    while (Date.now() < until) {}  // a runaway synchronous loop: only killing the worker stops it
  }
  if (event.path === '/wait') await new Promise((r) => setTimeout(r, 1000 * Number(event.query.s)));
  if (event.path === '/status') return { statusCode: 201, headers: { 'X-Made': 'yes' }, body: { created: true } };
  return { hello: event.query.name || 'world', method: event.method, body: event.body, request_id: context.request_id };
};
"""

SOURCES = {"python3.11": {"index.py": PY}, "nodejs20": {"index.js": JS}}
RUNTIMES = sorted(SOURCES)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_invoke_returns_the_handlers_result(procs, runtime):
    host = procs.host(runtime, SOURCES[runtime])
    health = requests.get(f"{host.url}/_/health", timeout=5)
    assert health.status_code == 200 and health.json()["ready"] is True and len(health.json()["hash"]) == 64
    r = requests.post(f"{host.url}/hi?name=ada", json={"todo": "milk"}, headers={"X-Request-Id": "req-1"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"hello": "ada", "method": "POST", "body": {"todo": "milk"}, "request_id": "req-1"}
    r = requests.get(f"{host.url}/status", timeout=10)
    assert (r.status_code, r.headers["X-Made"], r.json()) == (201, "yes", {"created": True})


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_handler_error_is_a_structured_500(procs, runtime):
    host = procs.host(runtime, SOURCES[runtime])
    r = requests.get(f"{host.url}/boom", timeout=10)
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["type"] == "HandlerError" and "no such todo" in error["message"]
    assert ("index.py" if runtime.startswith("python") else "index.js") in error["stack"]
    assert "python_worker" not in error["stack"] and "node_worker" not in error["stack"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_timeout_is_504_and_the_instance_keeps_serving(procs, runtime):
    host = procs.host(runtime, SOURCES[runtime], timeout=1)
    r = requests.get(f"{host.url}/slow?s=60", timeout=20)
    assert r.status_code == 504 and r.json()["error"]["type"] == "Timeout"
    r = requests.get(f"{host.url}/again?name=b", timeout=20)  # same process, a fresh worker
    assert r.status_code == 200 and r.json()["hello"] == "b"
    assert host.popen.poll() is None
    assert host.metric("mpcloud_runtime_worker_restarts_total", {"reason": "timeout"}) == 1
    assert host.metric("mpcloud_runtime_invocations_total", {"code": "504"}) == 1


def test_node_timeout_spares_the_other_invocations_on_its_worker(procs):
    host = procs.host("nodejs20", SOURCES["nodejs20"], timeout=2)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(requests.get, f"{host.url}/wait?s=0.5", timeout=20)  # on the same worker
        runaway = pool.submit(requests.get, f"{host.url}/slow?s=60", timeout=20)
        assert runaway.result().status_code == 504
        # The runaway loop blocked the worker, so the other one could not finish either: it is answered by its
        # own deadline, not cut off when the runaway timed out.
        assert waiting.result().status_code in (200, 504)
    assert requests.get(f"{host.url}/ok", timeout=20).status_code == 200


def test_python_pool_runs_invocations_side_by_side(procs):
    host = procs.host("python3.11", SOURCES["python3.11"], concurrency=3)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: requests.get(f"{host.url}/slow?s=0.8", timeout=20), range(3)))
    assert [r.status_code for r in results] == [200] * 3
    # Three sync sleeps of 0.8 s overlapped: three workers, not one after another (metric, not wall time).
    assert host.metric("mpcloud_runtime_invocations_total", {"code": "200"}) == 3


@pytest.mark.parametrize("runtime,files,expected", [
    ("python3.11", {"index.py": "def main(event, context:\n    return 1\n"}, "SyntaxError: '(' was never closed"),
    ("nodejs20", {"index.js": "exports.main = async () => {\n  return {a: 1,,};\n};\n"}, "SyntaxError: Unexpected token ','"),
    ("python3.11", {"index.py": "def other(event, context):\n    return 1\n"}, "index.py defines no function 'main'"),
    ("nodejs20", {"index.js": "exports.other = 1;\n"}, "index.js exports no function 'main'"),
])
def test_bad_source_reports_not_ready_and_invocations_get_invalid_source(procs, runtime, files, expected):
    host = procs.host(runtime, files)
    health = requests.get(f"{host.url}/_/health", timeout=5)
    assert health.status_code == 503
    body = health.json()
    assert body["ready"] is False and body["error"]["type"] == "InvalidSource"
    assert expected in body["error"]["message"]
    if "SyntaxError" in expected:  # the interpreter's own report: file, line, the caret
        assert "index." in body["error"]["message"] and "^" in body["error"]["message"]
    r = requests.get(f"{host.url}/anything", timeout=5)
    assert r.status_code == 503 and r.json()["error"] == body["error"]
    assert host.popen.poll() is None  # serving its error, not crash-looping
    assert requests.get(f"{host.url}/_/live", timeout=5).status_code == 200


def test_metrics_count_invocations_and_errors(procs):
    host = procs.host("python3.11", SOURCES["python3.11"])
    for path in ("/a", "/b", "/boom"):
        requests.get(f"{host.url}{path}", timeout=10)
    wait_until(lambda: host.metric("mpcloud_runtime_invocation_duration_seconds_count") == 3, what="3 observations")
    assert host.metric("mpcloud_runtime_invocations_total", {"code": "200"}) == 2
    assert host.metric("mpcloud_runtime_errors_total", {"type": "HandlerError"}) == 1
    assert host.metric("mpcloud_runtime_ready") == 1
