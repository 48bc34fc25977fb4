"""check_source: the interpreter's own message for bad source, None for good source."""

from __future__ import annotations

import shutil

import pytest

from mpcloud_operator.functions.validate import check_source

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def test_good_python_source():
    assert check_source("python3.11", {"index.py": "def main(event, context):\n    return 1\n"}, "index.main") is None
    assert check_source("python3.11", {"index.py": "async def main(e, c): ...\n"}, "index.main") is None
    assert check_source("python3.11", {"index.py": "from lib import main\n", "lib.py": "def main(e, c): ..."},
                        "index.main") is None
    assert check_source("python3.11", {"app/h.py": "main = lambda e, c: 1\n"}, "app.h.main") is None


def test_python_syntax_error_as_python_prints_it():
    message = check_source("python3.11", {"index.py": "def main(event, context):\n    return {1: }\n"}, "index.main")
    assert message.splitlines()[0] == '  File "index.py", line 2'
    assert message.splitlines()[-1] == "SyntaxError: expression expected after dictionary key and ':'"
    assert "^" in message


def test_syntax_error_in_another_python_file_is_found_too():
    message = check_source("python3.11", {"index.py": "def main(e, c): ...\n", "util.py": "x = (\n"}, "index.main")
    assert 'File "util.py"' in message and "SyntaxError" in message


@pytest.mark.parametrize("files,handler,expected", [
    ({"lib.py": "x = 1\n"}, "index.main", "handler file index.py not found (files: lib.py)"),
    ({"index.py": "def other(e, c): ...\n"}, "index.main", "index.py defines no function 'main'"),
    ({"index.py": "def main(e, c): ...\n"}, "main", "must be <file>.<function>"),
    ({"../x.py": ""}, "x.main", "relative paths"),
])
def test_python_missing_handler(files, handler, expected):
    assert expected in check_source("python3.11", files, handler)


def test_unknown_runtime():
    assert "unknown runtime" in check_source("ruby3", {"index.rb": ""}, "index.main")


@needs_node
def test_node_good_and_bad_source():
    assert check_source("nodejs20", {"index.js": "exports.main = async (e, c) => ({ok: true});\n"}, "index.main") is None
    message = check_source("nodejs20", {"index.js": "exports.main = async (e) => {\n  return {a: 1,,};\n};\n"},
                           "index.main")
    lines = message.splitlines()
    assert lines[0] == "index.js:2" and lines[1] == "  return {a: 1,,};" and lines[2].strip() == "^"
    assert lines[-1] == "SyntaxError: Unexpected token ','"
    assert "mpcloud-check-" not in message and "node:internal" not in message


def test_node_missing_handler_file():
    assert check_source("nodejs20", {"main.js": ""}, "index.main") == "handler file index.js not found (files: main.js)"
