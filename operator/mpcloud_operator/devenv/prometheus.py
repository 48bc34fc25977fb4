"""A local Prometheus for development, tests and the demo: Debian's `prometheus` binary run by us.

Exists because the scaling loop reads history from a Prometheus; in a cluster that is the user's own.

State lives in `$MPCLOUD_HOME/prometheus` (or any `base` directory a test passes): `prometheus.yml`,
`data/` (the TSDB), `targets/*.json` (file_sd: one file per scraped process, written by whoever starts
that process), `prometheus.pid`, `prometheus.log`, `port`. It listens on 127.0.0.1 only.

History is backfilled with `promtool tsdb create-blocks-from openmetrics` straight into `data/`.
Prometheus 2.42 always accepts blocks overlapping its head; it picks new blocks up on its next reload
(up to a minute), so `backfill()` restarts a running server to make them visible at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from mpcloud_operator.devenv.ports import free_port
from mpcloud_operator.devenv.waiting import NotReady, stop_server, wait_http_ready

DEFAULT_PORT = 9090


class PrometheusError(RuntimeError):
    pass


def default_base() -> Path:
    home = Path(os.environ.get("MPCLOUD_HOME", Path.home() / ".local" / "share" / "mpcloud"))
    return home / "prometheus"


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not path:
        raise PrometheusError(f"{name} not found: install Debian's package (apt-get install -y prometheus)")
    return path


def config_text(scrape_interval: str, targets_dir: Path) -> str:
    # honor_labels: the replayer exports `namespace` and `app` labels of the app it stands for.
    return "\n".join([
        "global:",
        f"  scrape_interval: {scrape_interval}",
        f"  evaluation_interval: {scrape_interval}",
        "scrape_configs:",
        "  - job_name: mpcloud",
        "    honor_labels: true",
        f"    scrape_timeout: {scrape_interval}",
        "    file_sd_configs:",
        f"      - files: ['{targets_dir}/*.json']",
        "        refresh_interval: 5s",
        "",
    ])


def _pid(base: Path) -> int | None:
    try:
        pid = int((base / "prometheus.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    try:  # a recycled pid is not ours
        if "prometheus" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return None
    except OSError:
        pass
    return pid


def url(base: Path | None = None) -> str:
    base = base or default_base()
    return f"http://127.0.0.1:{int((base / 'port').read_text())}"


def is_running(base: Path | None = None) -> bool:
    return _pid(base or default_base()) is not None


def up(base: Path | None = None, port: int = DEFAULT_PORT, scrape_interval: str = "15s",
       retention: str = "30d", timeout: float = 30) -> str:
    """Start Prometheus (idempotent: a running one is kept). Returns its URL."""
    base = base or default_base()
    if is_running(base):
        return url(base)
    (base / "targets").mkdir(parents=True, exist_ok=True)
    (base / "data").mkdir(exist_ok=True)
    if (base / "prometheus.yml").exists() and (base / "scrape_interval").exists():
        scrape_interval = (base / "scrape_interval").read_text().strip() if scrape_interval == "15s" else scrape_interval
    (base / "prometheus.yml").write_text(config_text(scrape_interval, base / "targets"))
    (base / "scrape_interval").write_text(scrape_interval)
    if (base / "port").exists():  # a restart keeps its URL (the operator has it)
        port = int((base / "port").read_text())
    else:
        port = free_port(port)
    (base / "port").write_text(str(port))
    log = open(base / "prometheus.log", "ab")
    proc = subprocess.Popen(
        [_binary("prometheus"), f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={base / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.retention.time={retention}",
         "--web.enable-lifecycle", "--query.lookback-delta=5m"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (base / "prometheus.pid").write_text(str(proc.pid))
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/-/ready", proc, timeout, "prometheus", base / "prometheus.log")
    except NotReady as exc:
        raise PrometheusError(str(exc)) from exc
    return f"http://127.0.0.1:{port}"


def down(base: Path | None = None, timeout: float = 20, kill: bool = False) -> bool:
    """Stop our Prometheus (SIGTERM, or SIGKILL with kill=True); keeps its data. True if one was running."""
    base = base or default_base()
    return stop_server(lambda: _pid(base), signal.SIGKILL if kill else signal.SIGTERM, timeout)


def status(base: Path | None = None) -> dict:
    base = base or default_base()
    running = is_running(base)
    return {"running": running, "url": url(base) if running else None, "dir": str(base),
            "targets": sorted(p.stem for p in (base / "targets").glob("*.json")) if (base / "targets").exists() else []}


def add_target(name: str, address: str, labels: dict[str, str] | None = None, base: Path | None = None) -> Path:
    """Scrape `address` (host:port) from now on (file_sd; Prometheus notices within seconds)."""
    base = base or default_base()
    (base / "targets").mkdir(parents=True, exist_ok=True)
    path = base / "targets" / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [address], "labels": labels or {}}]))
    tmp.rename(path)  # atomic: Prometheus never reads half a file
    return path


def remove_target(name: str, base: Path | None = None) -> None:
    (base or default_base()).joinpath("targets", f"{name}.json").unlink(missing_ok=True)


def backfill(openmetrics: str | Path, base: Path | None = None, restart: bool = True) -> None:
    """Turn an OpenMetrics text (ending in `# EOF`) into TSDB blocks in data/; restart a running server."""
    base = base or default_base()
    (base / "data").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        src = Path(openmetrics) if isinstance(openmetrics, Path) else Path(tmp) / "input.om"
        if not isinstance(openmetrics, Path):
            src.write_text(openmetrics)
        out = Path(tmp) / "blocks"
        res = subprocess.run([_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                              "--max-block-duration=24h", str(src), str(out)],
                             capture_output=True, text=True, timeout=3600)
        if res.returncode != 0:
            raise PrometheusError(f"promtool failed: {res.stderr[-2000:] or res.stdout[-2000:]}")
        for block in out.iterdir():
            shutil.move(str(block), str(base / "data" / block.name))
    if restart and is_running(base):
        down(base)
        up(base)
