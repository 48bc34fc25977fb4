"""`mpcloud pipeline run --watch` and `mpcloud pipeline graph` against the real control plane: the example
pipeline (examples/pipeline) runs on the real node, the CLI prints its task states until it finishes, and the
graph of the finished run is drawn coloured by state (canary Skipped: environment is staging)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def mpcloud(kubeconfig, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpcloud_operator", "pipeline", *args, "--kubeconfig",
                           str(kubeconfig)], capture_output=True, text=True, timeout=timeout)


def test_cli_runs_the_example_watches_it_and_draws_the_run(api_client, kubeconfig, namespace, operator,
                                                           pipeline_helper_image, tmp_path):
    if not pipeline_helper_image:
        pytest.skip("no real node: task pods cannot run code here")
    text = (ROOT / "examples" / "pipeline" / "pipeline.yaml").read_text()
    body = yaml.safe_load(text.replace("mpcloud.local/debian-python:IMAGE_TAG", pipeline_helper_image))
    client.CustomObjectsApi(api_client).create_namespaced_custom_object("mpcloud.io", "v1alpha1", namespace,
                                                                        "pipelines", body)
    run = mpcloud(kubeconfig, "run", "shop-ci", "-n", namespace, "-p", "revision=3f2a9c1d", "--unsandboxed",
                  "--watch", "--watch-timeout", "240")
    assert run.returncode == 0, run.stdout + run.stderr
    name = run.stdout.splitlines()[0].split("/")[1].split()[0]
    assert name.startswith("shop-ci-") and "package" in run.stdout and "Succeeded" in run.stdout
    graph = mpcloud(kubeconfig, "graph", name, "-n", namespace)
    assert graph.returncode == 0, graph.stderr
    assert "package [Succeeded] <- version, unit-tests, lint" in graph.stdout
    assert "canary [Skipped" in graph.stdout and "finally: notify [Succeeded]" in graph.stdout
    png = mpcloud(kubeconfig, "graph", name, "-n", namespace, "-o", str(tmp_path / "run.png"))
    assert png.returncode == 0 and (tmp_path / "run.png").read_bytes().startswith(b"\x89PNG")
    print(f"graph of the run: {tmp_path / 'run.png'}")
