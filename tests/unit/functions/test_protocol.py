"""The host ↔ worker wire and the HTTP shapes: events from requests, responses from results and errors."""

from __future__ import annotations

import json

import pytest

from mpcloud_operator.functions import protocol


def test_bytes_travel_as_base64_both_ways():
    message = {"type": "rpc_result", "id": 1, "value": {"data": b"\x00\xffpng", "list": [b"a", "b"], "n": 1}}
    line = protocol.dumps(message)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert json.loads(line)["value"]["data"] == {"$bytes": "AP9wbmc="}
    assert protocol.loads(line) == message


def test_values_json_cannot_express_become_strings():
    import datetime

    line = protocol.dumps({"type": "result", "id": 1, "value": datetime.date(2026, 12, 3)})
    assert protocol.loads(line)["value"] == "2026-12-03"


@pytest.mark.parametrize("line", [b"not json", b"[1, 2]", b'{"id": 1}'])
def test_malformed_lines_are_protocol_errors(line):
    with pytest.raises(protocol.ProtocolError):
        protocol.loads(line)


def test_event_parses_json_bodies_and_keeps_text_and_binary():
    event = protocol.build_event("POST", "/add", {"a": "1"}, {"Content-Type": "application/json", "X-A": "b"},
                                 b'{"todo": "milk"}', "application/json")
    assert event == {"method": "POST", "path": "/add", "query": {"a": "1"},
                     "headers": {"content-type": "application/json", "x-a": "b"}, "body": {"todo": "milk"}}
    assert protocol.build_event("POST", "/", {}, {}, b"hello", "text/plain")["body"] == "hello"
    assert protocol.build_event("POST", "/", {}, {}, b"\xff\xfe", "image/png")["body"] == b"\xff\xfe"
    assert protocol.build_event("GET", "/", {}, {}, b"", "application/json")["body"] is None
    assert protocol.build_event("POST", "/", {}, {}, b'{"a":1}', "application/merge-patch+json")["body"] == {"a": 1}


def test_event_with_bad_json_is_refused():
    with pytest.raises(ValueError, match="not valid JSON"):
        protocol.build_event("POST", "/", {}, {}, b"{nope", "application/json")


def test_a_plain_result_is_a_200_json_body():
    assert protocol.response_from_result({"id": 1}) == (200, {"Content-Type": "application/json"}, b'{"id":1}')
    assert protocol.response_from_result(None)[2] == b"null"
    assert protocol.response_from_result([1, "a"])[2] == b'[1,"a"]'


def test_a_result_with_status_code_is_an_http_response():
    status, headers, body = protocol.response_from_result(
        {"statusCode": 302, "headers": {"Location": "/x"}, "body": None})
    assert (status, headers, body) == (302, {"Location": "/x"}, b"")
    status, headers, body = protocol.response_from_result({"statusCode": 200, "body": "<p>hi</p>",
                                                           "headers": {"content-type": "text/html"}})
    assert headers == {"content-type": "text/html"} and body == b"<p>hi</p>"
    assert protocol.response_from_result({"statusCode": 201, "body": {"a": 1}})[1]["Content-Type"] == "application/json"
    assert protocol.response_from_result({"statusCode": 200, "body": b"\x89PNG"})[2] == b"\x89PNG"


@pytest.mark.parametrize("code", [99, 600, "abc", None])
def test_an_invalid_status_code_is_a_handler_error(code):
    status, _, body = protocol.response_from_result({"statusCode": code})
    assert status == 500 and json.loads(body)["error"]["type"] == "HandlerError"


@pytest.mark.parametrize("type_,status", [("HandlerError", 500), ("Timeout", 504), ("InvalidSource", 503),
                                          ("DatabaseUnavailable", 503), ("StorageUnavailable", 503),
                                          ("PermissionDenied", 403), ("BadRequest", 400), ("NotFound", 404),
                                          ("SomethingNew", 500)])
def test_error_types_map_to_statuses(type_, status):
    got, headers, body = protocol.response_from_error({"type": type_, "message": "m", "stack": "s"})
    assert got == status and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"error": {"type": type_, "message": "m", "stack": "s"}}


def test_only_allowlisted_rpcs_pass():
    ok = {"type": "rpc", "target": "db", "method": "query", "collection": "todos", "args": [], "kwargs": {}}
    assert protocol.check_rpc(ok) is None
    assert protocol.check_rpc({**ok, "method": "_pool"}) == "context.db has no method '_pool'"
    assert protocol.check_rpc({**ok, "collection": ""}) is not None
    assert protocol.check_rpc({**ok, "target": "os"}) == "unknown RPC target 'os'"
    assert protocol.check_rpc({"type": "rpc", "target": "storage", "method": "presign_put", "args": ["k"]}) is None
    assert protocol.check_rpc({"type": "rpc", "target": "storage", "method": "delete_bucket"}) is not None
    assert protocol.check_rpc({**ok, "args": "x"}) is not None
