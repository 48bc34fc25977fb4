"""`mpcloud render`: the reconciler's own builders, offline; bad documents fail with the model's message."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml
from click.testing import CliRunner

from mpcloud_operator.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_render_prints_the_children_of_each_app():
    result = CliRunner().invoke(main, ["render", "-n", "demo", str(EXAMPLES / "app-simple.yaml")])
    assert result.exit_code == 0, result.output
    objs = list(yaml.safe_load_all(result.stdout))
    assert {o["kind"] for o in objs} >= {"Deployment", "Service", "ServiceAccount", "NetworkPolicy"}
    assert all(o["metadata"]["namespace"] == "demo" for o in objs)
    assert all(o["metadata"]["ownerReferences"][0]["kind"] == "MiniProgramApp" for o in objs)


def test_render_reports_an_invalid_app_and_fails():
    result = CliRunner().invoke(main, ["render", str(EXAMPLES / "app-invalid.yaml")])
    assert result.exit_code == 1
    assert "replicas.min must be less than or equal to replicas.max" in result.stderr


def test_render_prints_functions_with_placeholders_for_what_the_cluster_provides():
    result = CliRunner().invoke(main, ["render", "-n", "todo", str(EXAMPLES / "todo" / "base" / "functions.yaml")])
    assert result.exit_code == 0, result.output
    objs = list(yaml.safe_load_all(result.stdout))
    assert {o["kind"] for o in objs} >= {"Deployment", "Service", "NetworkPolicy", "ConfigMap", "Secret"}
    secrets = [o for o in objs if o["kind"] == "Secret"]
    placeholder = base64.b64encode(b"<provisioned at reconcile>").decode()
    assert secrets and all(set(s["data"].values()) == {placeholder} for s in secrets)


def test_every_kind_that_prepares_at_reconcile_renders_offline():
    from mpcloud_operator.kinds import KINDS

    # A PipelineRun renders the Jobs a new run of an embedded spec starts with (a pipelineRef needs the cluster).
    assert [k.kind for k in KINDS if k.prepare and not k.offline] == []
