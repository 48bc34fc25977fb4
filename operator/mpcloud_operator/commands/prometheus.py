"""`mpcloud prometheus up|down|status`: a local Prometheus (Debian's binary) on 127.0.0.1."""

from __future__ import annotations

import json

import click

from mpcloud_operator.scaling import promserver


@click.group("prometheus")
def prometheus() -> None:
    """Local Prometheus for the scaling loop: state in $MPCLOUD_HOME/prometheus."""


@prometheus.command()
@click.option("--port", type=int, default=promserver.DEFAULT_PORT, show_default=True)
@click.option("--scrape-interval", default="15s", show_default=True,
              help="e.g. 500ms with time-compressed traffic replays (a quarter of the scaler tick)")
@click.option("--operator-metrics", default=None, help="host:port of the operator's /metrics to scrape")
def up(port: int, scrape_interval: str, operator_metrics: str | None) -> None:
    """Start Prometheus (idempotent) and print its URL."""
    try:
        url = promserver.up(port=port, scrape_interval=scrape_interval)
    except promserver.PrometheusError as exc:
        raise click.ClickException(str(exc)) from exc
    if operator_metrics:
        promserver.add_target("operator", operator_metrics, {"source": "mpcloud-operator"})
    click.echo(f"export MPCLOUD_PROMETHEUS_URL={url}")


@prometheus.command()
def down() -> None:
    """Stop Prometheus (its data stays)."""
    click.echo("stopped" if promserver.down() else "not running")


@prometheus.command()
def status() -> None:
    """Show whether it runs, its URL and scrape targets."""
    click.echo(json.dumps(promserver.status(), indent=2))
