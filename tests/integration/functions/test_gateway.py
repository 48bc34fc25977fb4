"""The gateway as a real process in front of real runtime hosts, with routes from a static file."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import requests

from tests.integration.functions.conftest import wait_until, write_routes
from tests.integration.functions.test_runtime_host import SOURCES

pytestmark = pytest.mark.integration


def test_routes_by_namespace_name_and_custom_path(procs, tmp_path):
    py = procs.host("python3.11", SOURCES["python3.11"])
    js = procs.host("nodejs20", SOURCES["nodejs20"])
    routes = tmp_path / "routes.json"
    write_routes(routes, [
        {"namespace": "todo", "name": "add", "path": "/todo/add", "endpoints": [f"127.0.0.1:{py.port}"]},
        {"namespace": "todo", "name": "list", "endpoints": [f"127.0.0.1:{js.port}"]},
    ])
    gw = procs.gateway(routes)
    r = requests.post(f"{gw.url}/todo/add/x?name=ada", json={"t": 1}, timeout=10)
    assert r.status_code == 200 and r.json()["hello"] == "ada" and r.json()["body"] == {"t": 1}
    assert len(r.json()["request_id"]) == 32  # the gateway names each request for the instance's logs
    r = requests.get(f"{gw.url}/todo/list/status", timeout=10)
    assert r.status_code == 201 and r.headers["X-Made"] == "yes"
    r = requests.get(f"{gw.url}/todo/add/boom", timeout=10)  # /<ns>/<name> works beside the custom path
    assert r.status_code == 500 and r.json()["error"]["type"] == "HandlerError"
    r = requests.get(f"{gw.url}/todo/nope", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotFound"
    assert gw.metric("mpcloud_function_requests_total", {"namespace": "todo", "function": "add", "code": "200"}) == 1
    assert gw.metric("mpcloud_function_requests_total", {"namespace": "todo", "function": "add", "code": "500"}) == 1


def test_request_at_zero_instances_is_buffered_until_an_instance_is_routed(procs, tmp_path, demand):
    routes = tmp_path / "routes.json"
    write_routes(routes, [{"namespace": "todo", "name": "add"}])
    gw = procs.gateway(routes, demand_url=demand.url)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sent = time.monotonic()
        pending = pool.submit(requests.get, f"{gw.url}/todo/add/hi?name=cold", timeout=60)
        # Demand is pushed at once, not on the next tick.
        first = wait_until(lambda: [p for p in demand.posts if p[1]["waiting"] == 1], what="a demand POST")[0]
        assert first[0] - sent < 1.0
        assert {k: first[1][k] for k in ("namespace", "name", "inFlight", "instances")} == \
            {"namespace": "todo", "name": "add", "inFlight": 0, "instances": 0}
        assert not pending.done()
        # The "operator" scales up: an instance starts and the routes learn of it.
        host = procs.host("python3.11", SOURCES["python3.11"])
        write_routes(routes, [{"namespace": "todo", "name": "add", "endpoints": [f"127.0.0.1:{host.port}"]}])
        r = pending.result(timeout=60)
    assert r.status_code == 200 and r.json()["hello"] == "cold"
    labels = {"namespace": "todo", "function": "add", "start": "pod"}
    assert gw.metric("mpcloud_function_cold_start_seconds_count", labels) == 1
    assert gw.metric("mpcloud_function_cold_start_seconds_sum", labels) > 0
    # While it waited (the host took a while to start) the POSTs repeated every second.
    waiting_posts = [t for t, body in demand.posts if body["waiting"]]
    if waiting_posts[-1] - waiting_posts[0] >= 1.5:
        assert len(waiting_posts) >= 2
    wait_until(lambda: any(b["coldStarts"] == 1 for _, b in demand.posts), what="a POST counting the cold start")


def test_buffered_request_gets_503_after_the_deadline(procs, tmp_path):
    routes = tmp_path / "routes.json"
    write_routes(routes, [{"namespace": "todo", "name": "idle"}])
    gw = procs.gateway(routes, queue_timeout=1)
    r = requests.get(f"{gw.url}/todo/idle/", timeout=30)
    assert r.status_code == 503 and r.json()["error"]["type"] == "Unavailable"
    assert "ready instance" in r.json()["error"]["message"]


def test_timeout_through_the_gateway_then_served_by_the_same_instance(procs, tmp_path):
    host = procs.host("nodejs20", SOURCES["nodejs20"], timeout=1)
    routes = tmp_path / "routes.json"
    write_routes(routes, [{"namespace": "t", "name": "f", "timeoutSeconds": 1, "endpoints": [f"127.0.0.1:{host.port}"]}])
    gw = procs.gateway(routes)
    r = requests.get(f"{gw.url}/t/f/slow?s=60", timeout=30)
    assert r.status_code == 504 and r.json()["error"]["type"] == "Timeout"
    assert requests.get(f"{gw.url}/t/f/ok", timeout=30).status_code == 200


def test_concurrency_limit_queues_the_excess_and_demand_sees_it(procs, tmp_path, demand):
    host = procs.host("python3.11", SOURCES["python3.11"], concurrency=4)
    routes = tmp_path / "routes.json"
    write_routes(routes, [{"namespace": "t", "name": "f", "concurrency": 1, "maxInstances": 1,
                           "endpoints": [f"127.0.0.1:{host.port}"]}])
    gw = procs.gateway(routes, demand_url=demand.url)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: requests.get(f"{gw.url}/t/f/slow?s=0.4", timeout=30), range(3)))
    assert [r.status_code for r in results] == [200] * 3
    # One at a time through the gateway (concurrency 1): the host never ran two at once.
    assert any(b["waiting"] >= 1 and b["inFlight"] == 1 for _, b in demand.posts)
    assert gw.metric("mpcloud_function_cold_start_seconds_count", {"namespace": "t", "function": "f", "start": "pod"}) == 0


def test_a_dead_instance_is_skipped(procs, tmp_path):
    host = procs.host("python3.11", SOURCES["python3.11"])
    from mpcloud_operator.devenv.ports import free_port

    routes = tmp_path / "routes.json"
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    write_routes(routes, [{"namespace": "t", "name": "f", "endpoints": [dead, f"127.0.0.1:{host.port}"]}])
    gw = procs.gateway(routes)
    assert all(requests.get(f"{gw.url}/t/f/x", timeout=30).status_code == 200 for _ in range(4))
