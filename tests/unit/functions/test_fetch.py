"""The archive-source init container: digest pinning and safe unpacking (no network: a local file:// URL)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from mpcloud_operator.functions import fetch


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("make", [_tar, _zip])
def test_fetch_verifies_and_unpacks(tmp_path: Path, make) -> None:
    data = make({"index.js": b"exports.main = () => 1", "lib/util.js": b"module.exports = {}"})
    src = tmp_path / "code.archive"
    src.write_bytes(data)
    files = fetch.fetch(src.as_uri(), hashlib.sha256(data).hexdigest(), tmp_path / "code")
    assert sorted(files) == ["index.js", "lib/util.js"]
    assert (tmp_path / "code" / "lib" / "util.js").read_bytes() == b"module.exports = {}"


def test_digest_mismatch_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.tgz"
    src.write_bytes(_tar({"index.py": b"x"}))
    with pytest.raises(fetch.FetchError, match="does not match"):
        fetch.fetch(src.as_uri(), "0" * 64, tmp_path / "code")


@pytest.mark.parametrize("make", [_tar, _zip])
def test_members_cannot_escape(tmp_path: Path, make) -> None:
    with pytest.raises(fetch.FetchError, match="outside"):
        fetch.unpack(make({"../evil.py": b"x"}), tmp_path / "code")


def test_main_reports_one_line_and_exit_1(tmp_path: Path, capsys) -> None:
    assert fetch.main(["--url", (tmp_path / "missing").as_uri(), "--sha256", "0" * 64, "--dest", str(tmp_path)]) == 1
    assert "cannot download" in capsys.readouterr().err


def test_termination_message_is_one_bounded_line_without_the_query(tmp_path: Path, capsys) -> None:
    log = tmp_path / "termination-log"
    log.write_text("")  # the kubelet creates it in a pod
    long_url = "http://127.0.0.1:9/" + "x" * 3000 + "?X-Amz-Signature=secret"
    assert fetch.main(["--url", long_url, "--sha256", "0" * 64, "--dest", str(tmp_path / "c"),
                       "--termination-log", str(log)]) == 1
    message = log.read_text()
    assert message.count("\n") == 1 and message.startswith("cannot download http://127.0.0.1:9/xxx")
    assert len(message.encode()) <= fetch.MESSAGE_MAX + 1 and "secret" not in message
    assert "secret" not in capsys.readouterr().err


def test_digest_mismatch_message_names_both_digests(tmp_path: Path) -> None:
    src = tmp_path / "a.tgz"
    data = _tar({"index.py": b"x"})
    src.write_bytes(data)
    log = tmp_path / "termination-log"
    log.write_text("")
    assert fetch.main(["--url", src.as_uri(), "--sha256", "0" * 64, "--dest", str(tmp_path / "c"),
                       "--termination-log", str(log)]) == 1
    assert hashlib.sha256(data).hexdigest() in log.read_text() and "0" * 64 in log.read_text()


def test_no_termination_file_is_created_outside_a_pod(tmp_path: Path) -> None:
    log = tmp_path / "absent"
    fetch.main(["--url", (tmp_path / "missing").as_uri(), "--sha256", "0" * 64, "--dest", str(tmp_path),
                "--termination-log", str(log)])
    assert not log.exists()
