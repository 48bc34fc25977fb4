"""Generate crds/ from the pydantic models: `python -m mpcloud_operator.crdgen [--check]`.

The conversion to structural schemas lives in `mpcloud_operator.api.crdgen`; this module lists the project's
CRDs and writes them. `--check` regenerates in memory and exits 1 with a diff when the committed YAML has drifted.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

from mpcloud_operator.api.crdgen import Scale, column, crd_for, render

REPO_ROOT = Path(__file__).resolve().parents[2]
# From a source checkout (editable install) crds/ sits beside operator/; otherwise use the cwd.
CRD_DIR = REPO_ROOT / "crds" if (REPO_ROOT / "operator").is_dir() else Path.cwd() / "crds"


def all_crds() -> dict[str, dict[str, Any]]:
    """Every CRD of the project, by file name. Add new kinds here."""
    from mpcloud_operator.miniprogramapp.model import MiniProgramApp

    mpa = crd_for(
        MiniProgramApp, group="mpcloud.io", kind="MiniProgramApp", plural="miniprogramapps",
        short_names=["mpa"], categories=["mpcloud"],
        printer_columns=[
            column("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"),
            column("Replicas", ".status.readyReplicas", "integer", "Ready replicas"),
            column("Desired", ".status.desiredReplicas", "integer", "Replicas the operator asked for"),
            column("Sandbox", ".spec.sandbox.runtimeClassName", description="RuntimeClass of the pods"),
            column("URL", ".status.url", description="In-cluster URL", priority=1),
            column("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1),
            column("Age", ".metadata.creationTimestamp", "date"),
        ],
        scale=Scale(spec_replicas_path=".spec.replicas.desired"),
    )
    return {f"{mpa['metadata']['name']}.yaml": mpa}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcloud_operator.crdgen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff if crds/ is out of date")
    parser.add_argument("--out", type=Path, default=CRD_DIR, help="output directory (default: crds/)")
    args = parser.parse_args(argv)
    drift = False
    for filename, crd in all_crds().items():
        path = args.out / filename
        text = render(crd)
        old = path.read_text() if path.exists() else ""
        if args.check:
            if old != text:
                drift = True
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(keepends=True), text.splitlines(keepends=True),
                    f"{path} (committed)", f"{path} (generated)"))
        elif old != text:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if drift:
        print("CRDs are out of date: run `python -m mpcloud_operator.crdgen`", file=sys.stderr)
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
