"""The few calls of the Prometheus HTTP API the scaler needs (any Prometheus-compatible server).

`query_range` returns a dense float32 matrix on the requested step grid (NaN where a series has no
sample), one row per returned series, keyed by the (namespace, app) labels of the series.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np


class PromError(RuntimeError):
    """Prometheus unreachable, or it answered with an error."""


class PromClient:
    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _post(self, path: str, params: dict[str, Any]) -> Any:
        data = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
            except ValueError:
                raise PromError(f"HTTP {exc.code} from {self.url}") from exc
        except (OSError, ValueError) as exc:
            raise PromError(f"{self.url}: {exc}") from exc
        if body.get("status") != "success":
            raise PromError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        return body["data"]

    def instant(self, query: str) -> float:
        """The one number an instant query returns (a scalar, or a vector of one series); PromError otherwise."""
        data = self._post("/api/v1/query", {"query": query})
        result = data.get("result")
        if data.get("resultType") == "scalar":
            return float(result[1])
        if data.get("resultType") != "vector":
            raise PromError(f"the query returned a {data.get('resultType')}, not a number")
        if len(result) != 1:
            raise PromError(f"the query returned {len(result)} series; it must return one (aggregate it, e.g. sum)"
                            if result else "the query returned no series")
        return float(result[0]["value"][1])

    def query_range(self, query: str, start: float, end: float, step: float
                    ) -> tuple[list[dict[str, str]], np.ndarray]:
        """(labels per series, values[n_series, n_steps]) for steps start, start + step, .., end."""
        data = self._post("/api/v1/query_range", {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                  "step": f"{step:g}"})
        n = int(round((end - start) / step)) + 1
        result = data.get("result") or []
        out = np.full((len(result), n), np.nan, dtype=np.float32)
        labels = []
        for i, series in enumerate(result):
            labels.append(series.get("metric") or {})
            vals = series.get("values") or []
            if not vals:
                continue
            arr = np.array(vals, dtype=object)  # [[ts, "value"], ..]: convert in C, not per element in Python
            idx = np.rint((arr[:, 0].astype(np.float64) - start) / step).astype(np.int64)
            ok = (idx >= 0) & (idx < n)
            out[i, idx[ok]] = arr[:, 1].astype(np.float64)[ok]
        return labels, out

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
