"""`mpcloud pipeline run NAME`: start a PipelineRun of a Pipeline and (with --wait) follow it to the end.

The run is an ordinary PipelineRun (generateName `<pipeline>-`): what `kubectl create -f run.yaml` makes, built
here from flags. `--wait` polls the run's status and prints each task's state as it changes, then the Succeeded
condition; the exit code is 0 only when the run succeeded.
"""

from __future__ import annotations

import time

import click

from mpcloud_operator.config import GROUP, VERSION


def run_body(pipeline: str, params: dict[str, str], unsandboxed: bool, timeout: str | None) -> dict:
    spec: dict = {"pipelineRef": {"name": pipeline}, "params": [{"name": k, "value": v} for k, v in params.items()]}
    if unsandboxed:
        spec["sandbox"] = {"runtimeClassName": "none", "allowUnsandboxed": True}
    if timeout:
        spec["timeouts"] = {"pipeline": timeout}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PipelineRun",
            "metadata": {"generateName": f"{pipeline}-"}, "spec": spec}


def _param(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: use NAME=VALUE", param_hint="--param")
        out[name] = value
    return out


@click.group("pipeline")
def pipeline() -> None:
    """Pipelines and their runs."""


@pipeline.command("run")
@click.argument("name")
@click.option("--namespace", "-n", default="default", show_default=True)
@click.option("--param", "-p", "params", multiple=True, help="NAME=VALUE (repeatable).")
@click.option("--unsandboxed", is_flag=True, help="Opt out of the sandbox (sandbox.runtimeClassName none): the "
              "local dev cluster's real node runs runc only.")
@click.option("--timeout", default=None, help="timeouts.pipeline, e.g. 30m (default: the run's 1h).")
@click.option("--wait/--no-wait", default=False, help="Follow the run until it finishes.")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None)
def run(name: str, namespace: str, params: tuple[str, ...], unsandboxed: bool, timeout: str | None, wait: bool,
        kubeconfig: str | None) -> None:
    """Start a run of Pipeline NAME and print its name."""
    from kubernetes import client, config

    body = run_body(name, _param(params), unsandboxed, timeout)
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    try:
        created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, "pipelineruns", body)
    except client.ApiException as exc:
        raise click.ClickException(f"the API server refused the run: {exc.body or exc.reason}") from exc
    run_name = created["metadata"]["name"]
    click.echo(f"pipelinerun/{run_name} created")
    if not wait:
        return
    seen: dict[str, str] = {}
    while True:
        st = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "pipelineruns", run_name).get("status") or {}
        for task in st.get("tasks") or []:
            state = f"{task['status']}" + (f" ({task['reason']})" if task.get("reason") else "")
            if seen.get(task["name"]) != state:
                seen[task["name"]] = state
                click.echo(f"  {task['name']}: {state}")
        cond = next((c for c in st.get("conditions") or [] if c["type"] == "Succeeded"), {})
        if cond.get("status") in ("True", "False"):
            click.echo(f"{run_name}: {cond['reason']}: {cond['message']}")
            raise SystemExit(0 if cond["status"] == "True" else 1)
        time.sleep(1)
