"""`check_source`: a function's source checked the way its interpreter would, before any pod runs it.

The operator calls it on every spec change so that a syntax error becomes `Ready=False/InvalidSource` with
the interpreter's own message. Python: `compile()` of every `.py` file under its own file name (nothing is
executed) and the handler file must exist and bind the handler's name at top level. Node: `node --check` of
every `.js`/`.cjs` file in a temporary directory, its message with the temporary path replaced by the file's
own name and Node's internal stack frames dropped; the handler file must exist.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import tempfile
import traceback
from pathlib import Path, PurePosixPath

NODE_CHECK_TIMEOUT = 20  # seconds for one `node --check`


def _split_handler(handler: str) -> tuple[str, str] | None:
    stem, _, fn = handler.rpartition(".")
    return (stem, fn) if stem and fn else None


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts


def check_source(runtime: str, files: dict[str, str], handler: str) -> str | None:
    """The interpreter's message for a syntax error or a missing handler file (or function), None when fine."""
    parts = _split_handler(handler)
    if parts is None:
        return f"handler {handler!r} must be <file>.<function>, e.g. index.main"
    bad = sorted(n for n in files if not _safe_name(n))
    if bad:
        return f"file names must be relative paths inside the function: {', '.join(bad)}"
    if runtime.startswith("python3"):
        return _check_python(files, *parts)
    if runtime.startswith("nodejs"):
        return _check_node(files, *parts)
    return f"unknown runtime {runtime!r}: python3.11 or nodejs20"


def _binds(tree: ast.Module, name: str) -> bool:
    """Whether the module's top level may bind `name` (a def, an assignment, an import; `import *` counts)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" or (a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                return True
        elif isinstance(node, (ast.If, ast.Try, ast.With)):  # conditional definitions: give them the benefit
            if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in ast.walk(node)):
                return True
    return False


def _check_python(files: dict[str, str], stem: str, fn: str) -> str | None:
    handler_file = stem.replace(".", "/") + ".py"
    for name in sorted(files):
        if name.endswith(".py"):
            try:
                compile(files[name], name, "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as exc:  # ValueError: NUL bytes in the source
                return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    if handler_file not in files:
        return f"handler file {handler_file} not found (files: {', '.join(sorted(files)) or 'none'})"
    if not _binds(ast.parse(files[handler_file], handler_file), fn):
        return f"{handler_file} defines no function {fn!r} (handler {stem}.{fn})"
    return None


def _node_message(output: str, tmp: str) -> str:
    """`node --check` output as Node prints it, minus the temporary directory and internal frames."""
    lines = [line for line in output.replace(tmp + os.sep, "").splitlines()
             if not line.lstrip().startswith("at ") and not line.startswith("Node.js v")]
    return "\n".join(lines).strip()


def _check_node(files: dict[str, str], stem: str, fn: str) -> str | None:
    candidates = [f"{stem}.js", f"{stem}.cjs"]
    if not any(c in files for c in candidates):
        return f"handler file {stem}.js not found (files: {', '.join(sorted(files)) or 'none'})"
    node = os.environ.get("MPCLOUD_NODE") or shutil.which("node")
    if node is None:
        return None  # nothing to check with here; the runtime host reports the error when it loads the code
    with tempfile.TemporaryDirectory(prefix="mpcloud-check-") as tmp:
        for name, text in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for name in sorted(files):
            if name.endswith((".js", ".cjs")):
                res = subprocess.run([node, "--check", name], cwd=tmp, capture_output=True, text=True,
                                     timeout=NODE_CHECK_TIMEOUT)
                if res.returncode != 0:
                    return _node_message(res.stderr or res.stdout, tmp)
    return None
