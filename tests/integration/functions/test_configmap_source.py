"""A configMapRef source on the real control plane: editing the ConfigMap rolls the new code out in seconds
(the operator watches referenced ConfigMaps), and the status names the new hash once it is served."""

from __future__ import annotations

import time

import pytest

from mpcloud_operator.cloudfunction.resources import source_hash
from tests.integration.conftest import wait_until
from tests.integration.functions.test_cloudfunction import UNSANDBOXED, functions  # noqa: F401 - fixture

pytestmark = pytest.mark.integration
CODE = "def main(event, context):\n    return {'version': %d}\n"


def test_an_edited_configmap_source_is_served_within_seconds(functions):
    functions.core.create_namespaced_config_map(functions.ns, {"metadata": {"name": "code"},
                                                               "data": {"index.py": CODE % 1}})
    functions.create({"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction", "metadata": {"name": "cm"},
                      "spec": {"runtime": "python3.11", "source": {"configMapRef": {"name": "code"}},
                               "sandbox": UNSANDBOXED, "scaling": {"minInstances": 1}}})
    assert functions.wait_serving("cm")["status"]["servingHash"] == source_hash({"index.py": CODE % 1})
    assert functions.call("cm", {}).json() == {"version": 1}

    started = time.monotonic()
    functions.core.patch_namespaced_config_map("code", functions.ns, {"data": {"index.py": CODE % 2}})
    wait_until(lambda: functions.call("cm", {}).json() == {"version": 2}, 60, interval=0.25,
               what="the edited code answering")
    served_after = time.monotonic() - started
    st = functions.wait_serving("cm", timeout=30)["status"]
    assert st["servingHash"] == st["codeHash"] == source_hash({"index.py": CODE % 2})
    print(f"configMapRef edit served after {served_after:.1f}s")
    assert served_after < 30  # without the watch: the next resync (minutes)

    # A broken edit: InvalidSource with the interpreter's message, the running code keeps answering.
    functions.core.patch_namespaced_config_map("code", functions.ns, {"data": {"index.py": "def main(e, c)\n"}})
    fn = functions.wait_reason("cm", "InvalidSource", timeout=30)
    assert "SyntaxError" in next(c for c in fn["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert functions.call("cm", {}).json() == {"version": 2}
