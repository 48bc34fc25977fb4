"""Software risk scan (issue 16 item 4): pure scanners over the platform's objects as plain dicts.

Kind-agnostic on purpose: every string under an object's `spec` (and a ConfigMap's `data`) is a text field, named by
its path (`spec.source.inline.files.index.js`), and every `image` key is an image reference. So a CloudFunction's
inline code, a Pipeline step's script, an app's env values and a ConfigMap holding function source are all scanned
the same way, and a new kind needs no code here.

Rules (ids as in model.RULE_IDS):
- scans.secrets: detect-secrets' plugins, called directly (no baseline file, no network, no git).
- scans.personalData: phone numbers (`phonenumbers`, region CN by default), Chinese resident ID numbers
  (`stdnum.cn.ric`, checksum and birth date validated) and bank cards (Luhn plus an issuer-prefix check, so a random
  16-digit number is not a card).
- scans.content: an extensible word list (the policy's words plus a ConfigMap's), case-insensitive.
- scans.images: no digest (when asked), `latest` or no tag, known-bad tags, outdated base images by label.

A hit never carries the matched text: only rule, field, line and a hash prefix (sha256, 10 hex), so reports and
Events can be shown to anyone who may read the object's metadata.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .findings import Finding

MAX_TEXT_BYTES = 1024 * 1024  # per field: larger values are scanned up to here (bounded work)
MAX_HITS_PER_OBJECT = 50  # a file of test data must not flood a report


@dataclass(frozen=True)
class ScanSettings:
    """What to look for: the plain form of the policy's `spec.scans` (see from_rules)."""

    secrets: bool = True
    phone_numbers: bool = True
    resident_ids: bool = True
    bank_cards: bool = True
    region: str = "CN"
    words: tuple[str, ...] = ()
    images: bool = True
    require_digest: bool = False
    known_bad_tags: tuple[str, ...] = ()
    outdated_base_label: str | None = None
    min_base_version: str | None = None
    modes: dict[str, str] = field(default_factory=dict)  # rule id -> Audit|Enforce


def from_rules(scans, extra_words: tuple[str, ...] = ()) -> ScanSettings:
    """ScanSettings from a model.ScanRules (`extra_words`: the word-list ConfigMap's, read by the caller)."""
    pd, content, images = scans.personal_data, scans.content, scans.images

    def mode(rule):
        return rule.mode or scans.mode

    return ScanSettings(
        secrets=scans.secrets.enabled,
        phone_numbers=pd.enabled and pd.phone_numbers, resident_ids=pd.enabled and pd.resident_ids,
        bank_cards=pd.enabled and pd.bank_cards, region=pd.region,
        words=tuple(content.words) + tuple(extra_words) if content.enabled else (),
        images=images.enabled, require_digest=images.require_digest, known_bad_tags=tuple(images.known_bad_tags),
        outdated_base_label=images.outdated_base_label, min_base_version=images.min_base_version,
        modes={"scans.secrets": mode(scans.secrets), "scans.personalData": mode(pd),
               "scans.content": mode(content), "scans.images": mode(images)})


def words_from_config_map(cm: dict | None) -> tuple[str, ...]:
    """A word-list ConfigMap: every value split on lines; blank lines and `#` comments skipped."""
    out: list[str] = []
    for value in ((cm or {}).get("data") or {}).values():
        out += [w.strip() for w in str(value).splitlines() if w.strip() and not w.strip().startswith("#")]
    return tuple(out)


@dataclass(frozen=True)
class Hit:
    """One match, redacted: what was found where, never the text itself."""

    rule: str
    kind: str  # e.g. "AWS Access Key", "resident ID", "phone number", "word", "image without digest"
    field: str
    line: int = 0
    digest: str = ""  # sha256 prefix of the matched text: tells two findings apart without revealing them

    def message(self) -> str:
        where = f"{self.field}" + (f" line {self.line}" if self.line else "")
        return f"{self.kind} in {where}" + (f" (sha256 {self.digest})" if self.digest else "")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# --- secrets -------------------------------------------------------------------------------------------------------

_PLUGINS = None


def _plugins():
    global _PLUGINS
    if _PLUGINS is None:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

        _PLUGINS = [cls() for cls in get_mapping_from_secret_type_to_class().values()]
    return _PLUGINS


def scan_secrets(text: str, field_name: str) -> list[Hit]:
    hits: dict[tuple, Hit] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if len(line) > 4096:  # minified bundles: the plugins' regexes get slow, and secrets sit on short lines
            line = line[:4096]
        for plugin in _plugins():
            for s in plugin.analyze_line(filename=field_name, line=line, line_number=n):
                key = (s.type, n)
                hits.setdefault(key, Hit("scans.secrets", s.type, field_name, n, s.secret_hash[:10]))
    return list(hits.values())


# --- personal data -------------------------------------------------------------------------------------------------

_RIC = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[0-9Xx](?![0-9A-Za-z])")
_CARD = re.compile(r"(?<![0-9])(?:\d[ -]?){12,18}\d(?![0-9])")
# Issuer prefixes (IIN) of the card schemes seen in China and abroad: UnionPay 62/81, Visa 4, Mastercard 51-55 and
# 2221-2720, Amex 34/37, JCB 3528-3589, Discover 6011/65. A Luhn-valid number outside these is not reported.
_IIN = re.compile(r"^(?:62|81|4|5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|35(?:2[89]|[3-8]\d)|6011|65)")


def _card_ok(digits: str) -> bool:
    from stdnum import luhn

    if not _IIN.match(digits) or len(set(digits)) < 4:
        return False
    lengths = (15,) if digits[:2] in ("34", "37") else (13, 16, 19) if digits[0] == "4" else (16, 17, 18, 19)
    return len(digits) in lengths and luhn.is_valid(digits)


def scan_personal_data(text: str, field_name: str, s: ScanSettings) -> list[Hit]:
    from stdnum.cn import ric

    hits: list[Hit] = []
    for n, line in enumerate(text.splitlines(), 1):
        ids: set[str] = set()
        if s.resident_ids:
            for m in _RIC.finditer(line):
                if ric.is_valid(m.group()):
                    ids.add(m.group())
                    hits.append(Hit("scans.personalData", "resident ID number", field_name, n, _digest(m.group())))
        if s.bank_cards:
            for m in _CARD.finditer(line):
                digits = re.sub(r"\D", "", m.group())
                if digits not in ids and _card_ok(digits):
                    hits.append(Hit("scans.personalData", "bank card number", field_name, n, _digest(digits)))
                    ids.add(digits)
        if s.phone_numbers and any(c.isdigit() for c in line):
            hits += _phones(line, field_name, n, s.region, ids)
    return hits


def _phones(line: str, field_name: str, n: int, region: str, taken: set[str]) -> list[Hit]:
    import phonenumbers

    out = []
    for m in phonenumbers.PhoneNumberMatcher(line, region, leniency=phonenumbers.Leniency.VALID):
        digits = re.sub(r"\D", "", m.raw_string)
        if any(digits in t or t in digits for t in taken):
            continue  # part of an ID or a card already reported
        out.append(Hit("scans.personalData", "phone number", field_name, n, _digest(digits)))
    return out


# --- content -------------------------------------------------------------------------------------------------------

def scan_content(text: str, field_name: str, words: tuple[str, ...]) -> list[Hit]:
    if not words:
        return []
    pattern = re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)), re.I)
    hits = []
    for n, line in enumerate(text.splitlines(), 1):
        for m in pattern.finditer(line):
            hits.append(Hit("scans.content", "listed word", field_name, n, _digest(m.group().lower())))
    return hits


# --- images --------------------------------------------------------------------------------------------------------

def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest or None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:4])


def scan_image(ref: str, field_name: str, s: ScanSettings, labels: dict[str, str] | None = None) -> list[Hit]:
    """`labels`: the image's config labels where known (e.g. a pipeline's build result); None = not known."""
    repo, tag, digest = split_image(ref)
    hits = []
    if tag in (None, "latest") and not digest:
        hits.append(Hit("scans.images", f"image {repo} uses {'latest' if tag else 'no'} tag", field_name))
    elif tag and any(tag == bad or f"{repo}:{tag}".endswith(bad) for bad in s.known_bad_tags):
        hits.append(Hit("scans.images", f"image {repo}:{tag} has a known-bad tag", field_name))
    if s.require_digest and not digest:
        hits.append(Hit("scans.images", f"image {repo} has no digest", field_name))
    if s.outdated_base_label and s.min_base_version and labels and s.outdated_base_label in labels:
        base = labels[s.outdated_base_label]
        if _version(base) < _version(s.min_base_version):
            hits.append(Hit("scans.images", f"image {repo} is built on an outdated base ({base} < "
                                            f"{s.min_base_version})", field_name))
    return hits


# --- objects -------------------------------------------------------------------------------------------------------

def text_fields(obj: dict) -> Iterator[tuple[str, str]]:
    """(path, text) of every string under spec (and a ConfigMap's data); `image` keys are left to images()."""
    roots = [("spec", obj.get("spec"))]
    if obj.get("kind") == "ConfigMap":
        roots = [("data", obj.get("data"))]
    stack = [r for r in roots if r[1] is not None]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not path.endswith(".image") and len(value) >= 6:
                yield path, value[:MAX_TEXT_BYTES]
        elif isinstance(value, dict):
            stack += [(f"{path}.{k}", v) for k, v in reversed(list(value.items()))]
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value)))]


def images(obj: dict) -> Iterator[tuple[str, str]]:
    stack = [("spec", obj.get("spec"))]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "image" and isinstance(v, str):
                    yield f"{path}.image", v
                else:
                    stack.append((f"{path}.{k}", v))
        elif isinstance(value, list):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(value)]


def scan_object(obj: dict, s: ScanSettings) -> list[Hit]:
    hits: list[Hit] = []
    for path, text in text_fields(obj):
        if s.secrets:
            hits += scan_secrets(text, path)
        if s.phone_numbers or s.resident_ids or s.bank_cards:
            hits += scan_personal_data(text, path, s)
        hits += scan_content(text, path, s.words)
        if len(hits) >= MAX_HITS_PER_OBJECT:
            break
    if s.images and obj.get("kind") != "ConfigMap":
        for path, ref in images(obj):
            hits += scan_image(ref, path, s)
    return hits[:MAX_HITS_PER_OBJECT]


def source_bytes(obj: dict) -> int:
    return sum(len(t.encode()) for _, t in text_fields(obj))


def to_findings(obj: dict, hits: list[Hit], s: ScanSettings, policy: str) -> list[Finding]:
    meta = obj.get("metadata") or {}
    out = []
    for h in hits:
        mode = s.modes.get(h.rule, "Audit")
        props = {"field": h.field, **({"line": str(h.line)} if h.line else {}), **({"sha256": h.digest} if h.digest else {})}
        out.append(Finding(rule=h.rule, message=h.message(), result="fail" if mode == "Enforce" else "warn",
                           policy=policy, kind=obj.get("kind", ""), api_version=obj.get("apiVersion", ""),
                           namespace=meta.get("namespace", ""), name=meta.get("name", ""), properties=props))
    return out
