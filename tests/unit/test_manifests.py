"""Rules every shipped workload manifest (manifests/**.yaml) keeps."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "manifests").rglob("*.yaml"))


def _docs(kind: str) -> list[dict]:
    return [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d and d.get("kind") == kind]


def _link_variables(service: str) -> set[str]:
    """The Docker-link variables the kubelet injects for a Service (enableServiceLinks), for its first port."""
    base = re.sub(r"[^A-Z0-9]", "_", service.upper())
    return {f"{base}_SERVICE_HOST", f"{base}_SERVICE_PORT", f"{base}_PORT"}


def test_mpcloud_pods_get_no_service_link_variables():
    # The operator's and gateway's settings are MPCLOUD_* variables and our Services are mpcloud-*: the kubelet's
    # link variable MPCLOUD_WEBHOOK_PORT=tcp://10.96.x.y:443 (Service mpcloud-webhook) crashed the in-cluster
    # operator's config parsing (webhook_port). Every mpcloud Deployment turns them off.
    workloads = [d for d in _docs("Deployment") if d["metadata"]["name"].startswith("mpcloud-")]
    assert {d["metadata"]["name"] for d in workloads} >= {"mpcloud-operator", "mpcloud-gateway"}
    for d in workloads:
        assert d["spec"]["template"]["spec"].get("enableServiceLinks") is False, d["metadata"]["name"]


def test_no_service_link_variable_is_a_setting():
    # A second line of defence for pods that keep service links on (and for anyone copying the env by hand).
    from mpcloud_operator.config import OperatorConfig

    settings = {"MPCLOUD_" + name.upper() for name in OperatorConfig.model_fields}
    links = {v for s in _docs("Service") for v in _link_variables(s["metadata"]["name"])}
    assert "MPCLOUD_WEBHOOK_PORT" in links  # the collision the first test guards against is real
    assert settings & links == {"MPCLOUD_WEBHOOK_PORT"}, "a new Service name collides with a setting"
