"""CloudFunction end to end: the operator (own RBAC), the gateway, the runtime image on the real node (runc), real
PostgreSQL and SeaweedFS — started by devenv/functions.py exactly as `make demo` starts them.

Function pods opt out of the sandbox (the real node has no Kata); the operator confines them to the real node.
The session operator runs the function scaler with a 4-second keep-alive "minute" (TEST_MINUTE_SECONDS).
"""

from __future__ import annotations

import time

import pytest
import requests
from kubernetes import client

from mpcloud_operator.devenv import postgres, seaweedfs
from tests.integration.conftest import wait_until
from tests.integration.custom_resources import CustomResources

pytestmark = pytest.mark.integration
GROUP, VERSION, PLURAL = "mpcloud.io", "v1alpha1", "cloudfunctions"
UNSANDBOXED = {"runtimeClassName": "none", "allowUnsandboxed": True}

PY_ECHO = "def main(event, context):\n    return {'echo': event['body'], 'version': 1}\n"
JS_ECHO = "exports.main = async (event, context) => ({ echo: event.body, runtime: 'node' });\n"


def function(name: str, files: dict[str, str], runtime: str = "python3.11", **spec) -> dict:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CloudFunction", "metadata": {"name": name},
            "spec": {"runtime": runtime, "source": {"inline": {"files": files}}, "sandbox": UNSANDBOXED, **spec}}
    return body


class Functions(CustomResources):
    kind, plural = "CloudFunction", PLURAL

    def __init__(self, api_client, namespace: str, gateway_url: str) -> None:
        super().__init__(api_client, namespace)
        self.gateway = gateway_url

    def ready(self, name: str) -> dict:
        return self.condition(name, "Ready")

    def wait_reason(self, name: str, *reasons: str, timeout: float = 90) -> dict:
        return self.wait_condition(name, "Ready", reasons=reasons, timeout=timeout, interval=0.5)

    def wait_serving(self, name: str, timeout: float = 120) -> dict:
        def serving():
            fn = self.get(name)
            st = fn.get("status") or {}
            return st.get("servingHash") and st.get("servingHash") == st.get("codeHash") and fn
        self.wait_reason(name, "Serving", "ScaledToZero", "Activating", timeout=timeout)
        return wait_until(serving, timeout, interval=0.5, what=f"{name} serving its current code")

    def call(self, name: str, body=None, method: str = "POST", timeout: float = 60, **kw) -> requests.Response:
        return requests.request(method, f"{self.gateway}/{self.ns}/{name}", json=body, timeout=timeout, **kw)


@pytest.fixture
def functions(api_client, namespace, operator, function_platform) -> Functions:
    core = client.CoreV1Api(api_client)
    core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    client.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(namespace, {
        "metadata": {"name": "mpcloud-operator-bindings"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mpcloud-operator-bindings"},
        "subjects": [{"kind": "ServiceAccount", "name": "mpcloud-operator", "namespace": "mpcloud-system"}]})
    if not function_platform.image:
        pytest.skip("no real node: function pods cannot run code here")
    return Functions(api_client, namespace, function_platform.gateway_url)


def test_python_and_node_functions_answer_through_the_gateway(functions):
    functions.create(function("py", {"index.py": PY_ECHO}))
    functions.create(function("js", {"index.js": JS_ECHO}, runtime="nodejs20"))
    for name in ("py", "js"):
        fn = functions.wait_serving(name)
        assert fn["status"]["url"].endswith(f"/{functions.ns}/{name}")
        assert fn["status"]["sandbox"] == "unsandboxed (opt-out)"
    assert functions.call("py", {"x": 1}).json() == {"echo": {"x": 1}, "version": 1}
    assert functions.call("js", {"y": 2}).json() == {"echo": {"y": 2}, "runtime": "node"}
    pods = functions.core.list_namespaced_pod(functions.ns, label_selector="mpcloud.io/function=py").items
    assert pods and all(p.spec.node_selector == {"mpcloud.io/node": "real"} for p in pods)


def test_scale_to_zero_then_a_request_is_buffered_and_served(functions):
    functions.create(function("idle", {"index.py": PY_ECHO},
                              scaling={"keepAlive": {"policy": "fixed", "fixedMinutes": 1}}))
    functions.wait_serving("idle")
    functions.wait_reason("idle", "ScaledToZero", timeout=60)
    wait_until(lambda: not functions.core.list_namespaced_pod(
        functions.ns, label_selector="mpcloud.io/function=idle").items, 60, what="no instance left")
    started = time.monotonic()
    response = functions.call("idle", {"cold": True})
    cold_seconds = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json()["echo"] == {"cold": True}
    print(f"cold start through the gateway: {cold_seconds:.2f}s")
    st = wait_until(lambda: (functions.get("idle").get("status") or {}).get("coldStarts") and
                    functions.get("idle")["status"], 30, what="a cold start counted in status")
    assert st["coldStarts"] >= 1 and st["invocations"] >= 1 and st["lastInvocationTime"]


def test_code_update_is_served_within_seconds_with_the_new_hash(functions):
    functions.create(function("upd", {"index.py": PY_ECHO}, scaling={"minInstances": 1}))
    old = functions.wait_serving("upd")["status"]["servingHash"]
    started = time.monotonic()
    functions.patch("upd", {"spec": {"source": {"inline": {"files": {"index.py": PY_ECHO.replace("1}", "2}")}}}}})
    wait_until(lambda: functions.call("upd", {}).json().get("version") == 2, 90, interval=0.25,
               what="the new code answering")
    served_after = time.monotonic() - started
    st = functions.wait_serving("upd")["status"]
    assert st["servingHash"] != old and st["servingHash"] == st["codeHash"]
    print(f"code update served after {served_after:.1f}s")
    assert served_after < 30


def test_syntax_error_is_invalid_source_and_the_old_code_keeps_serving(functions):
    functions.create(function("bad", {"index.py": PY_ECHO}, scaling={"minInstances": 1}))
    good = functions.wait_serving("bad")["status"]["servingHash"]
    functions.patch("bad", {"spec": {"source": {"inline": {"files": {"index.py": "def main(event, context)\n  return 1\n"}}}}})
    fn = functions.wait_reason("bad", "InvalidSource", timeout=30)
    cond = next(c for c in fn["status"]["conditions"] if c["type"] == "Ready")
    assert cond["status"] == "False" and "SyntaxError" in cond["message"] and "index.py" in cond["message"]
    assert fn["status"]["servingHash"] == good
    assert functions.call("bad", {"still": "up"}).json()["echo"] == {"still": "up"}


def test_timeout_is_a_structured_error_and_the_instance_survives(functions):
    slow = "import time\ndef main(event, context):\n    if event['body'].get('sleep'):\n        time.sleep(30)\n    return 'ok'\n"
    functions.create(function("slow", {"index.py": slow}, scaling={"minInstances": 1}, timeoutSeconds=3))
    functions.wait_serving("slow")
    pod_before = {p.metadata.name for p in functions.core.list_namespaced_pod(
        functions.ns, label_selector="mpcloud.io/function=slow").items}
    response = functions.call("slow", {"sleep": True})
    assert response.status_code == 504 and response.json()["error"]["type"] == "Timeout"
    assert functions.call("slow", {}).json() == "ok"
    pods = functions.core.list_namespaced_pod(functions.ns, label_selector="mpcloud.io/function=slow").items
    assert {p.metadata.name for p in pods} == pod_before and all(
        (cs.restart_count or 0) == 0 for p in pods for cs in p.status.container_statuses or [])


DB_WRITE = """
async def main(event, context):
    todos = context.db.collection("todos")
    if event["method"] == "POST":
        return {"id": await todos.add(event["body"])}
    return {"todos": await todos.query({}, [["n", 1]], 100)}
"""
FILES = """
async def main(event, context):
    body = event["body"] or {}
    if body.get("put"):
        await context.storage.put(body["put"], body["data"].encode(), "text/plain")
        return {"url": await context.storage.presign_get(body["put"], 60)}
    return {"data": (await context.storage.get(body["get"])).decode()}
"""


def bound(name: str, app: str, code: str, access: str = "readWrite", collections=("todos",), storage=None) -> dict:
    bindings = {"database": {"collections": [{"name": c, "access": access, "indexes": ["n"]} for c in collections]}}
    if storage:
        bindings["storage"] = {"access": storage}
    return function(name, {"index.py": code}, app=app, bindings=bindings, scaling={"minInstances": 1})


def test_tenant_isolation_and_permissions_on_real_postgres_and_s3(functions):
    functions.create(bound("a-db", "shop-a", DB_WRITE))
    functions.create(bound("b-db", "shop-b", DB_WRITE))
    functions.create(bound("a-ro", "shop-a", DB_WRITE, access="read"))
    functions.create(bound("a-files", "shop-a", FILES, storage="readWrite"))
    functions.create(bound("b-files", "shop-b", FILES, storage="readWrite"))
    for name in ("a-db", "b-db", "a-ro", "a-files", "b-files"):
        functions.wait_serving(name)
    assert functions.call("a-db", {"n": 1, "title": "secret of A"}).status_code == 200
    assert [t["title"] for t in functions.call("a-db", method="GET").json()["todos"]] == ["secret of A"]
    assert functions.call("b-db", method="GET").json()["todos"] == []  # same collection name, other tenant
    assert len(functions.call("a-ro", method="GET").json()["todos"]) == 1  # read access
    denied = functions.call("a-ro", {"n": 2})
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "PermissionDenied"

    put = functions.call("a-files", {"put": "notes/a.txt", "data": "hello from A"})
    assert put.status_code == 200, put.text
    assert requests.get(put.json()["url"].replace("http://", "http://"), timeout=10).text == "hello from A"
    assert functions.call("a-files", {"get": "notes/a.txt"}).json() == {"data": "hello from A"}
    other = functions.call("b-files", {"get": "notes/a.txt"})  # B's bucket has no such object
    assert other.status_code in (403, 404, 500) and "error" in other.json()


def test_postgres_down_is_a_clear_error_and_nothing_is_lost(functions):
    functions.create(bound("keep", "durable", DB_WRITE))
    functions.wait_serving("keep")
    assert functions.call("keep", {"n": 1, "title": "before"}).status_code == 200
    postgres.down()
    try:
        down = functions.call("keep", method="GET")
        assert down.status_code == 503 and down.json()["error"]["type"] == "DatabaseUnavailable"
    finally:
        postgres.up()
    back = wait_until(lambda: (r := functions.call("keep", method="GET")).status_code == 200 and r.json(), 60,
                      interval=0.5, what="the document API after PostgreSQL restarted")
    assert [t["title"] for t in back["todos"]] == ["before"]


def test_deleted_function_loses_instances_and_route_but_the_app_keeps_its_data(functions):
    functions.create(bound("gone", "kept", DB_WRITE))
    functions.create(bound("stays", "kept", DB_WRITE))
    functions.wait_serving("gone")
    functions.wait_serving("stays")
    assert functions.call("gone", {"n": 7, "title": "survives"}).status_code == 200
    functions.custom.delete_namespaced_custom_object(GROUP, VERSION, functions.ns, PLURAL, "gone")
    wait_until(lambda: not functions.apps.list_namespaced_deployment(
        functions.ns, label_selector="mpcloud.io/function=gone").items, 60, what="the Deployment collected")
    wait_until(lambda: functions.call("gone", method="GET", timeout=10).status_code == 404, 30,
               what="the gateway route removed")
    assert [t["title"] for t in functions.call("stays", method="GET").json()["todos"]] == ["survives"]


def test_s3_down_is_a_clear_error(functions):
    functions.create(bound("f", "files-down", FILES, storage="readWrite"))
    functions.wait_serving("f")
    assert functions.call("f", {"put": "k.txt", "data": "v"}).status_code == 200
    seaweedfs.down()
    try:
        down = functions.call("f", {"get": "k.txt"})
        assert down.status_code == 503 and down.json()["error"]["type"] == "StorageUnavailable"
    finally:
        seaweedfs.up()
    wait_until(lambda: functions.call("f", {"get": "k.txt"}).json() == {"data": "v"}, 60, interval=0.5,
               what="the object after SeaweedFS restarted")
