"""An archive source on the real node: fetched and verified by the init container, and when that fails
(digest mismatch, unreachable URL, a member escaping the code directory) the function says BuildFailed with
the init container's message and a Warning Event, while the instances of the previous code keep serving.

The archives are served by a tiny HTTP server on the real node's bridge address (where pods reach the host).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mpcloud_operator.devenv.functions import pod_reachable_host
from mpcloud_operator.devenv.ports import free_port
from tests.integration.conftest import wait_until
from tests.integration.functions.test_cloudfunction import UNSANDBOXED, functions  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def tar_gz(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def archives(tmp_path: Path):
    """(directory, base URL) of an HTTP server the function pods can reach."""
    host, _ = pod_reachable_host()
    if not host:
        pytest.skip("no real node")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, free_port()), partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://{host}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def archive_function(name: str, url: str, sha256: str) -> dict:
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction", "metadata": {"name": name},
            "spec": {"runtime": "python3.11", "source": {"archive": {"url": url, "sha256": sha256}},
                     "sandbox": UNSANDBOXED, "scaling": {"minInstances": 1}}}


def dump(functions, name: str) -> str:
    """What the function and its pods say (printed when a wait fails)."""
    pods = functions.core.list_namespaced_pod(functions.ns, label_selector=f"mpcloud.io/function={name}").items
    lines = [f"status: {functions.get(name).get('status')}"]
    for p in pods:
        lines.append(f"pod {p.metadata.name}: phase={p.status.phase} init={p.status.init_container_statuses} "
                     f"containers={p.status.container_statuses} conditions={p.status.conditions}")
    return "\n".join(lines)


@contextmanager
def explained(functions, name: str):
    """A failed wait also says what the function and its pods said."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{dump(functions, name)}") from None


def build_failed(functions, name: str, timeout: float = 90) -> dict:
    fn = functions.wait_reason(name, "BuildFailed", timeout=timeout)
    return next(c for c in fn["status"]["conditions"] if c["type"] == "Ready")


def warning_events(functions, name: str) -> list[str]:
    events = functions.core.list_namespaced_event(functions.ns, field_selector=f"involvedObject.name={name}").items
    return [e.message for e in events if e.reason == "BuildFailed" and e.type == "Warning"]


def test_archive_failures_are_build_failed_and_the_old_code_keeps_serving(functions, archives):
    with explained(functions, "arc"):
        _failures_then_fix(functions, *archives)


def _failures_then_fix(functions, directory: Path, base: str) -> None:
    good = tar_gz({"index.py": "def main(event, context):\n    return {'version': 1}\n"})
    (directory / "v1.tar.gz").write_bytes(good)
    functions.create(archive_function("arc", f"{base}/v1.tar.gz", hashlib.sha256(good).hexdigest()))
    served = functions.wait_serving("arc")["status"]["servingHash"]
    assert served == hashlib.sha256(good).hexdigest()
    assert functions.call("arc", {}).json() == {"version": 1}

    # New code whose digest is wrong: refused by the init container, reported, the old instance answers on.
    v2 = tar_gz({"index.py": "def main(event, context):\n    return {'version': 2}\n"})
    (directory / "v2.tar.gz").write_bytes(v2)
    functions.patch("arc", {"spec": {"source": {"archive": {"url": f"{base}/v2.tar.gz?X-Amz-Signature=s3cr3t",
                                                            "sha256": "0" * 64}}}})
    ready = build_failed(functions, "arc")
    assert ready["status"] == "False" and "does not match" in ready["message"]
    assert hashlib.sha256(v2).hexdigest() in ready["message"] and "s3cr3t" not in ready["message"]
    assert "keep serving" in ready["message"]
    assert functions.get("arc")["status"]["servingHash"] == served
    assert functions.call("arc", {}).json() == {"version": 1}
    assert wait_until(lambda: warning_events(functions, "arc"), 30, what="a BuildFailed Warning Event")

    # An unreachable URL, then the fix: served within seconds, the condition clears.
    functions.patch("arc", {"spec": {"source": {"archive": {"url": f"{base}/missing.tar.gz", "sha256": "1" * 64}}}})
    wait_until(lambda: "HTTP 404" in build_failed(functions, "arc")["message"], 90, interval=0.5,
               what="the 404 in the condition")
    functions.patch("arc", {"spec": {"source": {"archive": {"url": f"{base}/v2.tar.gz",
                                                            "sha256": hashlib.sha256(v2).hexdigest()}}}})
    wait_until(lambda: functions.call("arc", {}).json() == {"version": 2}, 90, interval=0.5, what="v2 answering")
    assert functions.wait_serving("arc")["status"]["servingHash"] == hashlib.sha256(v2).hexdigest()


def test_an_archive_member_escaping_the_code_directory_is_build_failed(functions, archives):
    directory, base = archives
    with explained(functions, "evil"):
        _evil(functions, directory, base)


def _evil(functions, directory: Path, base: str) -> None:
    evil = tar_gz({"index.py": "def main(e, c):\n    return 1\n", "../../etc/evil.py": "x = 1\n"})
    (directory / "evil.tar.gz").write_bytes(evil)
    functions.create(archive_function("evil", f"{base}/evil.tar.gz", hashlib.sha256(evil).hexdigest()))
    ready = build_failed(functions, "evil")
    assert "outside the code directory" in ready["message"]
    assert functions.get("evil")["status"].get("servingHash") is None
