"""The development environment: everything that runs mpcloud on a workstation or in CI, not in a cluster.

- `cluster/`: the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) from
  cached binaries built at pinned versions, and installing mpcloud's CRDs/RBAC on it;
- `prometheus`: a local Prometheus (Debian's binary); `traffic`: a trace replayed as an app's request counter;
- `launcher`: `mpcloud operator run` as a child process (the demo, the integration tests and bench/ use it);
- `demo`: `mpcloud demo`; `commands`: the CLI commands that drive all of the above.

The running operator never imports this package (tests/unit/test_devenv_isolation.py) and the operator
image does not contain it (.dockerignore), so none of it is part of what runs in production.
"""
