"""`mpcloud render`: print the objects the operator would apply for custom resources in YAML files.

The same pure builders the reconciler runs (`Kind.desired`), with no cluster: review a change in a GitOps
pull request, diff two versions, or feed the output to a scanner (the project's checkov run does that). What a
kind reads from the cluster or provisions at reconcile (`Kind.prepare`) is replaced by `Kind.offline`'s
placeholders (e.g. a CloudFunction's provisioned credentials, a ConfigMap source's hash).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml
from pydantic import ValidationError

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


@click.command("render")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--namespace", "-n", default="default", show_default=True,
              help="Namespace for resources that do not set one.")
def render(files: tuple[Path, ...], namespace: str) -> None:
    """Render the children of every mpcloud resource in FILES as a YAML stream (other documents are skipped)."""
    from mpcloud_operator.kinds import KINDS

    by_kind = {kind.kind: kind for kind in KINDS}
    out: list[dict] = []
    failed = False
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") not in by_kind:
                continue
            meta = doc.setdefault("metadata", {})
            meta.setdefault("namespace", namespace)
            # Owner references need the stored object's uid, which only the API server assigns.
            meta.setdefault("uid", PLACEHOLDER_UID)
            name = f"{path}: {doc['kind']}/{doc['metadata'].get('name', '?')}"
            if by_kind[doc["kind"]].prepare is not None and by_kind[doc["kind"]].offline is None:
                # its children depend on what the cluster holds (a run's Jobs follow the run's progress)
                click.echo(f"{name}: skipped (its children depend on the cluster's state)", err=True)
                continue
            try:
                obj = by_kind[doc["kind"]].model.from_body(doc)
            except ValidationError as exc:
                failed = True
                click.echo(f"{name}: invalid:\n{exc}", err=True)
                continue
            kind = by_kind[doc["kind"]]
            out.extend(kind.desired(obj, kind.offline(obj)) if kind.prepare else kind.desired(obj))
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)
    if failed:
        raise SystemExit(1)
