"""A warm pool instance (`host --generic`) as a real process: generic until specialised once, then that function only."""

from __future__ import annotations

import pytest
import requests

from mpcloud_operator.cloudfunction.resources import source_hash
from mpcloud_operator.functions.generic import specialise_body
from tests.integration.functions.test_runtime_host import RUNTIMES, SOURCES

pytestmark = pytest.mark.integration
TOKEN = "t0ken-for-the-pool-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def body(runtime: str, files: dict[str, str], name: str = "fn", env: dict[str, str] | None = None) -> dict:
    return specialise_body(f"ns/{name}", runtime, "index.main", source_hash(files), {"files": files}, env or {}, 5, 2)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_specialise_once_then_serve_that_function(procs, runtime):
    pod = procs.generic(runtime, TOKEN)
    health = requests.get(f"{pod.url}/_/health", timeout=5)
    assert health.status_code == 200 and health.json()["generic"] is True
    assert requests.post(f"{pod.url}/hi", timeout=5).json()["error"]["type"] == "NotSpecialised"

    files = SOURCES[runtime]
    wrong = requests.post(f"{pod.url}/_/specialise", json=body(runtime, files), timeout=5,
                          headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401
    assert requests.post(f"{pod.url}/_/specialise", json=body(runtime, files), timeout=5).status_code == 401
    tampered = body(runtime, files)
    tampered["hash"] = "0" * 64
    assert requests.post(f"{pod.url}/_/specialise", json=tampered, headers=AUTH, timeout=5).status_code == 400
    other = "nodejs20" if runtime == "python3.11" else "python3.11"
    assert requests.post(f"{pod.url}/_/specialise", json=body(other, files), headers=AUTH, timeout=5).status_code == 400

    r = requests.post(f"{pod.url}/_/specialise", json=body(runtime, files), headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["hash"] == source_hash(files)
    health = requests.get(f"{pod.url}/_/health", timeout=5).json()
    assert health["ready"] is True and health["hash"] == source_hash(files)
    r = requests.post(f"{pod.url}/hi?name=stem", json={"a": 1}, timeout=10)
    assert r.status_code == 200 and r.json()["hello"] == "stem"

    again = requests.post(f"{pod.url}/_/specialise", json=body(runtime, files, name="other"), headers=AUTH, timeout=5)
    assert again.status_code == 409 and again.json()["error"]["type"] == "AlreadySpecialised"
    assert requests.post(f"{pod.url}/hi?name=still", timeout=10).json()["hello"] == "still"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_syntax_error_answers_422_with_the_interpreters_message(procs, runtime):
    pod = procs.generic(runtime, TOKEN)
    files = {"index.py": "def main(event, context:\n    return 1\n"} if runtime == "python3.11" else \
        {"index.js": "exports.main = async (event => 1;\n"}
    r = requests.post(f"{pod.url}/_/specialise", json=body(runtime, files), headers=AUTH, timeout=30)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "InvalidSource" and "SyntaxError" in error["message"]
    assert requests.get(f"{pod.url}/_/health", timeout=5).status_code == 503  # out of any Service's endpoints
    good = SOURCES[runtime]
    assert requests.post(f"{pod.url}/_/specialise", json=body(runtime, good), headers=AUTH, timeout=5).status_code == 409


def test_env_reaches_the_handler(procs):
    pod = procs.generic("python3.11", TOKEN)
    files = {"index.py": "import os\ndef main(event, context):\n    return {'greeting': os.environ['GREETING'],"
                         " 'fn': context.function}\n"}
    r = requests.post(f"{pod.url}/_/specialise", json=body("python3.11", files, env={"GREETING": "hej"}), headers=AUTH,
                      timeout=30)
    assert r.status_code == 200, r.text
    assert requests.get(f"{pod.url}/x", timeout=10).json() == {"greeting": "hej", "fn": "ns/fn"}
