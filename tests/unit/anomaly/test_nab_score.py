"""The NAB scorer on hand-made cases, and against row values NAB itself wrote.

Reference values: NAB's stored ARTime output for realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv
(numenta/NAB results/ARTime/..., columns S(t)_<profile>, which are NAB's per-row detection values): 1243 rows,
windows at rows 218-280 and 308-370.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from predictors.anomaly.nab_score import (NO_DETECTION, PROFILES, file_score, normalise, optimise_threshold,
                                          probation_rows, row_values, score_all, score_at, sigmoid)

STD = PROFILES["standard"]
LOW_FP = PROFILES["reward_low_FP_rate"]
LOW_FN = PROFILES["reward_low_FN_rate"]


def test_sigmoid_matches_the_readme_values():
    assert np.allclose(sigmoid([-1.0, -0.5, 0.0, 1.0]), [0.98661, 0.84828, 0.0, -0.98661], atol=1e-5)
    assert float(sigmoid(3.01)) == -1.0


def test_probation():
    assert probation_rows(1243) == 186
    assert probation_rows(18050) == 750


def test_row_values_reproduce_nab_output():
    windows = [(218, 280), (308, 370)]
    v, win = row_values(1243, windows, STD)
    assert v[0] == pytest.approx(-0.11) and v[217] == pytest.approx(-0.11)      # before any window ended
    assert v[218] == pytest.approx(1.0)
    assert v[219] == pytest.approx(0.9988874626029411, abs=1e-12)
    assert v[281] == pytest.approx(-0.004433081533402593, abs=1e-12)           # just after a window
    assert v[307] == pytest.approx(-0.08760473821544514, abs=1e-12)
    assert v[370 + 186] == pytest.approx(-0.10999993270151008, abs=1e-12)      # y = 186/62 = 3.0
    assert v[370 + 187] == pytest.approx(-0.11)                                 # y > 3
    assert list(win[[217, 218, 280, 281, 308]]) == [-1, 0, 0, -1, 1]
    v2, _ = row_values(1243, windows, LOW_FP)
    assert v2[281] == pytest.approx(-0.008866163066805186, abs=1e-12)
    assert v2[370 + 1] == pytest.approx(-0.008866163066805186, abs=1e-12)


def _file(n=1000, windows=((500, 599),)):
    return np.zeros(n), list(windows)


def test_a_detection_at_a_window_start_is_perfect():
    scores, windows = _file()
    scores[500] = 1.0
    assert file_score(scores, windows, STD, 0.5) == pytest.approx(1.0)
    r = optimise_threshold([(scores, windows)], STD)
    assert r.threshold == 1.0 and r.score == pytest.approx(100.0)


def test_only_the_earliest_detection_of_a_window_counts():
    scores, windows = _file()
    scores[550] = 1.0
    scores[560] = 1.0
    expected = float(sigmoid(-(599 - 550 + 1) / 100) / sigmoid(-1.0))
    assert file_score(scores, windows, STD, 0.5) == pytest.approx(expected)


def test_missed_window_and_false_positives():
    scores, windows = _file()
    scores[300] = 1.0   # before the window: -A_FP
    scores[100] = 1.0   # in probation (150 rows): not scored
    assert file_score(scores, windows, STD, 0.5) == pytest.approx(-0.11 - 1.0)
    assert file_score(scores, windows, LOW_FN, 0.5) == pytest.approx(-0.11 - 2.0)
    assert file_score(scores, windows, LOW_FP, 0.5) == pytest.approx(-0.22 - 1.0)


def test_false_positive_just_after_a_window_costs_little():
    scores, windows = _file()
    scores[600] = 1.0
    assert file_score(scores, windows, STD, 0.5) == pytest.approx(-1.0 + 0.11 * float(sigmoid(1 / 99)))
    scores[600], scores[999] = 0.0, 1.0  # far after: y = 400/99 > 3
    assert file_score(scores, windows, STD, 0.5) == pytest.approx(-1.11)


def test_null_and_perfect_normalisation():
    assert normalise(-79.0, 79, STD) == 0.0 and normalise(79.0, 79, STD) == 100.0
    assert normalise(-158.0, 79, LOW_FN) == 0.0
    null = [(np.full(1000, 0.5), [(500, 599)]), (np.full(800, 0.5), [(400, 450), (600, 650)])]
    for name, p in PROFILES.items():
        assert optimise_threshold(null, p).score == pytest.approx(0.0), name


def test_threshold_sweep_equals_brute_force():
    rng = np.random.default_rng(3)
    files = []
    for n, wins in [(900, [(300, 360), (700, 760)]), (1200, [(500, 620)]), (700, [])]:
        s = np.round(rng.random(n) ** 8, 2)  # many ties
        files.append((s, wins))
    for name, p in PROFILES.items():
        r = optimise_threshold(files, p)
        cands = sorted({NO_DETECTION, *np.concatenate([f[0][probation_rows(len(f[0])):] for f in files])},
                       reverse=True)
        brute = [(sum(file_score(s, w, p, t) for s, w in files), t) for t in cands]
        best = max(b for b, _ in brute)
        best_t = max(t for b, t in brute if math.isclose(b, best, abs_tol=1e-9))
        assert r.raw == pytest.approx(best, abs=1e-9), name
        assert r.threshold == best_t, name
        assert score_at(files, p, r.threshold).raw == pytest.approx(r.raw, abs=1e-9)


def test_score_all_has_every_profile():
    scores, windows = _file()
    scores[520] = 0.9
    out = score_all([(scores, windows)])
    assert set(out) == set(PROFILES)
    fixed = score_all([(scores, windows)], threshold=0.95)
    assert all(r.score == pytest.approx(0.0) for r in fixed.values())
