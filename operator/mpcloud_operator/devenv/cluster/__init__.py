"""The local control plane: etcd, kube-apiserver, controller-manager, scheduler and kwok on 127.0.0.1.

Binaries are built from the Go module proxy at pinned versions (`binaries.py`, cached under
`~/.cache/mpcloud/bin/<version>/`); kwokctl orchestrates them (`local.py`).
"""
