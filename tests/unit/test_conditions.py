"""Unit tests for api.conditions: set_condition keeps metav1.Condition semantics."""

from datetime import datetime, timedelta, timezone

import pytest

from mpcloud_operator.api.conditions import MAX_MESSAGE, Condition, format_time, get_condition, set_condition

T0 = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_is_appended_with_transition_time():
    conds = set_condition([], "Ready", "False", "Creating", "waiting", 3, T0)
    assert conds == [{"type": "Ready", "status": "False", "observedGeneration": 3,
                      "lastTransitionTime": "2025-01-01T12:00:00Z", "reason": "Creating", "message": "waiting"}]
    Condition.model_validate(conds[0])


def test_same_status_keeps_transition_time_but_refreshes_the_rest():
    conds = set_condition([], "Ready", "True", "Available", "1/1", 1, T0)
    conds = set_condition(conds, "Ready", "True", "Available", "2/2", 2, T1)
    assert conds[0]["lastTransitionTime"] == "2025-01-01T12:00:00Z"
    assert conds[0]["message"] == "2/2" and conds[0]["observedGeneration"] == 2


def test_status_change_moves_transition_time():
    conds = set_condition([], "Ready", "True", "Available", "", 1, T0)
    conds = set_condition(conds, "Ready", "False", "NoReplicasAvailable", "", 1, T1)
    assert conds[0]["lastTransitionTime"] == "2025-01-01T12:05:00Z"
    assert conds[0]["status"] == "False"


def test_input_is_not_mutated_and_order_is_kept():
    original = set_condition([], "Ready", "True", "A", "", 1, T0)
    original = set_condition(original, "Degraded", "False", "AsExpected", "", 1, T0)
    snapshot = [dict(c) for c in original]
    updated = set_condition(original, "Ready", "False", "B", "", 2, T1)
    assert original == snapshot
    assert [c["type"] for c in updated] == ["Ready", "Degraded"]
    assert updated[1] == original[1] and updated[1] is not original[1]


def test_idempotent():
    conds = set_condition(None, "Ready", "True", "A", "m", 1, T0)
    assert set_condition(conds, "Ready", "True", "A", "m", 1, T1) == conds


def test_missing_transition_time_is_filled():
    conds = set_condition([{"type": "Ready", "status": "True"}], "Ready", "True", "A", "", None, T0)
    assert conds[0]["lastTransitionTime"] == "2025-01-01T12:00:00Z"
    assert "observedGeneration" not in conds[0]


def test_time_formatting():
    assert format_time(datetime(2025, 1, 1, 20, 0, tzinfo=timezone(timedelta(hours=8)))) == "2025-01-01T12:00:00Z"
    assert format_time("2025-01-01T00:00:00Z") == "2025-01-01T00:00:00Z"
    with pytest.raises(ValueError):
        format_time(datetime(2025, 1, 1))


def test_bad_status_rejected():
    with pytest.raises(ValueError):
        set_condition([], "Ready", "true", "A", "", 1, T0)  # type: ignore[arg-type]


def test_long_message_is_truncated_to_the_api_bound():
    conds = set_condition([], "Degraded", "True", "ReconcileFailed", "x" * (MAX_MESSAGE + 10), 1, T0)
    assert len(conds[0]["message"]) == MAX_MESSAGE
    Condition.model_validate(conds[0])


def test_get_condition():
    conds = set_condition([], "Ready", "True", "A", "", 1, T0)
    assert get_condition(conds, "Ready")["reason"] == "A"
    assert get_condition(conds, "Degraded") is None and get_condition(None, "Ready") is None


def test_condition_model_rejects_bad_reason():
    with pytest.raises(ValueError):
        Condition.model_validate({"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z",
                                  "reason": "not camel case", "message": ""})
