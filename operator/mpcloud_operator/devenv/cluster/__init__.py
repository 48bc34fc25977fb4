"""The local control plane: etcd, kube-apiserver, controller-manager, scheduler and kwok on 127.0.0.1.

Exists so that tests and the demo run against a real API server without Docker or a cloud account.
Binaries are built from the Go module proxy at pinned versions (`binaries.py`, cached under
`~/.cache/mpcloud/bin/<version>/`); kwokctl orchestrates them (`local.py`); `install.py` installs mpcloud.
`realnode.py` adds real nodes (kubelet + containerd/runc + CNI bridge + CoreDNS, one kube-proxy) whose pods
really run; `images.py` builds the project's images from Debian packages and this checkout, no registry.
"""
