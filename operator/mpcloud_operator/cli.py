"""The `mpcloud` command line: the operator, offline replay tools, and the dev environment (local cluster, demo).

A subcommand's module is imported only when that subcommand is looked up (to run it, or for --help), so
`mpcloud operator run` loads the operator and nothing else. The dev-environment commands live in
`mpcloud_operator.devenv`, which the operator image does not contain: there they are hidden and say so.
"""

from __future__ import annotations

import importlib

import click

from mpcloud_operator import __version__

DEVENV = "mpcloud_operator.devenv"

# Subcommand -> (module, attribute): each module exposes one click command or group.
COMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("mpcloud_operator.commands.operator", "operator_group"),
    "render": ("mpcloud_operator.commands.render", "render"),
    "replay": ("mpcloud_operator.commands.replay", "replay"),
    "keepalive": ("mpcloud_operator.commands.keepalive", "keepalive"),
    "pipeline": ("mpcloud_operator.commands.pipeline", "pipeline"),
    "anomaly": ("mpcloud_operator.commands.anomaly", "anomaly"),
    "risk": ("mpcloud_operator.commands.risk", "risk"),
    "cluster": (f"{DEVENV}.commands", "cluster"),
    "kubectl": (f"{DEVENV}.commands", "kubectl"),
    "demo": (f"{DEVENV}.commands", "demo"),
    "prometheus": (f"{DEVENV}.commands", "prometheus"),
    "postgres": (f"{DEVENV}.commands", "postgres"),
    "seaweedfs": (f"{DEVENV}.commands", "seaweedfs"),
    "git": (f"{DEVENV}.commands", "git"),
    "traffic": (f"{DEVENV}.commands", "traffic"),
    "image": (f"{DEVENV}.commands", "image"),
}


def _devenv_missing(name: str) -> click.Command:
    """Stands in for a dev-environment command where the devenv package is not installed (the image)."""

    @click.command(name, hidden=True, add_help_option=False, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def missing(args: tuple[str, ...]) -> None:
        raise click.ClickException(
            f"`mpcloud {name}` belongs to the development environment ({DEVENV}), which this installation "
            "does not include (the operator image ships `mpcloud operator` only); use a source checkout.")

    return missing


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            # Only the devenv package itself being absent means "not installed"; anything else is a real error.
            if module.startswith(DEVENV) and exc.name in (DEVENV, module):
                return _devenv_missing(name)
            raise


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mpcloud")
def main() -> None:
    """mpcloud: mini-program cloud on Kubernetes."""
