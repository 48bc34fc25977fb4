"""The running operator never imports the dev environment (mpcloud_operator.devenv), tests/ or bench/.

The operator image leaves devenv/ out (.dockerignore), so an import of it from the operator's path would be
a crash in production that no local run would show. Two checks: what a fresh interpreter has loaded after
importing the operator's entry points (and looking up `mpcloud operator run` through the CLI), and a static
scan of every module outside devenv/ for imports of it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "mpcloud_operator"
DEVENV = "mpcloud_operator.devenv"
FORBIDDEN = (DEVENV, "tests", "bench")


def _loaded_after(code: str) -> list[str]:
    """sys.modules of a fresh interpreter (this tree first on its path) after running `code`."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'operator'}{os.pathsep}{ROOT}")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


def test_operator_entry_points_load_no_devenv_tests_or_bench():
    loaded = _loaded_after(
        "import mpcloud_operator.main, mpcloud_operator.commands.operator, mpcloud_operator.cli, "
        "mpcloud_operator.handlers\n"
        "from mpcloud_operator.cli import main\n"
        "try:\n"
        "    main(['operator', 'run', '--help'], standalone_mode=False)\n"  # the lookup `mpcloud operator run` does
        "except SystemExit:\n"
        "    pass\n")
    assert "mpcloud_operator.main" in loaded and "mpcloud_operator.commands.operator" in loaded
    assert _forbidden(loaded) == []


def _modules_outside_devenv() -> list[str]:
    """Every module of the package but devenv's and __main__ (which runs the CLI), from the file tree
    (pkgutil.walk_packages would import devenv to look inside it)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1:2] == ("devenv",) or parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_outside_devenv_loads_no_devenv():
    loaded = _loaded_after(f"import importlib\nfor name in {_modules_outside_devenv()!r}:\n"
                           "    importlib.import_module(name)\n")
    assert "mpcloud_operator.reconcile.controller" in loaded
    assert _forbidden(loaded) == []


def _imported_modules(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement anywhere in the module."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def test_no_module_outside_devenv_imports_it():
    # Not even inside functions: the CLI reaches the dev commands only by name (cli.COMMANDS), so this
    # holds for it too. devenv itself may import anything of the operator.
    offenders = []
    for module in [*_modules_outside_devenv(), "mpcloud_operator.__main__"]:
        is_package = (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()
        path = PACKAGE.parent / (module.replace(".", "/") + ("/__init__.py" if is_package else ".py"))
        rel = path.relative_to(PACKAGE.parent)
        for line, name in _imported_modules(ast.parse(path.read_text(), str(path)), module, is_package):
            if name == DEVENV or name.startswith(DEVENV + ".") or name.split(".")[0] in ("tests", "bench"):
                offenders.append(f"{rel}:{line} imports {name}")
    assert offenders == []


def test_static_scan_sees_relative_and_nested_imports():
    tree = ast.parse("from . import devenv\ndef f():\n    from .devenv.cluster import local\n")
    names = [n for _, n in _imported_modules(tree, "mpcloud_operator.cli", is_package=False)]
    assert "mpcloud_operator.devenv" in names and "mpcloud_operator.devenv.cluster.local" in names


def test_cli_reaches_dev_commands_only_by_name():
    from mpcloud_operator import cli

    dev = {name for name, (module, _) in cli.COMMANDS.items() if module.startswith(DEVENV)}
    assert dev == {"cluster", "kubectl", "demo", "prometheus", "postgres", "seaweedfs", "traffic", "image", "git"}


def test_without_devenv_the_dev_commands_fail_with_one_clear_line():
    # What the operator image does: the devenv package is absent (here: made unimportable).
    code = ("import sys\nsys.modules[{!r}] = None\nfrom mpcloud_operator.cli import main\nmain(sys.argv[1:])\n"
            .format(DEVENV))
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'operator'}{os.pathsep}{ROOT}")

    def mpcloud(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    for args in (["cluster", "up"], ["cluster", "--help"], ["demo"], ["prometheus", "up"], ["kubectl", "get", "ns"]):
        res = mpcloud(*args)
        assert res.returncode == 1, (args, res.stderr)
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "development environment" in res.stderr
    listing = mpcloud("--help")
    assert listing.returncode == 0
    commands = listing.stdout.split("Commands:")[1].split()
    assert "operator" in commands and "cluster" not in commands and "demo" not in commands
    assert mpcloud("operator", "run", "--help").returncode == 0
