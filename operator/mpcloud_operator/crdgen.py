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

from mpcloud_operator.api.crdgen import crd_for, render

REPO_ROOT = Path(__file__).resolve().parents[2]
# From a source checkout (editable install) crds/ sits beside operator/; otherwise use the cwd.
CRD_DIR = REPO_ROOT / "crds" if (REPO_ROOT / "operator").is_dir() else Path.cwd() / "crds"


def all_crds() -> dict[str, dict[str, Any]]:
    """Every CRD of the project, by file name: one per kind in the registry (`mpcloud_operator.kinds`)."""
    from mpcloud_operator.config import GROUP, VERSION
    from mpcloud_operator.kinds import KINDS

    out = {}
    for kind in KINDS:
        crd = crd_for(kind.model, group=GROUP, kind=kind.kind, plural=kind.plural, version=VERSION,
                      short_names=list(kind.short_names), categories=list(kind.categories),
                      printer_columns=list(kind.printer_columns), scale=kind.scale)
        out[f"{crd['metadata']['name']}.yaml"] = crd
    from mpcloud_operator.riskpolicy.reports import report_crds  # PolicyReport kinds (not ours, no model)

    return {**out, **report_crds()}


def kustomization(filenames: list[str]) -> str:
    """crds/kustomization.yaml listing every generated CRD (manifests/kustomization.yaml includes it)."""
    return ("# Generated CRDs (make crds); included by manifests/kustomization.yaml.\n"
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
            + "".join(f"  - {name}\n" for name in sorted(filenames)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcloud_operator.crdgen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff if crds/ is out of date")
    parser.add_argument("--out", type=Path, default=CRD_DIR, help="output directory (default: crds/)")
    args = parser.parse_args(argv)
    drift = False
    crds = all_crds()
    files = {**{name: render(crd) for name, crd in crds.items()}, "kustomization.yaml": kustomization(list(crds))}
    for filename, text in files.items():
        path = args.out / filename
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
