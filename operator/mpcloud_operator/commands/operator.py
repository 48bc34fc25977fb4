"""`mpcloud operator run`: start the operator against the current kubeconfig (or in-cluster config)."""

from __future__ import annotations

import os

import click

from mpcloud_operator.config import OperatorConfig


@click.group("operator")
def operator_group() -> None:
    """The mpcloud operator process."""


@operator_group.command()
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Kubeconfig to use (default: $KUBECONFIG, ~/.kube/config or in-cluster).")
@click.option("--namespace", "-n", "namespaces", multiple=True, help="Watch only these namespaces (repeatable).")
@click.option("--health-port", type=int, default=None, help="Port of /healthz (default 8081).")
@click.option("--metrics-port", type=int, default=None, help="Port of /metrics (default 8080).")
@click.option("--bind-address", default=None, help="Address the probe and metrics listeners bind (default 0.0.0.0).")
@click.option("--prometheus-url", default=None,
              help="Prometheus HTTP API for predictive scaling (default $MPCLOUD_PROMETHEUS_URL; unset: loop off).")
def run(kubeconfig: str | None, namespaces: tuple[str, ...], health_port: int | None, metrics_port: int | None,
        bind_address: str | None, prometheus_url: str | None) -> None:
    """Run the operator until SIGTERM/SIGINT."""
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig  # kopf's login reads it through the kubernetes client
    from mpcloud_operator import main as operator_main

    config = OperatorConfig.from_env(namespaces=list(namespaces), health_port=health_port,
                                     metrics_port=metrics_port, bind_address=bind_address,
                                     prometheus_url=prometheus_url)
    operator_main.run(config)
