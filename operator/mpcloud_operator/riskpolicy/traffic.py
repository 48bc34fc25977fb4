"""Abnormal traffic (issue 16 item 5): the NAB-scored online detector (predictors.anomaly) over request series.

Pure: the caller feeds one value per series per tick (an app's request rate from Prometheus, a function's gateway
count) and gets the series that alarmed this tick, as Findings. No peeking: each score uses that tick's value and
state built from earlier ones only (the detector's contract). A series that disappears keeps its state for
`forget_after` ticks, then is dropped (bounded memory).

Sensitivity maps to the threshold: high = 0.7x, medium = the shipped threshold (NAB standard 76.6 fixed on the shared
files), low = 1.5x; the policy's `threshold` overrides all. The detector learns for `Params.warmup` ticks (250) before
it scores: at a 15 s tick that is about an hour of traffic per new series.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from predictors.anomaly.detector import Detector, Params

from .findings import Finding

RULE = "traffic.anomaly"
SENSITIVITY = {"high": 0.7, "medium": 1.0, "low": 1.5}


@dataclass(frozen=True)
class Series:
    kind: str  # MiniProgramApp | CloudFunction
    api_version: str
    namespace: str
    name: str


@dataclass
class TrafficWatch:
    params: Params = Params()
    sensitivity: str = "medium"
    threshold: float | None = None
    forget_after: int = 240
    _detectors: dict[Series, Detector] = field(default_factory=dict)
    _missing: dict[Series, int] = field(default_factory=dict)

    @property
    def effective_threshold(self) -> float:
        return self.threshold if self.threshold is not None else self.params.threshold * SENSITIVITY[self.sensitivity]

    def knows(self, s: Series) -> bool:
        return s in self._detectors

    def warm(self, s: Series, history: np.ndarray) -> None:
        """Start `s`'s detector on its past values (oldest first; NaN = no sample), unscored: a series first seen
        with history (Prometheus) need not wait `params.warmup` live ticks before it can alarm."""
        det = self._detectors.setdefault(s, Detector(1, params=self.params))
        for v in np.asarray(history, dtype=float):
            if np.isfinite(v):
                det.update(np.array([v], dtype=float))

    def tick(self, values: dict[Series, float]) -> dict[Series, float]:
        """One tick: value per series; returns {series: score} for those at or above the threshold."""
        alarms = {}
        for s, v in values.items():
            det = self._detectors.get(s)
            if det is None:
                det = self._detectors[s] = Detector(1, params=self.params)
            self._missing.pop(s, None)
            score = float(det.update(np.array([v], dtype=float))[0])
            if score >= self.effective_threshold:
                alarms[s] = score
        for s in list(self._detectors):
            if s not in values:
                self._missing[s] = self._missing.get(s, 0) + 1
                if self._missing[s] > self.forget_after:
                    del self._detectors[s], self._missing[s]
        return alarms

    def __len__(self) -> int:
        return len(self._detectors)


def to_finding(s: Series, score: float, value: float, policy: str, mode: str) -> Finding:
    return Finding(rule=RULE, message=f"abnormal request rate {value:.3g}/s (anomaly score {score:.2f})",
                   result="fail" if mode == "Enforce" else "warn", policy=policy, kind=s.kind,
                   api_version=s.api_version, namespace=s.namespace, name=s.name,
                   properties={"score": f"{score:.3f}", "value": f"{value:.6g}"})
