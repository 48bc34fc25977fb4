"""`python -m mpcloud_operator.functions.fetch --url U --sha256 H --dest DIR`: a function's archive source.

Runs as the init container of a function whose spec.source is an archive: downloads it, refuses it unless its
SHA-256 is the one in the spec (the spec pins the code, as an image digest pins an image), and unpacks a
.tar.gz / .tar / .zip into DIR without letting a member escape it (no absolute paths, no `..`, no links).
Any failure exits 1 with one line (at most MESSAGE_MAX bytes) on stderr and in the termination-message file
(`--termination-log`, the kubelet's /dev/termination-log): what the function's status shows as BuildFailed.
URLs in messages lose their query string (a pre-signed URL's signature is a credential).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

MAX_BYTES = 256 * 1024 * 1024
MESSAGE_MAX = 1024  # the kubelet keeps at most 4096 bytes; status messages stay readable
TERMINATION_LOG = "/dev/termination-log"


class FetchError(Exception):
    pass


def shown(url: str) -> str:
    """The URL as messages show it: without query or fragment (signatures), at most 200 characters."""
    parts = urlsplit(url)
    text = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return text if len(text) <= 200 else text[:197] + "..."


def download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only (CRD pattern)
            data = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"cannot download {shown(url)}: HTTP {exc.code} {exc.reason}") from exc
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(f"cannot download {shown(url)}: {reason}") from exc
    if len(data) > MAX_BYTES:
        raise FetchError(f"{shown(url)}: archive larger than {MAX_BYTES} bytes")
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


def one_line(text: str, limit: int = MESSAGE_MAX) -> str:
    """A message as one line of at most `limit` UTF-8 bytes."""
    line = " ".join(text.split()) or "failed"
    data = line.encode()
    return line if len(data) <= limit else data[: limit - 3].decode(errors="ignore") + "..."


def report(message: str, termination_log: str | None) -> None:
    print(message, file=sys.stderr)
    if termination_log:
        try:
            Path(termination_log).write_text(message + "\n")
        except OSError:
            pass  # stderr is the fallback (FallbackToLogsOnError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpcloud_operator.functions.fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--termination-log", default=TERMINATION_LOG,
                        help="where the kubelet reads the termination message ('' = stderr only)")
    args = parser.parse_args(argv)
    # The kubelet creates the file in a pod; elsewhere (a host, a test) nothing is created.
    log = args.termination_log if args.termination_log and Path(args.termination_log).is_file() else None
    try:
        files = fetch(args.url, args.sha256, args.dest)
    except FetchError as exc:
        report(one_line(str(exc)), log)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug or a disk problem still ends as one clear line
        report(one_line(f"unpacking the archive failed: {type(exc).__name__}: {exc}"), log)
        return 1
    print(f"unpacked {len(files)} files into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
