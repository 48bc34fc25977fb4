"""Replay a request trace as Prometheus metrics, with its past backfilled, for local runs and tests.

Exists to give the scaling loop realistic demand without real apps serving real requests.

Time compression: one trace minute lasts `tick_seconds` of wall time (60 / speedup), the same minute
the scaling loop uses (run the operator with MPCLOUD_SCALING_TICK_SECONDS equal to it). Trace minute
`start + k` is played during the wall interval [t0 + k * tick, t0 + (k + 1) * tick), t0 on a tick
boundary, so trace minutes and loop minutes coincide. The backfill writes the same functions of wall
time for the `history` minutes before now, on the same compressed grid, so the forecaster sees days of
trace history from the first tick.

Exposed per app (labels namespace, app):
- `mpcloud_app_requests_total`: counter, continuous (linear within a trace minute), so
  rate(..) * tick_seconds is requests per trace minute (what the default scaling query computes);
- `mpcloud_app_demand_per_minute`: gauge, the trace's count of the current trace minute (for charts).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from mpcloud_operator.devenv import prometheus


@dataclass
class Replay:
    counts: np.ndarray  # requests per trace minute
    apps: list[tuple[str, str]]  # (namespace, name)
    tick_seconds: float = 60.0
    start: int = 0  # trace index played first ("now")
    t0: float = field(default=0.0)  # wall time when trace index `start` begins

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.float64)
        self.cum = np.concatenate([[0.0], np.cumsum(self.counts)])
        if not self.t0:
            self.t0 = math.ceil(time.time() / self.tick_seconds) * self.tick_seconds

    def position(self, wall: float) -> float:
        """Trace minute (fractional) played at `wall`."""
        return self.start + (wall - self.t0) / self.tick_seconds

    def wall(self, index: float) -> float:
        return self.t0 + (index - self.start) * self.tick_seconds

    def counter(self, wall: float) -> float:
        p = min(max(self.position(wall), 0.0), float(len(self.counts)))
        i = min(int(p), len(self.counts) - 1)
        return float(self.cum[i] + (p - i) * self.counts[i])

    def demand(self, wall: float) -> float:
        i = int(math.floor(self.position(wall)))
        return float(self.counts[i]) if 0 <= i < len(self.counts) else 0.0

    def exposition(self, wall: float | None = None) -> str:
        wall = time.time() if wall is None else wall
        c, d = self.counter(wall), self.demand(wall)
        lines = ["# HELP mpcloud_app_requests_total Requests served (trace replay).",
                 "# TYPE mpcloud_app_requests_total counter"]
        lines += [f'mpcloud_app_requests_total{{namespace="{ns}",app="{n}"}} {c:.3f}' for ns, n in self.apps]
        lines += ["# HELP mpcloud_app_demand_per_minute Requests in the current trace minute.",
                  "# TYPE mpcloud_app_demand_per_minute gauge"]
        lines += [f'mpcloud_app_demand_per_minute{{namespace="{ns}",app="{n}"}} {d:.3f}' for ns, n in self.apps]
        return "\n".join(lines) + "\n"

    def openmetrics(self, history: int, end: float, samples_per_minute: int = 4) -> str:
        """OpenMetrics text of both metrics for the `history` trace minutes before wall time `end`."""
        step = self.tick_seconds / samples_per_minute
        first = max(self.wall(max(self.start - history, 0)), end - history * self.tick_seconds)
        times = np.arange(math.ceil(first / step) * step, end, step)
        if not len(times):
            return "# EOF\n"
        pos = np.clip(self.start + (times - self.t0) / self.tick_seconds, 0, len(self.counts))
        idx = np.minimum(pos.astype(np.int64), len(self.counts) - 1)
        counter = self.cum[idx] + (pos - idx) * self.counts[idx]
        demand = self.counts[idx]
        out = ["# HELP mpcloud_app_requests Requests served (trace replay).", "# TYPE mpcloud_app_requests counter"]
        for ns, n in self.apps:
            lab = f'{{namespace="{ns}",app="{n}"}}'
            out.extend(f"mpcloud_app_requests_total{lab} {v:.3f} {t:.3f}" for t, v in zip(times, counter))
        out += ["# HELP mpcloud_app_demand_per_minute Requests in the current trace minute.",
                "# TYPE mpcloud_app_demand_per_minute gauge"]
        for ns, n in self.apps:
            lab = f'{{namespace="{ns}",app="{n}"}}'
            out.extend(f"mpcloud_app_demand_per_minute{lab} {v:.3f} {t:.3f}" for t, v in zip(times, demand))
        out.append("# EOF")
        return "\n".join(out) + "\n"


class ReplayServer:
    """Serves a Replay's /metrics on 127.0.0.1 and registers it as a Prometheus file_sd target."""

    def __init__(self, replay: Replay, port: int = 0, target: str | None = None, base: Path | None = None) -> None:
        self.replay, self.base = replay, base
        rep = replay

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = rep.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.target = target or f"traffic-{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="traffic-replay", daemon=True)

    def start(self) -> ReplayServer:
        self.thread.start()
        prometheus.add_target(self.target, f"127.0.0.1:{self.port}", {"source": "traffic-replay"}, self.base)
        return self

    def stop(self) -> None:
        prometheus.remove_target(self.target, self.base)
        self.httpd.shutdown()
        self.httpd.server_close()


def start_replay(counts: np.ndarray, apps: list[tuple[str, str]], tick_seconds: float = 60.0,
                 start: int | None = None, history: int = 3 * 1440, base: Path | None = None,
                 samples_per_minute: int = 4, backfill: bool = True) -> ReplayServer:
    """Backfill `history` trace minutes before `start` into the local Prometheus (restarting it if it
    runs), then serve the replay from `start` on. Returns the running server (call .stop())."""
    history = min(history, start if start is not None else history)
    start = history if start is None else start
    replay = Replay(counts, apps, tick_seconds, start)
    if backfill and history > 0:
        prometheus.backfill(replay.openmetrics(history, time.time(), samples_per_minute), base)
    return ReplayServer(replay, base=base, target=f"traffic-{apps[0][0]}-{apps[0][1]}").start()


def daily_ramp(days: int = 4, ramp_at: int = 600, base: float = 60.0, peak: float = 1200.0, seed: int = 7
               ) -> np.ndarray:
    """A synthetic trace: flat `base` req/min with the same 30-minute ramp to `peak` at minute
    `ramp_at` of every day (5 min up, 20 min plateau, 5 min down), 3 % noise. For tests and the demo."""
    rng = np.random.default_rng(seed)
    day = np.full(1440, base)
    for j in range(5):
        day[ramp_at + j] = base + (peak - base) * (j + 1) / 5
        day[ramp_at + 25 + j] = peak - (peak - base) * (j + 1) / 5
    day[ramp_at + 5 : ramp_at + 25] = peak
    x = np.tile(day, days)
    return np.maximum(x * rng.normal(1, 0.03, len(x)), 0).round()
