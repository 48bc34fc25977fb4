"""Predictive scaling of MiniProgramApps, live: Prometheus -> batch forecast -> replica policy -> scale.

- `core`: pure tick (history, batch forecast, per-app ReplicaPolicy); `loop`: the operator thread and writes;
- `promapi`: Prometheus HTTP API client.
A local Prometheus, traffic replay and the demo's chart are dev-environment code: `mpcloud_operator.devenv`.
"""
