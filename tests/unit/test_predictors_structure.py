"""Structure of the forecasting library: no import cycles, and the operator's scaler runs without the simulator."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports() -> dict[str, set[str]]:
    out = {}
    for f in (ROOT / "predictors").rglob("*.py"):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("predictors"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("predictors")}
        out[name] = deps - {name}
    return out


def test_predictors_modules_have_no_import_cycles():
    graph = imports()
    packages = {m for m in graph if (ROOT / m.replace(".", "/") / "__init__.py").exists()}
    seen: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        for d in graph.get(m, ()):
            if d in packages:  # a package's __init__ re-exports its modules: not a module-level cycle
                continue
            assert d not in path, " -> ".join((*path, d))
            if d not in seen:
                visit(d, (*path, d))
        seen.add(m)

    for m in graph:
        visit(m, (m,))


def test_the_operator_scaler_does_not_import_the_simulator():
    code = ("import sys, mpcloud_operator.scaling.loop, mpcloud_operator.scaling.offline; "
            "print(sorted(m for m in sys.modules if m.startswith('predictors')))")
    mods = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "predictors.replay" not in mods and "predictors.online" in mods, mods
