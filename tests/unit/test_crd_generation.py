"""Unit tests for crdgen: drift against crds/, structural-schema rules, defaults, CEL rules, subresources."""

import re
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from mpcloud_operator import crdgen
from mpcloud_operator.api import crdgen as generic
from mpcloud_operator.api import parts
from mpcloud_operator.api.schema import to_json
from mpcloud_operator.api.types import QUANTITY
from mpcloud_operator.miniprogramapp import model as m

CRD_FILE = crdgen.CRD_DIR / "miniprogramapps.mpcloud.io.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return crdgen.all_crds()["miniprogramapps.mpcloud.io.yaml"]


@pytest.fixture(scope="module")
def root(crd) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = ""):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def at(root: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = root
    for part in dotted.strip(".").split("."):
        node = node["properties"][part]
    return node


# ------------------------------------------------------------------ drift


def test_committed_crds_match_the_models():
    for filename, crd in crdgen.all_crds().items():
        committed = (crdgen.CRD_DIR / filename).read_text()
        assert committed == generic.render(crd), "run `python -m mpcloud_operator.crdgen`"
    assert crdgen.main(["--check"]) == 0


def test_check_reports_drift(tmp_path, capsys):
    (tmp_path / CRD_FILE.name).write_text(CRD_FILE.read_text().replace("maxItems: 8", "maxItems: 9"))
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 1
    assert "-                maxItems: 9" in capsys.readouterr().out
    assert crdgen.main(["--out", str(tmp_path)]) == 0  # regenerate
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 0


def test_committed_yaml_parses_back_to_the_generated_dict(crd):
    assert yaml.safe_load(CRD_FILE.read_text()) == crd


# ------------------------------------------------------------------ structural schema


def test_schema_is_structural(root):
    assert generic.structural_problems(root["properties"]["spec"], ".spec") == []
    assert generic.structural_problems(root["properties"]["status"], ".status") == []
    text = CRD_FILE.read_text()
    for forbidden in ("$ref", "$defs", "title:", "allOf", "oneOf", "additionalProperties: false", "uniqueItems",
                      "type: 'null'", "type: null"):
        assert forbidden not in text


def test_every_node_has_a_type_and_anyof_only_for_int_or_string(root):
    for path, node in walk(root):
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
        else:
            assert "type" in node and "anyOf" not in node, path
        if node.get("type") == "number" or node.get("exclusiveMinimum") is not None:
            assert node.get("exclusiveMinimum", False) in (True, False), path  # OpenAPI v3.0 bool form


def test_numeric_exclusive_bounds_use_the_openapi_v3_0_form(root):
    util = at(root, "spec.scaling.targetUtilization")
    assert (util["minimum"], util["exclusiveMinimum"], util["maximum"]) == (0, True, 1)
    assert "exclusiveMaximum" not in util


def test_every_list_and_string_is_bounded_for_cel_cost(root):
    for path, node in walk(root["properties"]["spec"], ".spec"):
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "string" and "enum" not in node and "format" not in node:
            assert "maxLength" in node, path


def test_descriptions_come_from_docstrings(root):
    assert at(root, "spec.replicas.desired")["description"].startswith("Replica count requested")
    assert "Kata" in at(root, "spec.sandbox")["description"]
    assert root["description"].startswith("A mini-program app")


# ------------------------------------------------------------------ defaults


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Minimal OpenAPI v3 validator: enough to prove defaults match their own schema."""
    errs: list[str] = []
    if schema.get("x-kubernetes-int-or-string"):
        ok_type = isinstance(value, (int, str)) and not isinstance(value, bool)
    else:
        ok_type = {"object": dict, "array": list, "string": str, "boolean": bool,
                   "integer": int, "number": (int, float)}[schema["type"]]
        ok_type = isinstance(value, ok_type) and (schema["type"] == "boolean" or not isinstance(value, bool))
    if not ok_type:
        return [f"{path}: {value!r} has the wrong type"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} not in enum")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if len(value) > schema.get("maxLength", 1 << 30) or len(value) < schema.get("minLength", 0):
            errs.append(f"{path}: length")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and (value < lo or (schema.get("exclusiveMinimum") and value == lo)):
            errs.append(f"{path}: below minimum")
        if hi is not None and (value > hi or (schema.get("exclusiveMaximum") and value == hi)):
            errs.append(f"{path}: above maximum")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{path}: missing {key}")
        for key, sub in value.items():
            if key in props:
                errs += validate(sub, props[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += validate(sub, schema["additionalProperties"], f"{path}.{key}")
            else:
                errs.append(f"{path}: unknown field {key} (a default must be pruned)")
    if isinstance(value, list):
        for i, item in enumerate(value):
            errs += validate(item, schema["items"], f"{path}[{i}]")
    return errs


def test_every_default_validates_against_its_own_schema(root):
    count = 0
    for path, node in walk(root):
        if "default" in node:
            count += 1
            assert validate(node["default"], node, path) == []
    assert count > 30


@pytest.mark.parametrize(("path", "cls"), [
    ("spec.resources", parts.Resources), ("spec.sandbox", parts.Sandbox), ("spec.replicas", m.Replicas),
    ("spec.scaling", m.Scaling), ("spec.probes", parts.Probes), ("spec.exposure", m.Exposure),
])
def test_object_defaults_are_complete_and_pass_the_model_rules(root, path, cls):
    # The API server checks CEL rules on defaults *without* applying nested defaults first,
    # so an object default must already carry every field a rule reads.
    default = at(root, path)["default"]
    assert default, path
    assert to_json(cls.model_validate(default)) == to_json(cls())
    for prop, sub in at(root, path)["properties"].items():
        if "default" in sub:
            assert prop in default, f"{path}.{prop} missing from the object default"


# ------------------------------------------------------------------ CEL, list types, subresources, columns


def test_cel_rules_and_messages(root):
    rules = {(p, r["rule"]): r["message"] for p, n in walk(root) for r in n.get("x-kubernetes-validations", [])}
    expected = {
        ".spec.replicas": m.MIN_LE_MAX,
        ".spec.scaling.events[]": m.EVENT_END_AFTER_START,
        ".spec.sandbox": parts.SANDBOX_REQUIRED,
        ".spec.scaling": m.CAPACITY_REQUIRED,
        ".spec.ports": parts.PORT_NAMES_UNIQUE,
    }
    for path, rule in expected.items():
        assert rules.get((path, rule.rule)) == rule.message, path
    assert len(rules) >= 11
    for (path, rule), message in rules.items():
        assert message and not message.endswith("."), path
        assert rule.count("(") == rule.count(")"), rule


def test_list_types(root):
    conds = at(root, "status.conditions")
    assert conds["x-kubernetes-list-type"] == "map" and conds["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conds["items"]["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert at(root, "status.conditions")["items"]["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert at(root, "spec.env")["x-kubernetes-list-map-keys"] == ["name"]
    assert at(root, "spec.scaling.events")["x-kubernetes-list-map-keys"] == ["name"]
    assert at(root, "spec.exposure.allowedNamespaces")["x-kubernetes-list-type"] == "set"
    assert at(root, "spec.scaling.events")["items"]["properties"]["start"]["format"] == "date-time"


def test_int_or_string_fields(root):
    for path in ("spec.resources.requests.cpu", "spec.resources.limits.memory"):
        node = at(root, path)
        assert node["x-kubernetes-int-or-string"] is True and node["pattern"] == QUANTITY
    port = at(root, "spec.probes.readiness.httpGet.port")
    assert port["x-kubernetes-int-or-string"] and port["maximum"] == 65535 and port["maxLength"] == 15


def test_names_scope_and_version(crd):
    assert crd["metadata"]["name"] == "miniprogramapps.mpcloud.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"], names["listKind"]) == (
        "MiniProgramApp", "miniprogramapps", "miniprogramapp", "MiniProgramAppList")
    assert names["shortNames"] == ["mpa"] and names["categories"] == ["mpcloud"]
    assert crd["spec"]["scope"] == "Namespaced"
    [version] = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


def test_subresources_point_at_fields_of_the_right_type(crd, root):
    sub = crd["spec"]["versions"][0]["subresources"]
    assert sub["status"] == {}
    scale = sub["scale"]
    assert at(root, scale["specReplicasPath"])["type"] == "integer"
    assert at(root, scale["statusReplicasPath"])["type"] == "integer"
    assert at(root, scale["labelSelectorPath"])["type"] == "string"
    assert scale["labelSelectorPath"].startswith(".status.")  # HPA needs a string selector in status
    # GET .../scale fails while the spec path is absent: it must always be defaulted.
    assert at(root, scale["specReplicasPath"])["default"] == 1
    assert at(root, "spec.replicas")["default"]["desired"] == 1


def test_printer_columns(crd, root):
    cols = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(cols)[:5] == ["Ready", "Replicas", "Desired", "Sandbox", "URL"] and "Age" in cols
    assert cols["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert cols["Age"]["type"] == "date" and cols["URL"]["priority"] == 1
    for name in ("Replicas", "Desired", "Sandbox"):
        assert at(root, cols[name]["jsonPath"])["type"] == cols[name]["type"], name


# ------------------------------------------------------------------ crd_for is generic


class _WidgetSpec(BaseModel):
    size: int = Field(default=1, ge=1)
    mode: str | None = Field(default=None, max_length=10)
    ratio: float = Field(default=0.5, gt=0, lt=1)


class _Widget(BaseModel):
    """A widget."""

    spec: _WidgetSpec


def test_crd_for_other_kinds_without_status_or_scale():
    crd = generic.crd_for(_Widget, group="example.io", kind="Widget", plural="widgets")
    version = crd["spec"]["versions"][0]
    assert "subresources" not in version and "additionalPrinterColumns" not in version
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["mode"] == {"maxLength": 10, "type": "string"}  # Optional -> plain, no null
    assert spec["properties"]["ratio"]["exclusiveMaximum"] is True and spec["properties"]["ratio"]["maximum"] == 1
    assert crd["metadata"]["name"] == "widgets.example.io"


def test_unsupported_constructs_fail_loudly():
    class Bad(BaseModel):
        spec: dict[str, int | float | bool] = Field(max_length=2)

    with pytest.raises(generic.SchemaError, match="union"):
        generic.crd_for(Bad, group="example.io", kind="Bad", plural="bads")

    class Unbounded(BaseModel):
        spec: list[str]

    with pytest.raises(generic.SchemaError, match="unbounded"):
        generic.crd_for(Unbounded, group="example.io", kind="U", plural="us")
