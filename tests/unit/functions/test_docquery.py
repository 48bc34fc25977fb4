"""Filters, sorts and updates → SQL, without a server: values are parameters, names are validated literals."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from mpcloud_operator.functions.docquery import (MAX_LIMIT, BadRequest, apply_update, check_collection,
                                                 check_document, check_page, field_expr, order_sql, where_sql)


def render(where):
    cond, params = where_sql(where)
    return cond.as_string(None), [p.obj if isinstance(p, Jsonb) else p for p in params]


@pytest.mark.parametrize("where, text, params", [
    (None, "TRUE", []),
    ({}, "TRUE", []),
    ({"done": False}, "(data @> %s OR data @> %s)", [{"done": False}, {"done": [False]}]),
    ({"who.name": "ann"}, "(data @> %s OR data @> %s)", [{"who": {"name": "ann"}}, {"who": {"name": ["ann"]}}]),
    ({"who": {"name": "ann"}}, "data @> %s", [{"who": {"name": "ann"}}]),
    ({"_id": "x"}, "id = %s", ["x"]),
    ({"n": None}, "COALESCE((data -> 'n'), 'null'::jsonb) = 'null'::jsonb", []),
    ({"n": {"$gt": 3}}, "(jsonb_typeof((data -> 'n')) = 'number' AND (data -> 'n') > %s)", [3]),
    ({"s": {"$lte": "m"}}, "(jsonb_typeof((data -> 's')) = 'string' AND (data -> 's') <= %s)", ["m"]),
    ({"n": {"$in": []}}, "(FALSE)", []),
    ({"n": {"$nin": [1]}}, "NOT ((data @> %s OR data @> %s))", [{"n": 1}, {"n": [1]}]),
    ({"_id": {"$in": ["a", "b"]}}, "id = ANY(%s)", [["a", "b"]]),
    ({"n": {"$ne": 1}}, "NOT ((data @> %s OR data @> %s))", [{"n": 1}, {"n": [1]}]),
    ({"a.b": {"$exists": False}}, "(data -> 'a' -> 'b') IS NULL", []),
    ({"$or": [{"_id": "a"}, {"n": {"$lt": 0}}]},
     "(id = %s OR (jsonb_typeof((data -> 'n')) = 'number' AND (data -> 'n') < %s))", ["a", 0]),
])
def test_filter_translation(where, text, params):
    assert render(where) == (text, params)


def test_parameters_follow_the_placeholders_in_order():
    text, params = render({"a": 1, "n": {"$gte": 2, "$lt": 5}, "_id": {"$gt": "k"}})
    assert text.count("%s") == len(params) == 5
    assert params == [{"a": 1}, {"a": [1]}, 2, 5, "k"]


@pytest.mark.parametrize("where, message", [
    ([1], "a filter is an object"),
    ({"$where": "1"}, "unknown top-level operator"),
    ({"n": {"$regex": "x"}}, "unknown operator '\\$regex'"),
    ({"n": {"$gt": 1, "x": 2}}, "mix of operators"),
    ({"n": {"$gt": [1]}}, "compares a number, string or boolean"),
    ({"n": {"$in": 3}}, "takes a list"),
    ({"n": {"$exists": 1}}, "true or false"),
    ({"_id": 3}, "_id is a non-empty string"),
    ({"a'; DROP TABLE x; --": 1}, "bad field name"),
    ({"a..b": 1}, "bad field name"),
    ({"a.$b": 1}, "bad field name"),
    ({"$or": []}, "non-empty list"),
])
def test_bad_filters_are_bad_requests(where, message):
    with pytest.raises(BadRequest, match=message):
        where_sql(where)


def test_field_names_are_quoted_literals_and_values_never_appear_in_sql():
    evil = "x' OR '1'='1"
    text, params = render({"name": evil, "n": {"$in": [evil]}})
    assert evil not in text and params[0] == {"name": evil}
    assert field_expr("a-b.c").as_string(None) == "(data -> 'a-b' -> 'c')"
    assert field_expr("_id").as_string(None) == '"id"'


def test_sort_translation():
    assert order_sql(None).as_string(None) == "ORDER BY id ASC"
    assert order_sql([("n", -1)]).as_string(None) == "ORDER BY (data -> 'n') DESC, id DESC"
    assert order_sql([["n", 1], ["a.b", -1]]).as_string(None) == \
        "ORDER BY (data -> 'n') ASC, (data -> 'a' -> 'b') DESC, id DESC"
    assert order_sql([("_id", -1)]).as_string(None) == 'ORDER BY "id" DESC'
    for bad in ("n", [("n", 2)], [("n",)], [("n", True)], [("bad name", 1)]):
        with pytest.raises(BadRequest):
            order_sql(bad)


def test_limits_and_names():
    assert check_page(1, 0) == (1, 0) and check_page(MAX_LIMIT, 5) == (MAX_LIMIT, 5)
    for limit, skip in ((0, 0), (MAX_LIMIT + 1, 0), (10, -1), (True, 0), ("5", 0)):
        with pytest.raises(BadRequest):
            check_page(limit, skip)
    assert check_collection("todos_2") == "todos_2"
    for bad in ("", "2todos", "to-dos", "a" * 49, "x;drop", None):
        with pytest.raises(BadRequest):
            check_collection(bad)
    with pytest.raises(BadRequest, match="not JSON"):
        check_document({"x": float("nan")})
    with pytest.raises(BadRequest, match="limit is"):
        check_document({"x": "y" * (1 << 20)})


def test_updates():
    doc = {"title": "milk", "who": {"name": "ann"}, "n": 1, "tags": ["a"]}
    assert apply_update(doc, {"$set": {"who.age": 3, "done": True}, "$unset": ["tags"], "$inc": {"n": 2}}) == \
        {"title": "milk", "who": {"name": "ann", "age": 3}, "n": 3, "done": True}
    assert doc["who"] == {"name": "ann"}  # the input is not changed
    assert apply_update(doc, {"$inc": {"new": 5}, "$unset": {"who.name": ""}}) == \
        {"title": "milk", "who": {}, "n": 1, "tags": ["a"], "new": 5}
    assert apply_update(doc, {"title": "eggs", "_id": "zzz"}) == {"title": "eggs"}
    for change, message in (({}, "non-empty"), ({"$set": {"_id": "y"}}, "_id cannot be changed"),
                            ({"$set": {"title.x": 1}}, "holds str, not an object"),
                            ({"$inc": {"title": 1}}, "not a number"), ({"$inc": {"n": "1"}}, "is a number"),
                            ({"$set": {"a": 1}, "b": 2}, "not both"), ({"$rename": {"a": "b"}}, "unknown update"),
                            ({"$unset": "a"}, "list of fields")):
        with pytest.raises(BadRequest, match=message):
            apply_update(doc, change)


def test_errors_carry_their_type():
    from mpcloud_operator.functions.docdb import DatabaseUnavailable, PermissionDenied

    assert BadRequest("x").to_dict() == {"type": "BadRequest", "message": "x", "retryable": False}
    assert (PermissionDenied.status, DatabaseUnavailable.status, DatabaseUnavailable.retryable) == (403, 503, True)
