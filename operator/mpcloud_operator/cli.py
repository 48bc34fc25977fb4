"""The `mpcloud` command line: local cluster, operator, and offline replay tools."""

from __future__ import annotations

import click

from mpcloud_operator import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mpcloud")
def main() -> None:
    """mpcloud: mini-program cloud on Kubernetes."""


def _register() -> None:
    # Subcommands live beside the code they drive; each module exposes one click command or group.
    from mpcloud_operator.commands import cluster, demo, keepalive, operator, prometheus, render, replay, traffic

    main.add_command(cluster.cluster)
    main.add_command(cluster.kubectl)
    main.add_command(demo.demo)
    main.add_command(operator.operator_group)
    main.add_command(render.render)
    main.add_command(replay.replay)
    main.add_command(keepalive.keepalive)
    main.add_command(prometheus.prometheus)
    main.add_command(traffic.traffic)


_register()
