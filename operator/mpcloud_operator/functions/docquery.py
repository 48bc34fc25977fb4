"""The document API's pure half: Mongo-like filters, sorts and updates turned into parameterised SQL over JSONB.

No server is needed here (unit-tested on its own); `docdb` runs what this builds. Layout of a collection (made
by `backing.postgres`): a table `(id text primary key, data jsonb, created, updated)` in the tenant's schema, a
GIN index `(data jsonb_path_ops)` and one btree `((<field expr>), id)` per declared index.

Why the SQL has the shapes it has:
- equality (`{"done": false}`, `$eq`, `$in`, `$ne`) is containment, `data @> '{"done": false}'` (for a scalar
  also `data @> '{"done": [false]}'`, Mongo's array-element match): the GIN index answers both probes.
- ranges and sorts compare `data -> 'f'` (field names are *literals*, validated and quoted, never parameters:
  PostgreSQL uses an expression index only when the query's expression matches it). jsonb orders numbers
  numerically and strings by collation, and across types Null < String < Number < Boolean < Array < Object,
  so a range also checks `jsonb_typeof` to stay within the value's type, as Mongo's type brackets do.
- values are always bind parameters (`Jsonb`), never interpolated.
Known differences from Mongo: equality on a sub-document is containment (a superset matches), `{"f": null}`
matches a missing field too (as Mongo does), sorts put missing fields last ascending.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

MAX_LIMIT = 1000
MAX_IN = 1000
MAX_DOC_BYTES = 1 << 20
COLLECTION_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
SEGMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
RANGE_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = ("$eq", "$ne", "$in", "$nin", "$exists", *RANGE_OPS)


class DocDBError(Exception):
    """Base of the document API's errors; `.type` is the name the runtime host reports in its JSON error."""

    type = "DocDBError"
    status = 500
    retryable = False

    def to_dict(self) -> dict:
        return {"type": self.type, "message": str(self), "retryable": self.retryable}


class BadRequest(DocDBError):
    type, status = "BadRequest", 400


class PermissionDenied(DocDBError):
    type, status = "PermissionDenied", 403


class DatabaseUnavailable(DocDBError):
    type, status, retryable = "DatabaseUnavailable", 503, True


def check_collection(name: object) -> str:
    if not isinstance(name, str) or not COLLECTION_RE.match(name):
        raise BadRequest(f"bad collection name {name!r}: a letter, then up to 47 letters, digits or '_'")
    return name


def field_path(field: object) -> list[str]:
    """'a.b' -> ['a', 'b'] after validation (each segment a plain name)."""
    if not isinstance(field, str) or not field:
        raise BadRequest(f"bad field name {field!r}")
    parts = field.split(".")
    for part in parts:
        if not SEGMENT_RE.match(part):
            raise BadRequest(f"bad field name {field!r}: segments are letters, digits, '_' or '-' (no '$')")
    if "_id" in parts[1:] or (parts[0] == "_id" and len(parts) > 1):
        raise BadRequest(f"bad field name {field!r}: _id is a top-level field")
    return parts


def field_expr(field: str) -> sql.Composable:
    """`data -> 'a' -> 'b'` for 'a.b' (`id` for '_id'): the same text in queries and in index definitions."""
    parts = field_path(field)
    if parts == ["_id"]:
        return sql.Identifier("id")
    return sql.SQL("(data {})").format(sql.SQL(" ").join(sql.SQL("-> {}").format(sql.Literal(p)) for p in parts))


def nested(parts: list[str], value: Any) -> dict:
    for part in reversed(parts):
        value = {part: value}
    return value


def _json_type(value: Any, field: str, op: str) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    raise BadRequest(f"{field}: {op} compares a number, string or boolean, got {type(value).__name__}")


class _Where:
    """Accumulates SQL conditions and their parameters for one filter."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def cond(self, text: sql.Composable, *params: Any) -> sql.Composable:
        self.params.extend(params)
        return text

    def build(self, where: object) -> sql.Composable:
        if where is None:
            return sql.SQL("TRUE")
        if not isinstance(where, dict):
            raise BadRequest(f"a filter is an object, got {type(where).__name__}")
        conds: list[sql.Composable] = []
        for key, value in where.items():
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    raise BadRequest(f"{key} takes a non-empty list of filters")
                parts = [self.build(v) for v in value]
                conds.append(sql.SQL("({})").format(sql.SQL(f" {key[1:].upper()} ").join(parts)))
            elif key.startswith("$"):
                raise BadRequest(f"unknown top-level operator {key!r}: use $and, $or or a field name")
            elif isinstance(value, dict) and value and all(k.startswith("$") for k in value):
                conds.extend(self.field_ops(key, value))
            elif isinstance(value, dict) and any(k.startswith("$") for k in value):
                raise BadRequest(f"{key}: mix of operators and fields in {value!r}")
            else:
                conds.append(self.equal(key, value))
        return sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")

    def equal(self, field: str, value: Any) -> sql.Composable:
        if field == "_id":
            return self.cond(sql.SQL("id = %s"), _id_value(value))
        if value is None:  # missing or null, as in Mongo
            return sql.SQL("COALESCE({}, 'null'::jsonb) = 'null'::jsonb").format(field_expr(field))
        parts = field_path(field)
        if isinstance(value, (dict, list)):
            return self.cond(sql.SQL("data @> %s"), Jsonb(nested(parts, value)))
        # a scalar matches the field's value or an element of its array (Mongo's rule); both are GIN probes
        return self.cond(sql.SQL("(data @> %s OR data @> %s)"), Jsonb(nested(parts, value)),
                         Jsonb(nested(parts, [value])))

    def field_ops(self, field: str, ops: dict) -> list[sql.Composable]:
        out = []
        for op, value in ops.items():
            if op == "$eq":
                out.append(self.equal(field, value))
            elif op == "$ne":
                out.append(sql.SQL("NOT ({})").format(self.equal(field, value)))
            elif op in ("$in", "$nin"):
                if not isinstance(value, list) or len(value) > MAX_IN:
                    raise BadRequest(f"{field}: {op} takes a list of at most {MAX_IN} values")
                if field == "_id":
                    any_of = self.cond(sql.SQL("id = ANY(%s)"), [_id_value(v) for v in value])
                else:
                    any_of = sql.SQL("({})").format(
                        sql.SQL(" OR ").join(self.equal(field, v) for v in value) if value else sql.SQL("FALSE"))
                out.append(any_of if op == "$in" else sql.SQL("NOT {}").format(any_of))
            elif op == "$exists":
                if not isinstance(value, bool):
                    raise BadRequest(f"{field}: $exists takes true or false")
                if field == "_id":
                    out.append(sql.SQL("TRUE" if value else "FALSE"))
                else:
                    out.append(sql.SQL("{} IS {}NULL").format(field_expr(field), sql.SQL("NOT " if value else "")))
            elif op in RANGE_OPS:
                cmp = sql.SQL(RANGE_OPS[op])
                if field == "_id":
                    out.append(self.cond(sql.SQL("id {} %s").format(cmp), _id_value(value)))
                else:
                    kind = _json_type(value, field, op)
                    expr = field_expr(field)
                    out.append(self.cond(sql.SQL("(jsonb_typeof({e}) = {k} AND {e} {c} %s)").format(
                        e=expr, k=sql.Literal(kind), c=cmp), Jsonb(value)))
            else:
                raise BadRequest(f"{field}: unknown operator {op!r}; supported: {', '.join(OPERATORS)}")
        return out


def _id_value(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"_id is a non-empty string, got {value!r}")
    return value


def where_sql(where: object) -> tuple[sql.Composable, list[Any]]:
    """A filter as (SQL condition, parameters)."""
    w = _Where()
    return w.build(where), w.params


def order_sql(sort: object) -> sql.Composable:
    """ORDER BY for `[("field", 1 | -1), ...]` (lists from JSON too); `id` breaks ties (stable paging)."""
    items: list[sql.Composable] = []
    if sort is not None:
        if not isinstance(sort, (list, tuple)):
            raise BadRequest("sort is a list of [field, 1 | -1] pairs")
        for pair in sort:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or pair[1] not in (1, -1) or isinstance(
                    pair[1], bool):
                raise BadRequest(f"bad sort entry {pair!r}: expected [field, 1 | -1]")
            items.append(sql.SQL("{} {}").format(field_expr(pair[0]), sql.SQL("ASC" if pair[1] == 1 else "DESC")))
    if not any(pair[0] == "_id" for pair in (sort or [])):
        # ties in the last key's direction: `ORDER BY f DESC, id DESC` is a backward scan of the ((f), id) index
        items.append(sql.SQL("id DESC" if sort and sort[-1][1] == -1 else "id ASC"))
    return sql.SQL("ORDER BY ") + sql.SQL(", ").join(items)


def check_page(limit: object, skip: object) -> tuple[int, int]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit is an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise BadRequest(f"skip is a non-negative integer, got {skip!r}")
    return limit, skip


def check_document(doc: object) -> dict:
    """A document to store: a JSON object of bounded size (its `_id`, if any, is taken out by the caller)."""
    if not isinstance(doc, dict):
        raise BadRequest(f"a document is an object, got {type(doc).__name__}")
    try:
        size = len(json.dumps(doc, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"the document is not JSON: {exc}") from exc
    if size > MAX_DOC_BYTES:
        raise BadRequest(f"the document is {size} bytes; the limit is {MAX_DOC_BYTES}")
    return doc


def apply_update(doc: dict, change: object) -> dict:
    """The new document for `{"$set": {...}}`, `{"$unset": [...]}`, `{"$inc": {...}}` or a full replacement."""
    if not isinstance(change, dict) or not change:
        raise BadRequest("an update is a non-empty object: {\"$set\": {...}}, {\"$unset\": [...]} or a document")
    ops = [k for k in change if k.startswith("$")]
    if not ops:
        new = {k: v for k, v in change.items() if k != "_id"}
        return check_document(new)
    if len(ops) != len(change):
        raise BadRequest("an update is either operators ($set, $unset, $inc) or a whole document, not both")
    new = copy.deepcopy(doc)
    for op, arg in change.items():
        if op == "$set":
            if not isinstance(arg, dict):
                raise BadRequest("$set takes an object of field: value")
            for field, value in arg.items():
                _set(new, _mutable_path(field), value, field)
        elif op == "$unset":
            fields = list(arg) if isinstance(arg, (list, dict)) else None
            if fields is None:
                raise BadRequest("$unset takes a list of fields")
            for field in fields:
                _unset(new, _mutable_path(field))
        elif op == "$inc":
            if not isinstance(arg, dict):
                raise BadRequest("$inc takes an object of field: number")
            for field, step in arg.items():
                if isinstance(step, bool) or not isinstance(step, (int, float)):
                    raise BadRequest(f"$inc {field}: the step is a number")
                parts = _mutable_path(field)
                current = _get(new, parts)
                if current is None:
                    current = 0
                if isinstance(current, bool) or not isinstance(current, (int, float)):
                    raise BadRequest(f"$inc {field}: the field holds {type(current).__name__}, not a number")
                _set(new, parts, current + step, field)
        else:
            raise BadRequest(f"unknown update operator {op!r}; supported: $set, $unset, $inc")
    return check_document(new)


def _mutable_path(field: str) -> list[str]:
    parts = field_path(field)
    if parts == ["_id"]:
        raise BadRequest("_id cannot be changed")
    return parts


def _get(doc: dict, parts: list[str]) -> Any:
    node: Any = doc
    for part in parts:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set(doc: dict, parts: list[str], value: Any, field: str) -> None:
    node = doc
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise BadRequest(f"$set {field}: {part} holds {type(child).__name__}, not an object")
        node = child
    node[parts[-1]] = value


def _unset(doc: dict, parts: list[str]) -> None:
    node: Any = doc
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)
