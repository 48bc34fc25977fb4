"""Schema helpers for pydantic models that are also CRD schemas.

Every CEL rule (`x-kubernetes-validations`) is declared once as a `Rule` and mirrored by a pydantic validator with
the same message, so `model_validate` rejects what the API server rejects. Python attributes are snake_case; JSON
names are camelCase (`model_validate` accepts either, `to_json` produces what the API stores). `CustomResource` is
the base of a whole object (apiVersion, kind, metadata, spec, status) as kopf hands it to a handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# How every mpcloud API model reads and writes: camelCase on the wire, snake_case in Python, docstrings of
# attributes as schema descriptions, unknown fields rejected.
API_MODEL_CONFIG = ConfigDict(
    alias_generator=to_camel,
    validate_by_name=True,
    validate_by_alias=True,
    use_attribute_docstrings=True,
    extra="forbid",
)


class Rule(NamedTuple):
    """A CEL rule for `x-kubernetes-validations`; `message` is shared with the pydantic mirror."""

    rule: str
    message: str
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def check(self, ok: bool) -> None:
        if not ok:
            raise ValueError(self.message)


def to_json(model: BaseModel) -> dict[str, Any]:
    """camelCase dict as stored by the API server (no nulls)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(*rules: Rule, extra: str = "forbid") -> ConfigDict:
    """model_config carrying CEL rules into the generated schema."""
    return ConfigDict(extra=extra, json_schema_extra={"x-kubernetes-validations": [r.as_schema() for r in rules]})


def nested(cls: type[BaseModel], **kw: Any) -> Any:
    """An optional sub-object filled with its own defaults.

    The CRD default is the fully defaulted object, not `{}`: the API server validates a default
    (CEL rules included) without applying the nested defaults first, so `{}` would fail rules
    such as `self.min <= self.max`."""
    return Field(default_factory=cls, json_schema_extra={"default": _compact(to_json(cls()))}, **kw)


def _compact(value: Any) -> Any:
    """Drop empty lists and maps from a default: the API server need not store them."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v not in ([], {})}
    return value


def list_map(*keys: str) -> dict[str, Any]:
    """Schema extras for a list merged by key under server-side apply (keys must be required)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


class APIModel(BaseModel):
    """Base of every spec and status part: camelCase on the wire, unknown fields rejected."""

    model_config = API_MODEL_CONFIG


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore")

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class CustomResource(APIModel):
    """Base of a whole custom resource object. A kind subclasses it with `api_version` and `kind` as Literals
    (defaulted), `spec: <Kind>Spec` and `status: <Kind>Status | None = None`; its docstring becomes the CRD's
    root description."""

    model_config = ConfigDict(extra="ignore")  # the API server adds fields (managedFields...) we do not read

    api_version: str
    kind: str
    metadata: ObjectMeta

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """Validate kopf's `body` (a Mapping of Mappings) or a plain dict."""
        return cls.model_validate(plain(body))


def plain(obj: Any) -> Any:
    """Mappings and sequences (kopf's read-only views) as plain dicts and lists."""
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
