"""Build and cache the control-plane binaries from Go modules at pinned versions.

Each `gobuild/<name>/` folder is a tiny Go module whose go.mod/go.sum pin the upstream module;
`go build` of its commands goes through the module proxy and Go's build cache. Binaries land in
`~/.cache/mpcloud/bin/<version>/` (or `$MPCLOUD_CACHE/bin/...`) and are never rebuilt when present.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Collection

KUBE_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
COREDNS_VERSION = "v1.15.0"
# SeaweedFS publishes no semver tags to the module proxy: a pseudo-version (upstream commit 7506e5f91cd6).
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"

_KUBE_LDFLAGS = " ".join(
    f"-X k8s.io/component-base/version.{k}={v}"
    for k, v in {
        "gitVersion": KUBE_VERSION,
        "gitMajor": "1",
        "gitMinor": KUBE_VERSION.split(".")[1],
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
    }.items()
)


@dataclass(frozen=True)
class BuildSet:
    """Commands built together from one pinned Go module."""

    module_dir: str  # folder under gobuild/
    version: str
    packages: dict[str, str]  # binary name -> Go package path
    ldflags: str = ""


BUILD_SETS = (
    BuildSet(
        "kube",
        KUBE_VERSION,
        {
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            # The real node's agents (`realnode.py`): same module graph and version as the control plane.
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        },
        _KUBE_LDFLAGS,
    ),
    BuildSet("etcd", ETCD_VERSION, {"etcd": "go.etcd.io/etcd/server/v3"}),
    BuildSet(
        "kwok",
        KWOK_VERSION,
        {"kwok": "sigs.k8s.io/kwok/cmd/kwok", "kwokctl": "sigs.k8s.io/kwok/cmd/kwokctl"},
        f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}",
    ),
    # The real nodes' cluster DNS (`realnode.py`).
    BuildSet("coredns", COREDNS_VERSION, {"coredns": "github.com/coredns/coredns"}),
    # CloudFunctions' S3-compatible file storage (`devenv/seaweedfs.py`).
    BuildSet(
        "seaweedfs",
        SEAWEEDFS_VERSION,
        {"weed": "github.com/seaweedfs/seaweedfs/weed"},
        "-X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=7506e5f91cd6",
    ),
)


class BuildError(RuntimeError):
    """A Go build failed; the message carries the tail of its log."""


def cache_root() -> Path:
    return Path(os.environ.get("MPCLOUD_CACHE", Path.home() / ".cache" / "mpcloud"))


def bin_dir(build: BuildSet) -> Path:
    return cache_root() / "bin" / f"{build.module_dir}-{build.version}"


def binary_path(name: str) -> Path:
    for build in BUILD_SETS:
        if name in build.packages:
            return bin_dir(build) / name
    raise KeyError(name)


NODE_BINARIES = frozenset({"kubelet", "kube-proxy", "coredns"})  # only a cluster with real nodes needs them
STORAGE_BINARIES = frozenset({"weed"})  # file storage, not part of any cluster


def missing(names: Collection[str] | None = None) -> list[str]:
    return [n for b in BUILD_SETS for n in b.packages
            if (names is None or n in names) and not (bin_dir(b) / n).is_file()]


def control_plane_names() -> set[str]:
    return {n for b in BUILD_SETS for n in b.packages} - NODE_BINARIES - STORAGE_BINARIES


def ensure_binaries(log: Callable[[str], None] = print, names: Collection[str] | None = None) -> dict[str, Path]:
    """Build whatever of `names` (default: every binary) is missing, serialised by a file lock across
    processes; return name -> path of every binary."""
    if shutil.which("go") is None and missing(names):
        raise BuildError("the Go toolchain (`go`) is not on PATH; install Go ≥ 1.26 to build the control plane")
    lock_path = cache_root() / "build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for build in BUILD_SETS:
            todo = [n for n in build.packages
                    if (names is None or n in names) and not (bin_dir(build) / n).is_file()]
            if todo:
                _build(build, todo, log)
    return {n: bin_dir(b) / n for b in BUILD_SETS for n in b.packages}


def _build(build: BuildSet, names: list[str], log: Callable[[str], None]) -> None:
    src = resources.files("mpcloud_operator.devenv.cluster").joinpath("gobuild", build.module_dir)
    out = bin_dir(build)
    out.mkdir(parents=True, exist_ok=True)
    log(f"building {', '.join(names)} ({build.version}) from Go modules; the first build takes several minutes")
    with tempfile.TemporaryDirectory(prefix=f"mpcloud-{build.module_dir}-") as tmp:
        # Copy the module: the installed package may be read-only, and builds must not write into it.
        for f in ("go.mod", "go.sum", "tools.go"):
            shutil.copyfile(src.joinpath(f), Path(tmp) / f)
        staging = Path(tmp) / "out"
        staging.mkdir()
        # One package: name the output; several: `-o dir/` names each after its last path element.
        target = str(staging / names[0]) if len(names) == 1 else str(staging) + "/"
        cmd = ["go", "build", "-v", "-trimpath", "-o", target]
        if build.ldflags:
            cmd += ["-ldflags", build.ldflags]
        cmd += [build.packages[n] for n in names]
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
        _run_with_progress(cmd, Path(tmp), env, log, names)
        for n in names:
            built = staging / n
            if not built.exists():
                raise BuildError(f"go build finished but produced no {n} in {staging}")
            os.replace(built, out / n)  # atomic: a half-written binary is never visible
    log(f"built {', '.join(names)} into {out}")


def _run_with_progress(cmd: list[str], cwd: Path, env: dict, log: Callable[[str], None], names: list[str]) -> None:
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=40)
    packages = 0
    last_report = 0.0
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip())
        packages += 1
        now = time.monotonic()
        if now - last_report >= 10:
            last_report = now
            log(f"  … {packages} packages compiled, {now - started:.0f}s elapsed (last: {line.strip()[:80]})")
    rc = proc.wait()
    if rc != 0:
        raise BuildError(f"`{' '.join(cmd)}` failed with exit code {rc}; last lines of the build log:\n" + "\n".join(tail))
    log(f"  {' '.join(names)}: {packages} packages, {time.monotonic() - started:.0f}s")


def main(argv: list[str] | None = None) -> None:
    """`python -m mpcloud_operator.devenv.cluster.binaries [NAME...]` (used by .ci/run and the Makefile): build the
    named binaries, by default every cluster binary (the file-storage server `weed` only when named)."""
    args = sys.argv[1:] if argv is None else argv
    known = {n for b in BUILD_SETS for n in b.packages}
    unknown = sorted(set(args) - known)
    if unknown:
        raise SystemExit(f"unknown binary {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    names = set(args) or known - STORAGE_BINARIES
    paths = ensure_binaries(lambda m: print(m, file=sys.stderr, flush=True), names=names)
    for name in sorted(names):
        print(f"{name}\t{paths[name]}")


if __name__ == "__main__":
    main()
