"""The function scaler's keep-alive history survives an operator restart: saved to ConfigMaps in mpcloud-system on
a clean stop (and every few minutes), restored by the next leader."""

from __future__ import annotations

import signal

import pytest

from mpcloud_operator.cloudfunction.keepalive_store import MANIFEST_ANNOTATION, NAME
from tests.integration.conftest import wait_until
from tests.integration.functions.test_cloudfunction import PY_ECHO, function
from tests.integration.functions.test_cloudfunction import functions  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def test_keepalive_history_is_saved_on_stop_and_restored_by_the_next_operator(
        functions, running_operator, operator_factory):
    functions.create(function("warm", {"index.py": PY_ECHO}, scaling={"keepAlive": {"policy": "hybrid"}}))
    functions.wait_serving("warm")
    for _ in range(3):
        assert functions.call("warm", {"n": 1}).status_code == 200
    # The bank has the function once a keep-alive minute (4 s in the tests) passed with it.
    wait_until(lambda: (functions.get("warm").get("status") or {}).get("invocations"), 30, interval=0.5,
               what="the scaler counting the calls")
    assert running_operator["op"].stop(signal.SIGTERM) == 0
    head = functions.core.read_namespaced_config_map(f"{NAME}-0", "mpcloud-system")
    assert MANIFEST_ANNOTATION in head.metadata.annotations and head.binary_data["chunk"]
    replacement = operator_factory("after-restart").start().wait_ready(timeout=60)
    running_operator["op"] = replacement
    line = wait_until(lambda: next((l for l in replacement.log().splitlines()
                                    if "keep-alive history of" in l and "restored" in l), None), 30,
                      what="the restore in the new operator's log")
    assert int(line.split("history of ")[1].split()[0]) >= 1, line
