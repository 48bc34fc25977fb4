"""`mpcloud cluster ...` and `mpcloud kubectl ...`: the local control plane."""

from __future__ import annotations

import os
import sys

import click

from mpcloud_operator.cluster import binaries, local


def _log(msg: str) -> None:
    click.echo(msg, err=True)


@click.group()
def cluster() -> None:
    """Local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) on 127.0.0.1."""


@cluster.command()
@click.option("--nodes", default=3, show_default=True, help="Simulated nodes (a third plain, the rest kata-capable).")
@click.option("--port", type=int, default=None, help="API server port (default: a free one).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for each readiness step.")
def up(nodes: int, port: int | None, timeout: float) -> None:
    """Build (once, cached) and start the cluster; idempotent."""
    try:
        path = local.up(nodes=nodes, port=port, log=_log, timeout=timeout)
    except (local.ClusterError, binaries.BuildError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"export KUBECONFIG={path}")


@cluster.command()
def down() -> None:
    """Stop every process of the cluster and remove its state."""
    local.down(log=_log)


@cluster.command()
def status() -> None:
    """Show each component's state."""
    rows = local.status()
    width = max(len(r[0]) for r in rows)
    for name, state, detail in rows:
        click.echo(f"{name:<{width}}  {state:<10}  {detail}")
    if rows[0][1] == "absent":
        sys.exit(1)


@cluster.command()
def kubeconfig() -> None:
    """Print the path of the cluster's kubeconfig (use: export KUBECONFIG=$(mpcloud cluster kubeconfig))."""
    if not local.kubeconfig_path().exists():
        raise click.ClickException("no local cluster: run `mpcloud cluster up`")
    click.echo(local.kubeconfig_path())


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(args: tuple[str, ...]) -> None:
    """Run the pinned kubectl against the local cluster."""
    exe = binaries.binary_path("kubectl")
    if not exe.exists():
        raise click.ClickException("kubectl is not built yet: run `mpcloud cluster up`")
    os.execv(str(exe), [str(exe), "--kubeconfig", str(local.kubeconfig_path()), *args])
