"""Packaging rules of the design card."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_operator_is_not_shadowed_from_repo_root():
    out = subprocess.run([sys.executable, "-c", "import operator; operator.itemgetter; print(operator.__file__)"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "site-packages" not in out and "/operator/" not in out.replace("\\", "/").split("lib")[0]
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_operator_package_has_its_own_import_name():
    import mpcloud_operator

    assert Path(mpcloud_operator.__file__).parent == ROOT / "operator" / "mpcloud_operator"


def test_predictors_imports_no_kubernetes_library():
    code = (
        "import sys, pkgutil, importlib, predictors\n"
        "for m in pkgutil.walk_packages(predictors.__path__, 'predictors.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('kubernetes', 'kopf', 'mpcloud_operator'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"predictors pulled in: {out.stdout}"


def test_cli_entry_point_lists_commands():
    out = subprocess.run([sys.executable, "-m", "mpcloud_operator", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for cmd in ("cluster", "operator", "replay", "keepalive", "kubectl"):
        assert cmd in out


def test_api_toolkit_imports_no_kopf_or_kubernetes():
    # Models, CRD generation and conditions must load in tools, tests and webhooks without the controller stack.
    code = (
        "import sys, pkgutil, importlib, mpcloud_operator.api as api\n"
        "names = [m.name for m in pkgutil.walk_packages(api.__path__, 'mpcloud_operator.api.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('kubernetes', 'kopf'))\n"
        "print(len(names), ','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    count, _, bad = out.stdout.strip().partition(" ")
    assert int(count) >= 5 and bad == "", f"mpcloud_operator.api pulled in: {bad}"


def test_operator_image_carries_no_dev_environment():
    # .dockerignore keeps devenv/ out of the build context, so no image layer can hold it (a `RUN rm` after
    # COPY would leave it in the COPY layer). The Dockerfile copies only what the operator runs.
    ignored = [line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    assert "operator/mpcloud_operator/devenv" in ignored
    assert not any(line.startswith("!") and "devenv" in line for line in ignored)  # no re-include
    copies = [line.split()[1:-1] for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith(("COPY", "ADD"))]
    local = sorted(src for srcs in copies for src in srcs if "://" not in src)  # not the pinned Node.js download
    assert local == ["README.md", "operator", "predictors", "pyproject.toml"]
    assert (ROOT / "operator" / "mpcloud_operator" / "devenv" / "__init__.py").exists()  # the ignored path is real


def test_gobuild_modules_ship_as_package_data():
    # `mpcloud cluster up` from an sdist/editable install builds from these files (importlib.resources).
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    pkg = ROOT / "operator" / "mpcloud_operator"
    shipped = {p for pattern in data["mpcloud_operator"] for p in pkg.glob(pattern)}
    for module in ("etcd", "kube", "kwok"):
        for name in ("go.mod", "go.sum", "tools.go"):
            assert pkg / "devenv" / "cluster" / "gobuild" / module / name in shipped


def _third_party_imports(*tops: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Top-level module name -> one file importing it, for every absolute import under the given folders."""
    import ast

    found: dict[str, str] = {}
    for top in tops:
        for path in sorted(top.rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if any(rel.startswith(s) for s in skip):
                continue
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
                for name in names:
                    found.setdefault(name.split(".")[0], rel)
    own = {"mpcloud_operator", "predictors", "tests", "bench"}
    return {m: f for m, f in found.items() if m not in sys.stdlib_module_names and m not in own}


def _declared_closure() -> set[str]:
    """Distributions pyproject's dependencies bring in (normalised names), through their own requirements."""
    import importlib.metadata as md
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        for sub in md.requires(req.name) or []:
            dep = Requirement(sub)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(dep)
    return seen


def test_every_import_of_the_shipped_code_is_a_declared_dependency():
    # The operator image installs pyproject's dependencies only: an import satisfied on a dev machine by some
    # unrelated package (cryptography came with moto here) crashes the in-cluster operator at start.
    import importlib.metadata as md

    from packaging.utils import canonicalize_name

    dists = md.packages_distributions()
    declared = _declared_closure()
    imports = _third_party_imports(ROOT / "operator" / "mpcloud_operator", ROOT / "predictors",
                                   skip=("operator/mpcloud_operator/devenv/",))
    missing = {m: f for m, f in imports.items()
               if not any(canonicalize_name(d) in declared for d in dists.get(m, []))}
    assert not missing, f"imported but not brought in by pyproject's dependencies: {missing}"
