"""Findings: what a rule found about one object, and how it travels between the parts of the risk engine.

Admission runs in every operator replica (a webhook request may reach any of them); reports are written by the
leader. The channel between them is the Kubernetes Event: every admission and ops-risk finding is posted as a
Warning Event on the object (reason `PolicyViolation`, as Kyverno does) whose message is `format_message(...)`;
`parse_message` turns such an Event back into a Finding (riskscan's PolicyReports read them that way). Scans and
the traffic detector produce Finding values directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

REASON = "PolicyViolation"  # Event reason of every finding (Kyverno's)
Result = Literal["fail", "warn"]  # PolicyReport result: fail = Enforce (refused), warn = Audit (let through)


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one object."""

    rule: str  # rule id, e.g. "admission.images" (model.RULE_IDS)
    message: str  # what is wrong, for people
    result: Result = "warn"
    policy: str = ""  # "<namespace>/<name>" of the RiskPolicy
    kind: str = ""  # the object's kind, apiVersion, namespace, name
    api_version: str = ""
    namespace: str = ""
    name: str = ""
    properties: dict[str, str] = field(default_factory=dict)  # extra PolicyReport properties (e.g. the image)

    @property
    def group(self) -> str:
        return self.rule.partition(".")[0]

    @property
    def mode(self) -> str:
        return "Enforce" if self.result == "fail" else "Audit"


def format_message(f: Finding) -> str:
    """`[<rule>] <message> (RiskPolicy <ns>/<name>, <Audit|Enforce>)`: the admission answer, warning and Event."""
    return f"[{f.rule}] {f.message} (RiskPolicy {f.policy}, {f.mode})"


_MESSAGE = re.compile(r"^\[(?P<rule>[A-Za-z]+\.[A-Za-z]+)\] (?P<message>.*) \(RiskPolicy (?P<policy>[^,()]+), "
                      r"(?P<mode>Audit|Enforce)\)$", re.S)


def parse_message(message: str, involved: dict[str, str] | None = None) -> Finding | None:
    """The Finding a `PolicyViolation` Event's message carries; `involved` is the Event's involvedObject."""
    m = _MESSAGE.match(message or "")
    if not m:
        return None
    inv = involved or {}
    return Finding(rule=m["rule"], message=m["message"], result="fail" if m["mode"] == "Enforce" else "warn",
                   policy=m["policy"], kind=inv.get("kind", ""), api_version=inv.get("apiVersion", ""),
                   namespace=inv.get("namespace", ""), name=inv.get("name", ""))
