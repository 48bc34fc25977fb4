"""The lean informer's LIST/WATCH bookkeeping against a scripted client (no control plane)."""

from __future__ import annotations

from typing import Any

from mpcloud_operator.reconcile.informer import Informer


def _obj(name: str, rv: str, owner: str | None = "web") -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "uid": f"u-{name}", "resourceVersion": rv}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp", "name": owner,
                                    "uid": "u-app", "controller": True}]
    return {"metadata": meta}


class ScriptedKube:
    def __init__(self, pages: list[list[dict]], events: list[dict]) -> None:
        self.pages, self.events, self.queries = pages, events, []

    def request(self, method: str, path: str, query: Any = None, timeout: float = 0) -> dict:
        self.queries.append(dict(query))
        page = self.pages.pop(0)
        return {"kind": "ServiceList", "apiVersion": "v1", "items": page,
                "metadata": {"resourceVersion": "10", "continue": "next" if self.pages else ""}}

    def stream(self, path: str, query: Any, timeout: float):
        yield from self.events


def test_paginated_list_then_watch_and_relist_reports_vanished_objects() -> None:
    seen: list[tuple[str, str]] = []
    kube = ScriptedKube([[_obj("a", "1")], [_obj("b", "2")]],
                        [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                         {"type": "MODIFIED", "object": _obj("a", "13")}])
    inf = Informer(kube, "/api/v1/services", lambda t, o: seen.append((t, o["metadata"]["name"])), page_size=1)
    rv = inf._list()
    assert rv == "10" and kube.queries[0]["limit"] == "1" and kube.queries[1]["continue"] == "next"
    assert inf._watch(rv) == "13"
    assert inf.has("ns", "a") is None  # not synced: run() sets it after the first LIST
    inf.synced.set()
    assert inf.has("ns", "a") and inf.has("ns", "b") and not inf.has("ns", "c")
    kube.pages = [[_obj("a", "14")]]  # b was deleted while the watch was down
    inf._list()
    assert seen[-1] == ("DELETED", "b")
    assert not inf.has("ns", "b")


def test_relist_deleted_event_carries_the_owner() -> None:
    got: list[dict] = []
    kube = ScriptedKube([[_obj("a", "1")]], [])
    inf = Informer(kube, "/api/v1/services", lambda t, o: got.append(o) if t == "DELETED" else None)
    inf._list()
    kube.pages = [[]]
    inf._list()
    (owner,) = got[0]["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp", "name": "web", "uid": "u-app",
                     "controller": True}


def test_watch_gone_asks_for_a_relist() -> None:
    kube = ScriptedKube([], [{"type": "ERROR", "object": {"code": 410, "message": "too old"}}])
    inf = Informer(kube, "/api/v1/services", lambda t, o: None)
    assert inf._watch("5") is None
