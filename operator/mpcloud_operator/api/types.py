"""Reusable string and quantity types for CRD fields.

Patterns are RE2-compatible (no lookarounds, no backreferences): the API server evaluates them in Go, pydantic
in Python, and both must agree.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# IANA_SVC_NAME: at least one letter, no leading/trailing/double hyphen.
PORT_NAME = r"^([a-z0-9]+-)*[a-z0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

Name = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
PortName = Annotated[str, StringConstraints(min_length=1, max_length=15, pattern=PORT_NAME)]
# int-or-string, like resource.Quantity: `cpu: 1` and `cpu: "500m"` are both accepted.
Quantity = int | Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY)]
# int-or-string port: a number, or the name of one of spec.ports.
PortRef = Annotated[int, Field(ge=1, le=65535)] | PortName

_SUFFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def parse_quantity(q: int | str) -> float:
    """A Kubernetes quantity as a float (enough to compare requests with limits)."""
    if isinstance(q, int):
        return float(q)
    s = q.strip()
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if s.endswith(suffix) and not (suffix == "E" and "e" in s.lower()[:-1]):
            return float(s[: -len(suffix)]) * _SUFFIX[suffix]
    return float(s)  # plain number or decimal exponent (1e3)
