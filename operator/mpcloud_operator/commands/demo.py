"""`mpcloud demo [--stop]`."""

from __future__ import annotations

import click


@click.command()
@click.option("--stop", is_flag=True, help="Stop the demo's operator and the local cluster.")
def demo(stop: bool) -> None:
    """Local cluster + mpcloud + example apps, then show the result."""
    from mpcloud_operator import demo as demo_run

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    try:
        demo_run.stop(log) if stop else demo_run.run(log, click.echo)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback for users
        raise click.ClickException(str(exc)) from exc
