"""The analysis condition language: what it accepts, how it evaluates, and that it is not Python."""

from __future__ import annotations

import math

import pytest

from mpcloud_operator.pipeline.condition import ConditionError, parse, problem


@pytest.mark.parametrize("text, value, expected", [
    ("result < 0.05", 0.01, True),
    ("result < 0.05", 0.05, False),
    ("result >= 0.2", 0.2, True),
    ("result[0] == 3", 3, True),
    ("result != 3", 3, False),
    ("result > 1 && result < 5", 2, True),
    ("result > 1 and result < 5", 7, False),
    ("result < 1 || result > 5", 7, True),
    ("result < 1 or result > 5", 3, False),
    ("!(result > 1)", 0, True),
    ("not result > 1", 2, False),
    ("abs(result - 1) <= 0.1", 1.05, True),
    ("-result > 2 * -1.5", -4, True),
    ("result / 2 + 1 == 3", 4, True),
    ("1 - 2 - 3 == -4", 0, True),  # left associative
    ("2 * 3 + 4 == 10 && 2 + 3 * 4 == 14", 0, True),  # precedence
    ("isNaN(result)", math.nan, True),
    ("!isNaN(result) && result < 1", math.nan, False),
    ("isInf(result / 0)", 1, True),
    ("isNaN(result / 0)", 0, True),
    ("true", 0, True),
    ("false || result == 1e-3", 0.001, True),
    ("result < .5", 0.25, True),
])
def test_evaluates(text, value, expected):
    assert parse(text)(value) is expected


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("result", "needs a boolean"),
    ("result <", "ends too early"),
    ("result > 1 )", "unexpected ')'"),
    ("(result > 1", "expected ')'"),
    ("1 < result < 3", "do not chain"),
    ("result && true", "&& needs a boolean"),
    ("(result > 1) + 1 > 0", "+ needs a number"),
    ("-(result > 1)", "- needs a number"),
    ("isNaN(result > 1)", "isNaN() needs a number"),
    ("x > 1", "unknown name 'x'"),
    ("__import__('os').system('true')", "unexpected"),
    ("__import__(os)", "unknown name '__import__'"),
    ("result.real > 0", "unexpected"),
    ("result[1] > 0", "only result[0]"),
    ("result ** 2 > 0", "unexpected '*'"),
    ("result > 1; true", "unexpected"),
    ("result > " + "1" * 300, "longer than 256"),
])
def test_rejects_with_a_reason(text, why):
    with pytest.raises(ConditionError) as err:
        parse(text)
    assert why in str(err.value)
    assert why in (problem(text) or "")


def test_a_valid_condition_has_no_problem():
    assert problem("result < 0.05 && !isNaN(result)") is None
