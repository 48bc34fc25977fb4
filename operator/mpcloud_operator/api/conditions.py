"""metav1.Condition helpers: the Condition model and a pure, reusable `set_condition`.

Conditions are kept as plain dicts (the shape stored in `.status.conditions`) so handlers can
pass kopf's status straight in. `lastTransitionTime` changes only when `status` changes, as the
Kubernetes API conventions require; reason, message and observedGeneration are refreshed always.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from mpcloud_operator.api.schema import APIModel

ConditionStatus = Literal["True", "False", "Unknown"]

# Same bounds and patterns as metav1.Condition (k8s.io/apimachinery/pkg/apis/meta/v1/types.go).
TYPE_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
MAX_MESSAGE = 32768
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(APIModel):
    """One observation of the object's state, in the metav1.Condition shape."""

    type: str = Field(max_length=316, pattern=TYPE_PATTERN)
    """Condition type in CamelCase, e.g. Ready, Progressing, Degraded."""
    status: ConditionStatus
    """True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the condition was computed from."""
    last_transition_time: AwareDatetime
    """When status last changed."""
    reason: str = Field(min_length=1, max_length=1024, pattern=REASON_PATTERN)
    """Machine-readable CamelCase reason for the last transition."""
    message: str = Field(max_length=MAX_MESSAGE)
    """Human-readable details."""


def format_time(now: datetime | str) -> str:
    """RFC 3339 with second precision and a Z suffix, as metav1.Time serialises."""
    if isinstance(now, str):
        return now
    if now.tzinfo is None:
        raise ValueError("condition times must be timezone-aware")
    return now.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type: str,  # noqa: A002 - the field is called `type` in the API
    status: ConditionStatus,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: datetime | str,
) -> list[dict[str, Any]]:
    """Return a new list with condition `type` set; the input list and its dicts are not mutated.

    The order of existing conditions is kept and a new type is appended, so re-applying the same
    state produces an identical list (no needless status writes).
    """
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    result: list[dict[str, Any]] = []
    found = False
    for cond in conditions or []:
        if cond.get("type") != type:
            result.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != status or not cond.get("lastTransitionTime")
        result.append(
            _condition(type, status, reason, message, observed_generation,
                       format_time(now) if changed else cond["lastTransitionTime"])
        )
    if not found:
        result.append(_condition(type, status, reason, message, observed_generation, format_time(now)))
    return result


def get_condition(conditions: list[dict[str, Any]] | None, type: str) -> dict[str, Any] | None:  # noqa: A002
    """The condition of that type, or None."""
    return next((c for c in conditions or [] if c.get("type") == type), None)


def _condition(type_: str, status: str, reason: str, message: str,
               observed_generation: int | None, transition: str) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": type_, "status": status}
    if observed_generation is not None:
        cond["observedGeneration"] = observed_generation
    if len(message) > MAX_MESSAGE:  # an over-long message would make the whole status write fail
        message = message[: MAX_MESSAGE - 3] + "..."
    cond.update(lastTransitionTime=transition, reason=reason, message=message)
    return cond
