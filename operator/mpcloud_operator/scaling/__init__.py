"""Predictive scaling of MiniProgramApps, live: Prometheus -> batch forecast -> replica policy -> scale.

- `core`: pure tick (history, batch forecast, per-app ReplicaPolicy); `loop`: the operator thread and writes;
- `promapi`: Prometheus HTTP API client; `promserver`: a local Prometheus (Debian's binary) for dev/tests;
- `traffic`: replays a trace as a Prometheus counter, history backfilled with promtool;
- `demo`: start Prometheus + replay for an example app, and a text chart of demand vs replicas.
"""
