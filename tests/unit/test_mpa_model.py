"""Unit tests for the MiniProgramApp pydantic model: defaults, aliases, and the CEL-mirroring validators."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mpcloud_operator.api import parts
from mpcloud_operator.api.schema import to_json
from mpcloud_operator.api.types import parse_quantity
from mpcloud_operator.miniprogramapp import model as m
from mpcloud_operator.miniprogramapp.model import MiniProgramApp, MiniProgramAppSpec, Replicas

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def spec(**extra):
    return {"image": "nginxinc/nginx-unprivileged:1.27", "ports": [{"name": "http", "containerPort": 8080}], **extra}


def test_minimal_spec_gets_the_documented_defaults():
    s = MiniProgramAppSpec.model_validate(spec())
    assert s.sandbox.runtime_class_name == "kata" and not s.sandbox.allow_unsandboxed
    assert (s.replicas.min, s.replicas.max, s.replicas.desired) == (1, 10, 1)
    assert s.scaling.mode == "reactive" and s.scaling.target_utilization == 0.7
    assert s.scaling.scale_down.stabilization_window_seconds == 300
    assert (s.resources.requests.cpu, s.resources.limits.memory) == ("100m", "512Mi")
    assert s.ports[0].protocol == "TCP" and s.probes.enabled


def test_camel_case_in_and_out_snake_case_accepted():
    s = MiniProgramAppSpec.model_validate(spec(scaling={"mode": "predictive", "capacityPerReplica": 100}))
    assert s.scaling.capacity_per_replica == 100
    s2 = MiniProgramAppSpec.model_validate(spec(scaling={"mode": "predictive", "capacity_per_replica": 100}))
    assert s2 == s
    out = to_json(s)
    assert out["scaling"]["capacityPerReplica"] == 100 and "capacity_per_replica" not in out["scaling"]
    assert MiniProgramAppSpec.model_validate(out) == s  # round trip


def test_unknown_field_is_rejected():
    with pytest.raises(ValidationError, match="replica"):
        MiniProgramAppSpec.model_validate(spec(replica={"min": 1}))


# (spec overrides, message shared with the CRD's CEL rule or schema)
INVALID = [
    ({"replicas": {"min": 5, "max": 2}}, m.MIN_LE_MAX.message),
    ({"scaling": {"mode": "scheduled", "capacityPerReplica": 1, "events": [
        {"name": "e", "start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z", "expectedMultiplier": 2}]}},
     m.EVENT_END_AFTER_START.message),
    ({"scaling": {"mode": "scheduled", "capacityPerReplica": 1, "events": [
        {"name": "e", "start": "2025-01-01T00:00:00Z", "end": "2025-01-01T00:00:00Z", "expectedMultiplier": 2}]}},
     m.EVENT_END_AFTER_START.message),
    ({"sandbox": {"runtimeClassName": "none"}}, parts.SANDBOX_REQUIRED.message),
    ({"sandbox": {"runtimeClassName": ""}}, parts.SANDBOX_REQUIRED.message),
    ({"scaling": {"mode": "predictive"}}, m.CAPACITY_REQUIRED.message),
    ({"scaling": {"mode": "scheduled"}}, m.CAPACITY_REQUIRED.message),
    ({"ports": [{"name": "http", "containerPort": 8080}, {"name": "http", "containerPort": 8081}]},
     parts.PORT_NAMES_UNIQUE.message),
    ({"ports": [{"name": "http", "containerPort": 8080}, {"name": "web", "containerPort": 8080}]},
     parts.PORT_NUMBERS_UNIQUE.message),
    ({"probes": {"liveness": {"httpGet": {}, "tcpSocket": {}}}}, parts.PROBE_ONE_ACTION.message),
    ({"env": [{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
     parts.ENV_VALUE_OR_FROM.message),
    ({"env": [{"name": "A", "valueFrom": {}}]}, parts.ENV_SOURCE_ONE_OF.message),
    ({"envFrom": [{"prefix": "X_"}]}, parts.ENV_FROM_ONE_OF.message),
    ({"bindings": {"database": {}}}, parts.DATABASE_ONE_OF.message),
    ({"bindings": {"database": {"secretRef": {"name": "db"}, "managed": True}}}, parts.DATABASE_ONE_OF.message),
    ({"resources": {"requests": {"memory": "1Gi"}}}, parts.REQUESTS_WITHIN_LIMITS.message),
    ({"resources": {"requests": {"cpu": 2}}}, parts.REQUESTS_WITHIN_LIMITS.message),
    ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "env[].name must be unique"),
    ({"replicas": {"min": -1}}, "greater than or equal to 0"),
    ({"replicas": {"max": 0}}, "greater than or equal to 1"),
    ({"scaling": {"targetUtilization": 0}}, "greater than 0"),
    ({"scaling": {"targetUtilization": 1.5}}, "less than or equal to 1"),
    ({"ports": []}, "at least 1 item"),
    ({"ports": [{"name": "8080", "containerPort": 8080}]}, "pattern"),
    ({"ports": [{"name": "http", "containerPort": 70000}]}, "less than or equal to 65535"),
    ({"resources": {"limits": {"cpu": "lots"}}}, "pattern"),
    ({"sandbox": {"runtimeClassName": "Kata_QEMU"}}, "pattern"),
    ({"scaling": {"mode": "burst"}}, "reactive"),
]


@pytest.mark.parametrize(("overrides", "message"), INVALID, ids=[msg[:40] for _, msg in INVALID])
def test_invalid_specs_are_rejected_with_the_cel_message(overrides, message):
    with pytest.raises(ValidationError) as err:
        MiniProgramAppSpec.model_validate(spec(**overrides))
    assert message in str(err.value)


@pytest.mark.parametrize("overrides", [
    {"sandbox": {"runtimeClassName": "none", "allowUnsandboxed": True}},
    {"sandbox": {"runtimeClassName": "", "allowUnsandboxed": True}},
    {"sandbox": {"runtimeClassName": "kata-fc", "allowUnsandboxed": True}},
    {"replicas": {"min": 0, "max": 1}},
    {"replicas": {"min": 3, "max": 3, "desired": 50}},
    {"resources": {"requests": {"cpu": 1, "memory": "512Mi"}, "limits": {"cpu": "1000m", "memory": "0.5Gi"}}},
    {"scaling": {"mode": "reactive", "events": []}},
    {"probes": {"readiness": {"httpGet": {"path": "/healthz", "port": 8080}}, "liveness": {"tcpSocket": {"port": "http"}}}},
    {"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}],
     "envFrom": [{"secretRef": {"name": "s"}, "prefix": "S_"}]},
    {"bindings": {"database": {"secretRef": {"name": "db"}}}},
    {"bindings": {"database": {"managed": True}}},
    {"exposure": {"allowedNamespaces": ["ingress"], "namespaceSelector": {"matchLabels": {"team": "x"}}}},
])
def test_valid_variants(overrides):
    MiniProgramAppSpec.model_validate(spec(**overrides))


def test_replicas_effective_is_clamped():
    assert Replicas().effective == 1
    assert Replicas(min=2, max=5, desired=9).effective == 5
    assert Replicas(min=2, max=5, desired=0).effective == 2
    assert Replicas(min=0, max=5, desired=0).effective == 0
    assert Replicas(min=0, max=5).effective == 1  # desired defaults to 1; the scaler takes it to 0
    assert Replicas(min=3, max=5).effective == 3


@pytest.mark.parametrize(("q", "value"), [
    ("100m", 0.1), ("1", 1), (2, 2), ("128Mi", 128 * 2**20), ("1Gi", 2**30), ("1e3", 1000), ("1E", 1e18),
    ("0.5Gi", 2**29), ("1k", 1000), ("1M", 1e6),
])
def test_parse_quantity(q, value):
    assert parse_quantity(q) == pytest.approx(value)


def test_from_body_accepts_kopf_body_and_whole_object():
    import kopf

    raw = {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp",
           "metadata": {"name": "a", "namespace": "ns", "uid": "u", "generation": 4, "resourceVersion": "9",
                        "managedFields": []},
           "spec": spec(), "status": {"replicas": 1, "conditions": [
               {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z",
                "reason": "ReplicasAvailable", "message": ""}]}}
    for body in (raw, kopf.Body(raw)):
        app = MiniProgramApp.from_body(body)
        assert app.metadata.generation == 4 and app.spec.image.startswith("nginx")
        assert app.status.conditions[0].type == "Ready"


def load(name):
    return yaml.safe_load((EXAMPLES / name).read_text())


@pytest.mark.parametrize("name", ["app-simple.yaml", "app-promotion.yaml"])
def test_valid_examples(name):
    app = MiniProgramApp.model_validate(load(name))
    assert "namespace" not in load(name)["metadata"]  # applied with -n
    assert app.spec.sandbox.runtime_class_name.startswith("kata")


def test_promotion_example_declares_a_30x_event():
    app = MiniProgramApp.model_validate(load("app-promotion.yaml"))
    assert app.spec.scaling.mode == "predictive"
    assert [e.expected_multiplier for e in app.spec.scaling.events] == [30]


def test_invalid_example_fails_with_the_message_it_documents():
    text = (EXAMPLES / "app-invalid.yaml").read_text()
    assert m.MIN_LE_MAX.message in text
    with pytest.raises(ValidationError, match=m.MIN_LE_MAX.message.replace(".", r"\.")):
        MiniProgramApp.model_validate(yaml.safe_load(text))
