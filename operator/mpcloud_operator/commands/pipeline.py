"""`mpcloud pipeline run | graph`: start a run of a Pipeline (and watch it), draw a pipeline's or a run's DAG.

    mpcloud pipeline run shop-ci -n shop-ci -p revision=3f2a9c1 --watch     # (--wait is the same)
    mpcloud pipeline graph run/shop-ci-x7k2p -n shop-ci -o run.png    # a run, coloured by task state
    mpcloud pipeline graph examples/pipeline/pipeline.yaml -o dag.svg # offline (also: --file FILE)
    mpcloud pipeline graph shop-ci -n shop-ci                         # as text; `-o -`: SVG on stdout

A run started here takes the rest of its spec from the Pipeline's `triggers.runSpec` (workspaces, timeouts,
sandbox), as runs its triggers start do; `--unsandboxed` opts it out of the sandbox (a local real node: runc only).
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

from mpcloud_operator.commands import kube_client as _kube
from mpcloud_operator.pipeline.model import API_VERSION, PIPELINE_KIND, RUN_KIND

FIELD_MANAGER = "mpcloud-cli"
FINAL = ("True", "False")


def _params(values: tuple[str, ...]) -> list[dict[str, str]]:
    out = []
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: use NAME=VALUE", param_hint="--param")
        out.append({"name": name, "value": value})
    return out


def run_body(pipeline: dict[str, Any], params: list[dict[str, str]], unsandboxed: bool = False,
             timeout: str | None = None) -> dict[str, Any]:
    """The PipelineRun `mpcloud pipeline run` creates (pure): generateName `<pipeline>-`, the pipeline's
    triggers.runSpec, then the flags."""
    meta = pipeline["metadata"]
    spec = dict(((pipeline.get("spec") or {}).get("triggers") or {}).get("runSpec") or {})
    if unsandboxed:
        spec["sandbox"] = {"runtimeClassName": "none", "allowUnsandboxed": True}
    if timeout:
        spec["timeouts"] = {**(spec.get("timeouts") or {}), "pipeline": timeout}
    return {"apiVersion": API_VERSION, "kind": RUN_KIND,
            "metadata": {"generateName": f"{meta['name'][:50]}-", "namespace": meta["namespace"],
                         "labels": {"mpcloud.io/pipeline": meta["name"], "mpcloud.io/trigger-type": "cli"}},
            "spec": {**spec, "pipelineRef": {"name": meta["name"]}, **({"params": params} if params else {})}}


def _succeeded(run: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (run.get("status") or {}).get("conditions") or [] if c["type"] == "Succeeded"), {})


def watch(kube: Any, namespace: str, name: str, timeout: float, echo: Any = click.echo) -> dict[str, Any]:
    """Print each task's state as it changes until the run finishes (polls once a second)."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        run = kube.get(RUN_KIND, namespace, name)
        if run is None:
            raise click.ClickException(f"PipelineRun {namespace}/{name} is gone")
        for task in (run.get("status") or {}).get("tasks") or []:
            state = task.get("status", "Pending") + (f" ({task['reason']})" if task.get("reason") else "")
            if seen.get(task["name"]) != state:
                seen[task["name"]] = state
                echo(f"  {task['name']}: {state}")
        cond = _succeeded(run)
        if cond.get("status") in FINAL:
            echo(f"{name}: {cond.get('reason')}: {cond.get('message', '')}")
            return run
        if time.monotonic() > deadline:
            raise click.ClickException(f"{name} still runs after {timeout:.0f}s: {cond.get('message', '')}")
        time.sleep(1)


@click.group("pipeline")
def pipeline() -> None:
    """Pipelines: start a run, draw the DAG."""


@pipeline.command("run")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-p", "--param", "params", multiple=True, help="key=value (repeatable)")
@click.option("--watch", "--wait", "follow", is_flag=True,
              help="print task states until the run finishes; exit 1 if it fails")
@click.option("--timeout", default=None, help="the run's timeouts.pipeline, e.g. 30m (default: the run's 1h)")
@click.option("--watch-timeout", default=7200.0, show_default=True, help="seconds --watch waits at most")
@click.option("--unsandboxed", is_flag=True, help="opt the run out of the sandbox (local runc-only nodes)")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None)
def run_command(name: str, namespace: str, params: tuple[str, ...], follow: bool, timeout: str | None,
                watch_timeout: float, unsandboxed: bool, kubeconfig: str | None) -> None:
    """Create a PipelineRun of Pipeline NAME and print its name."""
    from mpcloud_operator.kube.client import ApiException, error_message

    given = _params(params)
    kube = _kube(kubeconfig)
    pl = kube.get(PIPELINE_KIND, namespace, name)
    if pl is None:
        raise click.ClickException(f"Pipeline {namespace}/{name} not found")
    try:
        run = kube.create(run_body(pl, given, unsandboxed, timeout), manager=FIELD_MANAGER)
    except ApiException as exc:
        raise click.ClickException(error_message(exc)) from exc
    run_name = run["metadata"]["name"]
    click.echo(f"pipelinerun/{run_name} created")
    if follow:
        done = watch(kube, namespace, run_name, watch_timeout)
        sys.exit(0 if _succeeded(done).get("status") == "True" else 1)


def _target(target: str) -> tuple[str, str, str]:
    kind, sep, name = target.rpartition("/")
    if kind not in ("", "run", "pr", "pipelinerun", "pipeline", "pl") or not name:
        raise click.BadParameter(f"{target!r}: use NAME, run/NAME or pipeline/NAME (or a file)", param_hint="TARGET")
    return kind, sep, name


def _spec_of(kube: Any, namespace: str, target: str) -> tuple[Any, dict[str, Any] | None, str]:
    """(pipeline spec, run status or None, title) of `run/NAME`, `pipeline/NAME`, or NAME (a run, else a pipeline)."""
    from mpcloud_operator.pipeline.model import PipelineSpec

    kind, _, name = _target(target)
    run = kube.get(RUN_KIND, namespace, name) if kind not in ("pipeline", "pl") else None
    if run is not None:
        status = run.get("status") or {}
        spec = status.get("pipelineSpec") or run["spec"].get("pipelineSpec")
        if spec is None:
            ref = run["spec"]["pipelineRef"]["name"]
            pl = kube.get(PIPELINE_KIND, namespace, ref)
            if pl is None:
                raise click.ClickException(f"PipelineRun {name}: Pipeline {ref} not found")
            spec = pl["spec"]
        return PipelineSpec.model_validate(spec), status, f"PipelineRun {namespace}/{name}"
    pl = kube.get(PIPELINE_KIND, namespace, name) if kind in ("", "pipeline", "pl") else None
    if pl is None:
        raise click.ClickException(f"{target}: no such {'PipelineRun' if kind else 'PipelineRun or Pipeline'} "
                                   f"in {namespace}")
    return PipelineSpec.model_validate(pl["spec"]), None, f"Pipeline {namespace}/{name}"


def spec_from_file(path: Path) -> tuple[Any, dict[str, Any] | None, str]:
    """A Pipeline, or a PipelineRun (with pipelineSpec, or its status), from YAML: the first such document."""
    from mpcloud_operator.pipeline.model import PipelineSpec

    for doc in yaml.safe_load_all(path.read_text()):
        if not isinstance(doc, dict):
            continue
        name = (doc.get("metadata") or {}).get("name") or (doc.get("metadata") or {}).get("generateName", "")
        if doc.get("kind") == PIPELINE_KIND:
            return PipelineSpec.model_validate(doc["spec"]), None, f"Pipeline {name}"
        if doc.get("kind") == RUN_KIND:
            status = doc.get("status") or {}
            spec = status.get("pipelineSpec") or doc["spec"].get("pipelineSpec")
            if spec is not None:
                return PipelineSpec.model_validate(spec), status, f"PipelineRun {name}"
    raise click.ClickException(f"{path}: no Pipeline, and no PipelineRun with its pipeline spec")


@pipeline.command("graph")
@click.argument("target", required=False)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="write a .png or .svg, or - for SVG on stdout (default: print the graph as text)")
@click.option("-f", "--file", "file_", type=click.Path(exists=True, dir_okay=False), default=None,
              help="read a Pipeline (or PipelineRun) from YAML instead of the cluster")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None)
def graph_command(target: str | None, namespace: str, output: str | None, file_: str | None,
                  kubeconfig: str | None) -> None:
    """Draw the DAG of TARGET, coloured by task state, finally tasks grouped: a YAML file (a Pipeline, or a
    PipelineRun with its spec), `run/NAME`, `pipeline/NAME`, or NAME (a PipelineRun, else a Pipeline)."""
    from pydantic import ValidationError

    from mpcloud_operator.pipeline import graph

    if file_ is None and target is not None and Path(target).is_file():
        file_ = target
    if file_ is None and target is None:
        raise click.UsageError("give TARGET (a file, run/NAME, pipeline/NAME or NAME) or --file")
    if file_ is None:
        _target(target)  # a bad TARGET is a usage error before any connection
    try:
        spec, status, title = spec_from_file(Path(file_)) if file_ else _spec_of(_kube(kubeconfig), namespace, target)
        drawn = graph.build(spec, status, title)
    except (ValidationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if output is None:
        click.echo(graph.as_text(drawn))
        return
    from mpcloud_operator.pipeline.render import render

    if output == "-":
        buffer = io.BytesIO()
        render(drawn, buffer, fmt="svg")
        click.echo(buffer.getvalue().decode(), nl=False)
        return
    if Path(output).suffix not in (".png", ".svg"):
        raise click.BadParameter("the output must end in .png or .svg (or be - for SVG on stdout)", param_hint="-o")
    click.echo(f"wrote {render(drawn, output)}")
