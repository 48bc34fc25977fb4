"""Generate CustomResourceDefinitions from pydantic models (the generic half; the CLI is `mpcloud_operator.crdgen`).

pydantic emits JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema. The
conversion inlines `$ref`s, turns Optional into a plain optional field (absent, not null: CEL rules
then only need `has()`), rewrites numeric `exclusiveMinimum` into the OpenAPI v3.0 boolean form,
maps `int | str` to `x-kubernetes-int-or-string`, drops `title` and `additionalProperties: false`,
and refuses any keyword the CRD API does not know, so a surprise fails here and not at apply time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

INT_OR_STRING = "x-kubernetes-int-or-string"

# Keywords JSONSchemaProps accepts that we pass through unchanged.
_PASS = {
    "description", "type", "format", "default", "maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "multipleOf", "enum", "maxProperties",
    "minProperties", "required", "nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    INT_OR_STRING, "x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type",
    "x-kubernetes-validations",
}
_DROP = {"title", "$defs", "examples"}
# Formats the API server knows (k8s.io/apiextensions-apiserver: supported formats); others dropped.
_FORMATS = {"date-time", "date", "duration", "byte", "int32", "int64", "float", "double", "uuid", "hostname",
            "ipv4", "ipv6", "cidr", "mac", "uri", "email", "password", "binary"}


class SchemaError(ValueError):
    """The pydantic schema uses something a structural CRD schema cannot express."""


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Convert a pydantic JSON schema (with `$defs`) into a structural OpenAPI v3 schema."""
    return _convert(schema, schema.get("$defs", {}), "")


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(node, defs, path)
    if "anyOf" in node or "oneOf" in node:
        node = _collapse_union(node, defs, path)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs, f"{path}.{name}") for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _convert(value, defs, f"{path}{{}}")
            elif value is not False:  # `false` is the default for structural schemas (pruning)
                raise SchemaError(f"{path}: additionalProperties: {value!r} is not structural")
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out[key.replace("exclusiveM", "m")] = value  # 2020-12 number -> OpenAPI 3.0 bool form
            out[key] = True
        elif key == "anyOf" and _anyof_ok(node):  # the int-or-string form built by _collapse_union
            out[key] = value
        elif key == "const":
            out["enum"] = [value]
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        elif key == "default":
            if value is not None:
                out[key] = value
        elif key == "uniqueItems":
            if value:
                raise SchemaError(f"{path}: uniqueItems is forbidden; use x-kubernetes-list-type: set")
        elif key in _PASS:
            out[key] = value
        else:
            raise SchemaError(f"{path}: keyword {key!r} is not supported in a CRD schema")
    if "description" in out:
        out["description"] = _unwrap(out["description"])
    return dict(sorted(out.items()))  # alphabetical, like controller-gen: stable diffs


def _unwrap(text: str) -> str:
    """Join docstring lines into paragraphs (kubectl explain re-wraps them)."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


def _resolve(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Inline `$ref` and single-member `allOf`; sibling keys (description, default) win."""
    node = dict(node)
    if "allOf" in node:
        members = node.pop("allOf")
        if len(members) != 1:
            raise SchemaError(f"{path}: allOf with {len(members)} members is not supported")
        node = {**_resolve(members[0], defs, path), **node}
    if "$ref" in node:
        ref = node.pop("$ref")
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix):] not in defs:
            raise SchemaError(f"{path}: unresolvable $ref {ref}")
        target = _resolve(copy.deepcopy(defs[ref[len(prefix):]]), defs, path)
        node = {**target, **node}
    return node


def _collapse_union(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = dict(node)
    members = [_resolve(m, defs, path) for m in node.pop("anyOf", None) or node.pop("oneOf")]
    members = [m for m in members if m.get("type") != "null"]  # Optional[X]: X, not required
    if len(members) == 1:
        return {**members[0], **node}
    types = sorted(m.get("type") for m in members)
    if types == ["integer", "string"]:
        merged = {k: v for m in members for k, v in m.items() if k not in ("type", "title")}
        merged.update(node)
        merged["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        merged[INT_OR_STRING] = True
        return merged
    raise SchemaError(f"{path}: union of {types} cannot be expressed structurally")


def _anyof_ok(node: dict[str, Any]) -> bool:
    return node.get(INT_OR_STRING) is True and node["anyOf"] == [{"type": "integer"}, {"type": "string"}]


def structural_problems(schema: dict[str, Any], path: str = "") -> list[str]:
    """Offline approximation of the API server's structural-schema and CEL-cost checks."""
    problems: list[str] = []
    if "$ref" in schema:
        problems.append(f"{path}: $ref")
    if any(k in schema for k in ("allOf", "oneOf", "not")):
        problems.append(f"{path}: allOf/oneOf/not")
    if "anyOf" in schema and not _anyof_ok(schema):
        problems.append(f"{path}: anyOf outside int-or-string")
    if "type" not in schema and not schema.get(INT_OR_STRING) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if schema.get("type") == "array":
        if "items" not in schema:
            problems.append(f"{path}: array without items")
        if "maxItems" not in schema:
            problems.append(f"{path}: unbounded list (maxItems)")
    if schema.get("type") == "string" and "maxLength" not in schema and "enum" not in schema \
            and schema.get("format") not in ("date-time", "date", "duration"):
        problems.append(f"{path}: unbounded string (maxLength)")
    if schema.get("type") == "object" and "additionalProperties" in schema and "maxProperties" not in schema:
        problems.append(f"{path}: unbounded map (maxProperties)")
    if schema.get("x-kubernetes-list-type") == "map":
        item = schema.get("items", {})
        for key in schema.get("x-kubernetes-list-map-keys", []):
            if key not in item.get("required", []) and "default" not in item.get("properties", {}).get(key, {}):
                problems.append(f"{path}: list-map key {key} must be required or defaulted")
    for name, sub in schema.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}{{}}")
    return problems


@dataclass(frozen=True)
class Scale:
    """The scale subresource paths (see the Kubernetes docs for CustomResourceSubresourceScale)."""

    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = ".status.selector"

    def as_dict(self) -> dict[str, str]:
        out = {"specReplicasPath": self.spec_replicas_path, "statusReplicasPath": self.status_replicas_path}
        if self.label_selector_path:
            out["labelSelectorPath"] = self.label_selector_path
        return out


def crd_for(
    model_cls: type[BaseModel],
    group: str,
    kind: str,
    plural: str,
    short_names: list[str] | None = None,
    categories: list[str] | None = None,
    printer_columns: list[dict[str, Any]] | None = None,
    scale: Scale | None = None,
    version: str = "v1alpha1",
    singular: str | None = None,
) -> dict[str, Any]:
    """A namespaced CRD (one served+stored version, status subresource) for a model with
    `spec` and optional `status` fields; its docstring becomes the root description."""
    full = structural(model_cls.model_json_schema(by_alias=True, mode="validation"))
    props = full.get("properties", {})
    if "spec" not in props:
        raise SchemaError(f"{model_cls.__name__} has no spec field")
    root: dict[str, Any] = {"description": full.get("description", ""), "type": "object", "properties": {
        "apiVersion": {"description": "APIVersion of this representation of the object.", "type": "string"},
        "kind": {"description": "Kind of this object.", "type": "string"},
        "metadata": {"type": "object"},
        "spec": props["spec"],
    }}
    if "status" in props:
        root["properties"]["status"] = props["status"]
    if "spec" in full.get("required", []):
        root["required"] = ["spec"]
    problems = [p for name in ("spec", "status") if name in root["properties"]
                for p in structural_problems(root["properties"][name], f".{name}")]
    if problems:
        raise SchemaError("schema is not structural:\n  " + "\n  ".join(problems))
    subresources: dict[str, Any] = {"status": {}} if "status" in props else {}
    if scale:
        subresources["scale"] = scale.as_dict()
    version_entry: dict[str, Any] = {"name": version, "served": True, "storage": True}
    if printer_columns:
        version_entry["additionalPrinterColumns"] = printer_columns
    version_entry["schema"] = {"openAPIV3Schema": root}
    if subresources:
        version_entry["subresources"] = subresources
    names: dict[str, Any] = {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                             "singular": singular or kind.lower()}
    if short_names:
        names["shortNames"] = list(short_names)
    if categories:
        names["categories"] = list(categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "names": names, "scope": "Namespaced", "versions": [version_entry]},
    }


def column(name: str, json_path: str, type_: str = "string", description: str = "", priority: int = 0,
           ) -> dict[str, Any]:
    """One additionalPrinterColumns entry."""
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": json_path}
    if description:
        col["description"] = description
    if priority:
        col["priority"] = priority
    return col


HEADER = "# Generated by `python -m mpcloud_operator.crdgen` from the pydantic models. Do not edit.\n"


def render(crd: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=120, allow_unicode=True)
