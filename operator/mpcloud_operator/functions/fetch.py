"""`python -m mpcloud_operator.functions.fetch --url U --sha256 H --dest DIR`: a function's archive source.

Runs as the init container of a function whose spec.source is an archive: downloads it, refuses it unless its
SHA-256 is the one in the spec (the spec pins the code, as an image digest pins an image), and unpacks a
.tar.gz / .tar / .zip into DIR without letting a member escape it (no absolute paths, no `..`, no links).
Any failure exits 1 with one line on stderr: the pod's termination message, which the function's status
shows (BuildFailed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

MAX_BYTES = 256 * 1024 * 1024


class FetchError(Exception):
    pass


def download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only (CRD pattern)
            data = response.read(MAX_BYTES + 1)
    except OSError as exc:
        raise FetchError(f"cannot download {url}: {exc}") from exc
    if len(data) > MAX_BYTES:
        raise FetchError(f"{url}: archive larger than {MAX_BYTES} bytes")
    return data


def _safe(dest: Path, name: str) -> Path:
    target = (dest / name).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise FetchError(f"archive member {name!r} would be written outside the code directory")
    return target


def unpack(data: bytes, dest: Path) -> list[str]:
    """Extract into dest; the names of the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                target = _safe(dest, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
                written.append(info.filename)
        return written
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as exc:
        raise FetchError(f"not a .tar.gz, .tar or .zip archive: {exc}") from exc
    with tf:
        for member in tf.getmembers():
            if not (member.isfile() or member.isdir()):
                raise FetchError(f"archive member {member.name!r} is a link or device: refused")
            _safe(dest, member.name)
        tf.extractall(dest, filter="data")
        written = [m.name for m in tf.getmembers() if m.isfile()]
    return written


def fetch(url: str, sha256: str, dest: Path) -> list[str]:
    data = download(url)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise FetchError(f"archive digest sha256:{digest} does not match spec.source.archive.sha256 {sha256}")
    return unpack(data, dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcloud_operator.functions.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        files = fetch(args.url, args.sha256, args.dest)
    except FetchError as exc:
        print(str(exc), file=sys.stderr)  # the termination message (terminationMessagePolicy FallbackToLogsOnError)
        return 1
    print(f"unpacked {len(files)} files into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
