"""Reusable string and quantity types for CRD fields.

Patterns are RE2-compatible (no lookarounds, no backreferences): the API server evaluates them in Go, pydantic
in Python, and both must agree.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from mpcloud_operator.api.schema import Rule

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

# An image reference as github.com/distribution/reference parses it (regexp.go):
#   [registry/]path-component[/path-component...][:tag][@digest]
# One deliberate restriction: a registry is a host with a dot or a port, `localhost`, or a bracketed IPv6 address.
# distribution also reads a dot-less first component with an upper-case letter ("Upper/app") as a registry host
# (its own tests call that a FIXME); kubelet would then pull from a host named "Upper", so it is rejected here.
# The digest is limited to what go-digest accepts: sha256, sha384 or sha512 at full length in lowercase hex.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PORT = r"(?::[0-9]+)"
_REGISTRY = (rf"(?:(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})+|localhost|\[[a-fA-F0-9:]+\]){_PORT}?"
             rf"|{_HOST_COMPONENT}{_PORT})")
_IMAGE_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w is ASCII-only: spelled out, since Python's is not
_IMAGE_DIGEST = r"(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})"
IMAGE_REFERENCE = rf"^(?:{_REGISTRY}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_IMAGE_TAG})?(?:@{_IMAGE_DIGEST})?$"
IMAGE_NAME_MAX = 255  # distribution's NameTotalLengthMax: domain and path, without tag and digest
IMAGE_MAX = 512

# The name ends at the tag's colon (the last colon, when no slash follows it) or at the digest's "@".
_IMAGE_NAME = "self.split('@')[0]"
VALID_IMAGE = Rule(
    f"self.matches(r'{IMAGE_REFERENCE}') && ({_IMAGE_NAME}.lastIndexOf(':') > {_IMAGE_NAME}.lastIndexOf('/')"
    f" ? {_IMAGE_NAME}.lastIndexOf(':') : size({_IMAGE_NAME})) <= {IMAGE_NAME_MAX}",
    "must be an image reference [registry/]name[:tag][@digest], e.g. registry.example.com:5000/team/app:1.2 or"
    " team/app@sha256:<64 hex digits>: the registry has a dot or a port (or is localhost), the name is lowercase"
    " and at most 255 characters, the tag at most 128 letters, digits, '_', '.' or '-' not starting with '.' or"
    " '-', the digest sha256, sha384 or sha512 in lowercase hex",
)


def image_name(ref: str) -> str:
    """The repository part of an image reference (registry and path, without tag and digest)."""
    base = ref.split("@")[0]
    colon = base.rfind(":")
    return base[:colon] if colon > base.rfind("/") else base


def _check_image(ref: str) -> str:
    VALID_IMAGE.check(re.fullmatch(IMAGE_REFERENCE, ref) is not None and len(image_name(ref)) <= IMAGE_NAME_MAX)
    return ref


# A container image reference, validated at apply time by the CRD (CEL) and by the model (the same rule).
ImageRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=IMAGE_MAX),
    AfterValidator(_check_image),
    Field(json_schema_extra={"x-kubernetes-validations": [VALID_IMAGE.as_schema()]}),
]

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
