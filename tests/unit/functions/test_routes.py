"""The gateway's routing table, the cluster objects it is built from, and the static routes file."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from mpcloud_operator.functions.routes import (FunctionRoute, KubeRouteSource, RouteTable, StaticRouteSource,
                                               route_of, slice_of)


def _table(*routes: FunctionRoute) -> RouteTable:
    table = RouteTable()
    table.replace_functions(list(routes))
    return table


def test_resolve_namespace_name_and_rest():
    table = _table(FunctionRoute("todo", "add"))
    route, rest = table.resolve("/todo/add/items/1")
    assert route.key == ("todo", "add") and rest == "/items/1"
    assert table.resolve("/todo/add")[1] == "/"
    assert table.resolve("/todo/add/")[1] == "/"
    assert table.resolve("/todo/other/x") is None and table.resolve("/todo") is None and table.resolve("/") is None


def test_custom_paths_longest_prefix_first_and_whole_segments():
    table = _table(FunctionRoute("todo", "add", path="/todo"), FunctionRoute("todo", "pic", path="/todo/pic/"))
    assert table.resolve("/todo/pic/1")[0].name == "pic" and table.resolve("/todo/pic/1")[1] == "/1"
    assert table.resolve("/todo/x")[0].name == "add" and table.resolve("/todo")[1] == "/"
    assert table.resolve("/todos") is None  # a prefix of a segment is no match


def test_a_path_claimed_twice_goes_to_the_first_function():
    table = _table(FunctionRoute("b", "f", path="/p"), FunctionRoute("a", "f", path="/p"))
    assert table.resolve("/p")[0].key == ("a", "f")
    table.remove_function(("a", "f"))
    assert table.resolve("/p")[0].key == ("b", "f")


def test_listeners_hear_only_real_changes():
    table = RouteTable()
    heard: list = []
    table.listeners.append(heard.append)
    table.set_function(FunctionRoute("n", "f"))
    table.set_function(FunctionRoute("n", "f"))  # the same: silent
    table.set_slice(("n", "f"), "s1", ("10.0.0.1:8080",))
    table.set_slice(("n", "f"), "s2", ("10.0.0.1:8080",))  # the same instance through another slice
    table.set_slice(("n", "f"), "s2", ("10.0.0.2:8080",))
    assert table.instances(("n", "f")) == ["10.0.0.1:8080", "10.0.0.2:8080"]
    table.remove_slice(("n", "f"), "s1")
    table.replace_slices({})
    assert heard == [("n", "f")] * 5 and table.instances(("n", "f")) == []


def test_route_of_a_cloudfunction_with_defaults():
    obj = {"metadata": {"namespace": "todo", "name": "add"},
           "spec": {"timeoutSeconds": 3, "triggers": {"http": {"path": "todo/add/"}},
                    "scaling": {"concurrency": 2, "maxInstances": 5}}}
    assert route_of(obj) == FunctionRoute("todo", "add", "/todo/add", 2, 5, 3.0)
    assert route_of({"metadata": {"namespace": "n", "name": "f"}, "spec": {}}) == FunctionRoute("n", "f")


def test_slice_of_keeps_ready_endpoints_on_the_http_port():
    obj = {"metadata": {"namespace": "todo", "name": "cf-add-abc", "labels": {"mpcloud.io/function": "add"}},
           "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}],
           "endpoints": [{"addresses": ["10.0.0.2"], "conditions": {"ready": True}},
                         {"addresses": ["10.0.0.1"]},  # ready unset: ready
                         {"addresses": ["10.0.0.3"], "conditions": {"ready": False}},
                         {"addresses": ["fd00::1"], "conditions": {"ready": True}},
                         {"addresses": []}]}
    assert slice_of(obj) == (("todo", "add"), "cf-add-abc", ("10.0.0.1:8080", "10.0.0.2:8080", "[fd00::1]:8080"))
    assert slice_of({**obj, "ports": [{"name": "web", "port": 80}]})[2] == ()
    assert slice_of({"metadata": {"namespace": "n", "name": "s", "labels": {}}}) is None


def test_static_routes_file_reload_and_bad_file_keeps_routes(tmp_path):
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"functions": [{"namespace": "n", "name": "f", "path": "/f", "maxInstances": 2,
                                               "timeoutSeconds": 4, "endpoints": ["127.0.0.1:1"]}]}))
    table, source = RouteTable(), StaticRouteSource(path)
    source.load(table)
    assert table.functions[("n", "f")] == FunctionRoute("n", "f", "/f", 10, 2, 4.0)
    assert table.instances(("n", "f")) == ["127.0.0.1:1"]
    path.write_text(json.dumps({"functions": [{"namespace": "n", "name": "f", "bogus": 1}]}))
    source.load(table)  # invalid: reported, the routes stay
    assert table.instances(("n", "f")) == ["127.0.0.1:1"]
    path.write_text(json.dumps({"functions": [{"namespace": "n", "name": "g"}]}))
    source.load(table)
    assert list(table.functions) == [("n", "g")] and table.instances(("n", "f")) == []


class _FakeKube:
    """list() answers the next of `lists[kind]` (the last one again when they run out); the first stream() of a
    path yields `events[path]` and then fails like a dropped connection, later ones block until `closed`."""

    def __init__(self, lists, events):
        from mpcloud_operator.kube.client import ResourcePaths

        self.paths = ResourcePaths()
        self.lists, self.events = lists, events
        self.calls: list = []
        self.closed = threading.Event()

    def list(self, kind, namespace=None, query=None):
        self.calls.append(("list", kind, tuple(query or ())))
        answers = self.lists[kind]
        return {"metadata": {"resourceVersion": "7"}, "items": answers.pop(0) if len(answers) > 1 else answers[0]}

    def stream(self, path, query, timeout):
        self.calls.append(("watch", path, tuple(query)))
        if path in self.events:
            yield from self.events.pop(path)
            raise ConnectionError("connection dropped")
        self.closed.wait(10)


def test_kube_route_source_lists_watches_and_relists_after_an_error():
    cf = {"metadata": {"namespace": "todo", "name": "add"}, "spec": {"scaling": {"concurrency": 3}}}
    es = {"metadata": {"namespace": "todo", "name": "cf-add-1", "labels": {"mpcloud.io/function": "add"}},
          "ports": [{"name": "http", "port": 8080}], "endpoints": [{"addresses": ["10.0.0.9"]}]}
    es2 = {**es, "metadata": {**es["metadata"], "name": "cf-add-2"}, "endpoints": [{"addresses": ["10.0.0.8"]}]}
    kube = _FakeKube({"CloudFunction": [[cf]], "EndpointSlice": [[], [es, es2]]},
                     {"/apis/discovery.k8s.io/v1/endpointslices": [{"type": "ADDED", "object": es}],
                      "/apis/mpcloud.io/v1alpha1/cloudfunctions": [{"type": "DELETED", "object": cf}]})

    async def scenario():
        table = RouteTable()
        source = KubeRouteSource(kube)
        source._stop.wait = lambda seconds: source._stop.is_set()  # no back-off pause in a unit test
        await source.start(table)
        for _ in range(400):  # poll with a deadline (2 s)
            relists = sum(1 for c in kube.calls if c[0] == "list")
            if relists >= 4 and table.functions and len(table.instances(("todo", "add"))) == 2:
                break
            await asyncio.sleep(0.005)
        synced = source.ready()
        await source.stop()
        kube.closed.set()
        return table, synced

    table, synced = asyncio.run(scenario())
    assert synced  # both kinds listed: the gateway may report ready
    assert table.functions[("todo", "add")].concurrency == 3  # deleted by the watch, back with the relist
    assert table.instances(("todo", "add")) == ["10.0.0.8:8080", "10.0.0.9:8080"]
    queries = [c for c in kube.calls if c[0] == "list" and c[1] == "EndpointSlice"]
    assert ("labelSelector", "mpcloud.io/function") in queries[0][2]
    watch = next(c for c in kube.calls if c[0] == "watch")
    assert ("resourceVersion", "7") in watch[2] and ("watch", "true") in watch[2]


@pytest.mark.parametrize("body", ["[]", '{"functions": [{"namespace": "n"}]}'])
def test_static_routes_reject_bad_shapes(tmp_path, body):
    path = tmp_path / "r.json"
    path.write_text(body)
    table = RouteTable()
    StaticRouteSource(path).load(table)
    assert table.functions == {}
