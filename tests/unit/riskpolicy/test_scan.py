"""Pure scanners: secrets, personal data, words, images; findings never carry the matched text."""

from __future__ import annotations

import pytest

from mpcloud_operator.riskpolicy import scan
from mpcloud_operator.riskpolicy.model import ScanRules

SETTINGS = scan.ScanSettings(words=("刷单", "casino"))
AWS = "AKIAIOSFODNN7EXAMPLE"
RIC = "11010519491231002X"  # a valid checksum (the standard's example)
CARD = "6222021234567890128"  # UnionPay prefix, Luhn-valid


def cf(code: str, image: str | None = None) -> dict:
    spec = {"source": {"inline": {"files": {"index.js": code}}}, "runtime": "nodejs20"}
    if image:
        spec["image"] = image
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "CloudFunction",
            "metadata": {"name": "f", "namespace": "ns"}, "spec": spec}


def kinds(hits):
    return sorted(h.kind for h in hits)


def test_secret_found_and_redacted():
    hits = scan.scan_object(cf(f"const key = '{AWS}';\nexports.main = 1"), SETTINGS)
    assert [(h.rule, h.kind, h.line) for h in hits] == [("scans.secrets", "AWS Access Key", 1)]
    f = scan.to_findings(cf(""), hits, SETTINGS, "ns/risk")[0]
    assert AWS not in f.message and AWS not in str(f.properties)
    assert f.properties["field"] == "spec.source.inline.files.index.js" and len(f.properties["sha256"]) == 10
    assert (f.kind, f.namespace, f.name, f.result) == ("CloudFunction", "ns", "f", "warn")


def test_personal_data():
    text = f"id: {RIC}\nphone 13812345678\ncard {CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:]}"
    hits = scan.scan_object(cf(text), SETTINGS)
    assert kinds(hits) == ["bank card number", "phone number", "resident ID number"]
    assert [h.line for h in sorted(hits, key=lambda h: h.line)] == [1, 2, 3]


@pytest.mark.parametrize("text", [
    "11010519491231002Y",  # bad checksum
    "11010519491331002X",  # month 13
    "order 1234567890123456",  # Luhn or not, no issuer prefix
    "ts 1700000000000 size 4096000",  # timestamps, sizes
    "6222021234567890127",  # UnionPay prefix, Luhn fails
    "4444444444444448",  # Luhn-valid but too few distinct digits
])
def test_no_false_personal_data(text):
    assert scan.scan_object(cf(text), SETTINGS) == []


def test_words_case_insensitive_and_from_config_map():
    assert kinds(scan.scan_object(cf("CASINO bonus\n刷单返利"), SETTINGS)) == ["listed word", "listed word"]
    words = scan.words_from_config_map({"data": {"words": "# banned\nscalper\n\n bot farm \n"}})
    assert words == ("scalper", "bot farm")


def test_config_map_source_is_scanned():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code", "namespace": "ns"},
          "data": {"main.py": f"ID = '{RIC}'\n"}}
    hits = scan.scan_object(cm, SETTINGS)
    assert [(h.field, h.kind) for h in hits] == [("data.main.py", "resident ID number")]


@pytest.mark.parametrize("ref,settings,want", [
    ("nginx", scan.ScanSettings(), ["image nginx uses no tag"]),
    ("nginx:latest", scan.ScanSettings(), ["image nginx uses latest tag"]),
    ("reg.local:5000/team/app", scan.ScanSettings(), ["image reg.local:5000/team/app uses no tag"]),
    ("reg.local:5000/team/app:1.2", scan.ScanSettings(), []),
    ("app@sha256:" + "a" * 64, scan.ScanSettings(require_digest=True), []),
    ("app:1.2", scan.ScanSettings(require_digest=True), ["image app has no digest"]),
    ("app:1.2-rc", scan.ScanSettings(known_bad_tags=("1.2-rc",)), ["image app:1.2-rc has a known-bad tag"]),
])
def test_images(ref, settings, want):
    assert [h.kind for h in scan.scan_image(ref, "spec.image", settings)] == want


def test_outdated_base_by_label_only_when_known():
    s = scan.ScanSettings(outdated_base_label="org.base.version", min_base_version="3.18")
    assert kinds(scan.scan_image("app:1", "f", s, {"org.base.version": "alpine-3.12.1"})) == [
        "image app is built on an outdated base (alpine-3.12.1 < 3.18)"]
    assert scan.scan_image("app:1", "f", s, {"org.base.version": "3.19"}) == []
    assert scan.scan_image("app:1", "f", s, None) == []


def test_settings_from_model_and_disabled_rules():
    rules = ScanRules.model_validate({"mode": "Enforce", "personalData": {"phoneNumbers": False},
                                      "content": {"words": ["bet"]}, "secrets": {"mode": "Audit"}})
    s = scan.from_rules(rules, extra_words=("scalper",))
    assert s.words == ("bet", "scalper") and not s.phone_numbers and s.resident_ids
    assert s.modes["scans.secrets"] == "Audit" and s.modes["scans.personalData"] == "Enforce"
    hits = scan.scan_object(cf("call 13812345678 bet"), s)
    assert kinds(hits) == ["listed word"]
    assert scan.to_findings(cf(""), hits, s, "ns/p")[0].result == "fail"


def test_hits_bounded():
    text = "\n".join(f"k{i} = '{RIC}'" for i in range(500))
    assert len(scan.scan_object(cf(text), SETTINGS)) == scan.MAX_HITS_PER_OBJECT
