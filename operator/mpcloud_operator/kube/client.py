"""The operator's one kubernetes ApiClient (in-cluster config, else $KUBECONFIG / ~/.kube/config)."""

from __future__ import annotations

import threading

from kubernetes import client, config

_client: client.ApiClient | None = None
_lock = threading.Lock()


def api_client() -> client.ApiClient:
    global _client
    with _lock:
        if _client is None:
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
            # kopf runs sync handlers on a thread pool: give every worker its own pooled connection.
            configuration.connection_pool_maxsize = 32
            _client = client.ApiClient(configuration)
        return _client
