"""Predictive scaling of MiniProgramApps, live: Prometheus -> online forecaster (all apps) -> replica policy -> scale.

- `core`: pure tick (history, the replay's online forecaster with one row per app, `PredictiveDecider` per app);
  `loop`: the operator thread and writes; `offline`: the core over recorded series and a fake clock (bench, tests);
- `promapi`: Prometheus HTTP API client.
A local Prometheus, traffic replay and the demo's chart are dev-environment code: `mpcloud_operator.devenv`.
"""
