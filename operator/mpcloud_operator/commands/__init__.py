"""Subcommands of the `mpcloud` CLI (thin: parse options, call library code, print)."""

from __future__ import annotations

import os
from typing import Any


def kube_client(kubeconfig: str | None) -> Any:
    """The API client of a command (--kubeconfig, else $KUBECONFIG / ~/.kube/config, else in-cluster)."""
    import click

    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    from kubernetes.config import ConfigException

    from mpcloud_operator.kinds import paths
    from mpcloud_operator.kube.client import KubeClient, new_api_client

    try:
        return KubeClient(new_api_client(pool_size=2), paths())
    except ConfigException as exc:
        raise click.ClickException(f"no cluster to talk to ({exc}): pass --kubeconfig or set KUBECONFIG") from exc
