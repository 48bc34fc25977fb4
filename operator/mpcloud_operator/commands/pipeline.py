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


@pipeline.command("graph")
@click.argument("target")
@click.option("--namespace", "-n", default="default", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="-", show_default=True,
              help="SVG file (- for stdout).")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None)
def graph(target: str, namespace: str, output: str, kubeconfig: str | None) -> None:
    """Draw the DAG of TARGET as SVG: a Pipeline YAML file, `pipeline/NAME` or NAME (a Pipeline in the cluster), or
    `run/NAME` (a PipelineRun: tasks coloured by their state)."""
    from pathlib import Path

    import yaml

    from mpcloud_operator.pipeline import graph as drawing
    from mpcloud_operator.pipeline import validate
    from mpcloud_operator.pipeline.model import PipelineSpec

    states: dict[str, str] = {}
    if Path(target).is_file():
        doc = next(d for d in yaml.safe_load_all(Path(target).read_text()) if d and d.get("kind") == "Pipeline")
        spec, title = PipelineSpec.model_validate(doc["spec"]), doc["metadata"]["name"]
    else:
        from kubernetes import client, config

        api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
        kind, _, name = target.rpartition("/")
        plural = "pipelineruns" if kind in ("run", "pr", "pipelinerun") else "pipelines"
        try:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except client.ApiException as exc:
            raise click.ClickException(f"{plural}/{name}: {exc.reason}") from exc
        title = name
        if plural == "pipelines":
            spec = PipelineSpec.model_validate(obj["spec"])
        else:
            st = obj.get("status") or {}
            spec = PipelineSpec.model_validate(st.get("pipelineSpec") or obj["spec"].get("pipelineSpec") or {})
            states = {t["name"]: t["status"] for t in st.get("tasks") or []}
    cycle = validate.problems(spec)
    if cycle and cycle[0].startswith("the tasks form a cycle"):
        raise click.ClickException(cycle[0])
    svg = drawing.render(spec, states, title)
    if output == "-":
        click.echo(svg, nl=False)
    else:
        Path(output).write_text(svg)
        click.echo(f"wrote {output}")
