"""The dev-environment commands of the `mpcloud` CLI: cluster, kubectl, demo, prometheus, postgres, seaweedfs,
traffic.

They live here, not in `mpcloud_operator.commands`, so that the operator image (which has no devenv
package) has none of them; `mpcloud_operator.cli` loads this module only when one of them is invoked.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import click

from mpcloud_operator.devenv import gitserver as local_git
from mpcloud_operator.devenv import postgres as local_postgres
from mpcloud_operator.devenv import seaweedfs as local_seaweedfs
from mpcloud_operator.devenv import prometheus as local_prometheus
from mpcloud_operator.devenv.cluster import binaries, images, local, realnode


def _log(msg: str) -> None:
    click.echo(msg, err=True)


@click.group()
def cluster() -> None:
    """Local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) on 127.0.0.1."""


@cluster.command()
@click.option("--nodes", default=3, show_default=True, help="Simulated nodes (a third plain, the rest kata-capable).")
@click.option("--port", type=int, default=None, help="API server port (default: a free one).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for each readiness step.")
@click.option("--real-nodes", type=click.IntRange(min=0), default=None,
              help="kubelet + containerd (runc) nodes on this host, tainted mpcloud.io/node=real "
                   "[default: 1 where the host can run one, else 0]; 0: simulated nodes only.")
def up(nodes: int, port: int | None, timeout: float, real_nodes: int | None) -> None:
    """Build (once, cached) and start the cluster; idempotent."""
    try:
        path = local.up(nodes=nodes, port=port, log=_log, timeout=timeout, real_nodes=real_nodes)
    except (local.ClusterError, binaries.BuildError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"export KUBECONFIG={path}")


@cluster.command()
def down() -> None:
    """Stop every process of the cluster and remove its state."""
    local.down(log=_log)


@cluster.command()
def status() -> None:
    """Show each component's state."""
    rows = local.status()
    width = max(len(r[0]) for r in rows)
    for name, state, detail in rows:
        click.echo(f"{name:<{width}}  {state:<10}  {detail}")
    if rows[0][1] == "absent":
        sys.exit(1)


@cluster.command()
def kubeconfig() -> None:
    """Print the path of the cluster's kubeconfig (use: export KUBECONFIG=$(mpcloud cluster kubeconfig))."""
    if not local.kubeconfig_path().exists():
        raise click.ClickException("no local cluster: run `mpcloud cluster up`")
    click.echo(local.kubeconfig_path())


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(args: tuple[str, ...]) -> None:
    """Run the pinned kubectl against the local cluster."""
    exe = binaries.binary_path("kubectl")
    if not exe.exists():
        raise click.ClickException("kubectl is not built yet: run `mpcloud cluster up`")
    os.execv(str(exe), [str(exe), "--kubeconfig", str(local.kubeconfig_path()), *args])


@click.command()
@click.option("--stop", is_flag=True, help="Stop the demo's operator and the local cluster.")
def demo(stop: bool) -> None:
    """Local cluster + mpcloud + example apps, then show the result."""
    from mpcloud_operator.devenv import demo as demo_run

    try:
        demo_run.stop(_log) if stop else demo_run.run(_log, click.echo)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback for users
        raise click.ClickException(str(exc)) from exc


@click.group("image")
def image() -> None:
    """The project's container images, built from Debian packages and this checkout (no registry)."""


@image.command("build")
@click.argument("names", nargs=-1, type=click.Choice(images.NAMES))
def image_build(names: tuple[str, ...]) -> None:
    """Build (layers cached) and import into the local cluster's real nodes; print name, digest-tagged ref, size."""
    started = time.monotonic()
    try:
        built = local.build_images(list(names) or None, log=_log)
    except (images.ImageError, realnode.RealNodeError) as exc:
        raise click.ClickException(str(exc)) from exc
    for name, img in built.items():
        click.echo(f"{name}\t{img.ref}\t{img.size / 2**20:.1f} MiB")
    _log(f"built in {time.monotonic() - started:.1f}s")


@click.group("prometheus")
def prometheus() -> None:
    """Local Prometheus for the scaling loop: state in $MPCLOUD_HOME/prometheus."""


@prometheus.command("up")
@click.option("--port", type=int, default=local_prometheus.DEFAULT_PORT, show_default=True)
@click.option("--scrape-interval", default="15s", show_default=True,
              help="e.g. 500ms with time-compressed traffic replays (a quarter of the scaler tick)")
@click.option("--operator-metrics", default=None, help="host:port of the operator's /metrics to scrape")
def prometheus_up(port: int, scrape_interval: str, operator_metrics: str | None) -> None:
    """Start Prometheus (idempotent) and print its URL."""
    try:
        url = local_prometheus.up(port=port, scrape_interval=scrape_interval)
    except local_prometheus.PrometheusError as exc:
        raise click.ClickException(str(exc)) from exc
    if operator_metrics:
        local_prometheus.add_target("operator", operator_metrics, {"source": "mpcloud-operator"})
    click.echo(f"export MPCLOUD_PROMETHEUS_URL={url}")


@prometheus.command("down")
def prometheus_down() -> None:
    """Stop Prometheus (its data stays)."""
    click.echo("stopped" if local_prometheus.down() else "not running")


@prometheus.command("status")
def prometheus_status() -> None:
    """Show whether it runs, its URL and scrape targets."""
    click.echo(json.dumps(local_prometheus.status(), indent=2))


@click.group("postgres")
def postgres() -> None:
    """Local PostgreSQL for the document API and app databases: state in $MPCLOUD_HOME/postgres."""


@postgres.command("up")
@click.option("--port", type=int, default=local_postgres.DEFAULT_PORT, show_default=True)
@click.option("--listen", multiple=True, help="extra address to listen on, e.g. the real node's bridge gateway "
              "(repeatable; default: the previous start's)")
@click.option("--allow", multiple=True, help="extra client subnet for pg_hba, e.g. the pod subnet (repeatable)")
@click.option("--pod-network", is_flag=True, help="listen on the local cluster's real-node bridge gateway and "
              "allow its pod subnet (what function pods need; `mpcloud demo` does this itself)")
def postgres_up(port: int, listen: tuple[str, ...], allow: tuple[str, ...], pod_network: bool) -> None:
    """Start PostgreSQL (idempotent) and print the admin DSN (the superuser's; the password file is 0600)."""
    listen_to, allowed = list(listen), list(allow)
    if pod_network:
        from mpcloud_operator.devenv.functions import pod_reachable_host

        gateway, subnet = pod_reachable_host()
        if not gateway:
            raise click.ClickException("--pod-network: the local cluster has no real node (`mpcloud cluster up`)")
        listen_to, allowed = listen_to + [gateway], allowed + [subnet]
    try:
        dsn = local_postgres.up(port=port, listen=listen_to or None, allow=allowed or None)
    except local_postgres.PostgresError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"export MPCLOUD_POSTGRES_DSN={dsn}")


@postgres.command("down")
@click.option("--immediate", is_flag=True, help="immediate shutdown (crash recovery on the next start)")
def postgres_down(immediate: bool) -> None:
    """Stop PostgreSQL (its data stays)."""
    click.echo("stopped" if local_postgres.down(kill=immediate) else "not running")


@postgres.command("status")
def postgres_status() -> None:
    """Whether it runs, its port, listen addresses and allowed subnets (the DSN with the password masked)."""
    click.echo(json.dumps(local_postgres.status(), indent=2))


@click.group("seaweedfs")
def seaweedfs() -> None:
    """Local SeaweedFS (S3 file storage for functions): state in $MPCLOUD_HOME/seaweedfs."""


@seaweedfs.command("up")
@click.option("--port", type=int, default=local_seaweedfs.DEFAULT_S3_PORT, show_default=True, help="S3 port")
@click.option("--listen", multiple=True, help="extra S3 address, e.g. the real node's bridge gateway "
              "(repeatable; default: the previous start's)")
def seaweedfs_up(port: int, listen: tuple[str, ...]) -> None:
    """Start SeaweedFS (idempotent) and print the operator's S3 settings (the admin keys' file is 0600)."""
    try:
        url = local_seaweedfs.up(s3_port=port, listen=list(listen) or None)
    except local_seaweedfs.SeaweedError as exc:
        raise click.ClickException(str(exc)) from exc
    access, secret = local_seaweedfs.credentials()
    click.echo(f"export MPCLOUD_S3_ENDPOINT={url}\nexport MPCLOUD_S3_ADMIN_ACCESS_KEY={access}\n"
               f"export MPCLOUD_S3_ADMIN_SECRET_KEY={secret}")


@seaweedfs.command("down")
@click.option("--kill", is_flag=True, help="SIGKILL instead of SIGTERM")
def seaweedfs_down(kill: bool) -> None:
    """Stop SeaweedFS and its extra gateways (the data stays)."""
    click.echo("stopped" if local_seaweedfs.down(kill=kill) else "not running")


@seaweedfs.command("status")
def seaweedfs_status() -> None:
    """Whether it runs, its S3 URL, listen addresses and the admin access key id."""
    click.echo(json.dumps(local_seaweedfs.status(), indent=2))


@click.group("git")
def git() -> None:
    """Local Git server (git daemon, bare repositories, GitHub-style push webhooks): state in $MPCLOUD_HOME/git."""


@git.command("up")
@click.option("--port", type=int, default=local_git.DEFAULT_PORT, show_default=True)
@click.option("--pod-network", is_flag=True, help="also listen on the local cluster's real-node bridge gateway, "
              "so pipeline steps can clone")
def git_up(port: int, pod_network: bool) -> None:
    """Start the server (idempotent) and print its base URL."""
    listen = None
    if pod_network:
        from mpcloud_operator.devenv.functions import pod_reachable_host

        gateway, _ = pod_reachable_host()
        if not gateway:
            raise click.ClickException("--pod-network: the local cluster has no real node (`mpcloud cluster up`)")
        listen = [gateway]
    try:
        click.echo(local_git.up(port_=port, listen=listen))
    except local_git.GitServerError as exc:
        raise click.ClickException(str(exc)) from exc


@git.command("repo")
@click.argument("name")
@click.option("--webhook", "webhook_url", default=None, help="URL pushes are delivered to, e.g. "
              "http://127.0.0.1:8083/hooks/git/<namespace>/<pipeline>/<trigger>")
@click.option("--secret", default=None, help="secret the deliveries are signed with (X-Hub-Signature-256)")
def git_repo(name: str, webhook_url: str | None, secret: str | None) -> None:
    """Create a bare repository (idempotent) and set its webhook; print its clone URL."""
    try:
        local_git.create_repo(name, webhook_url=webhook_url, secret=secret)
        click.echo(local_git.url(name))
    except (local_git.GitServerError, FileNotFoundError) as exc:
        raise click.ClickException(f"{exc} (is the server up? `mpcloud git up`)") from exc


@git.command("down")
def git_down() -> None:
    """Stop the server (the repositories stay)."""
    click.echo("stopped" if local_git.down() else "not running")


@git.command("status")
def git_status() -> None:
    """Whether it runs, its port, addresses and repositories."""
    click.echo(json.dumps(local_git.status(), indent=2))


@click.group("traffic")
def traffic() -> None:
    """Synthetic load for local runs of the scaling loop."""


@traffic.command("replay")
@click.option("--trace", "trace_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--series", default=None, help="series id (default: the file's first)")
@click.option("--app", "apps", required=True, multiple=True, help="NAMESPACE/NAME the traffic belongs to (repeatable)")
@click.option("--speedup", type=float, default=1.0, show_default=True,
              help="trace minutes per wall minute; run the operator with MPCLOUD_SCALING_TICK_SECONDS=60/speedup")
@click.option("--start", type=int, default=None, help="trace minute (from the trace's start) played now "
              "(default: right after the backfilled history)")
@click.option("--history", type=int, default=3 * 1440, show_default=True, help="trace minutes to backfill")
@click.option("--no-backfill", is_flag=True)
def traffic_replay(trace_path, series, apps, speedup, start, history, no_backfill) -> None:
    """Backfill the trace's past into the local Prometheus, then replay it from --start (Ctrl-C stops)."""
    from predictors.traces import load_trace
    from mpcloud_operator.devenv.traffic import start_replay

    pairs = []
    for a in apps:
        if "/" not in a:
            raise click.BadParameter(f"expected NAMESPACE/NAME, got {a!r}")
        pairs.append(tuple(a.split("/", 1)))
    s = next(iter(load_trace(trace_path, series).values()))
    tick = 60.0 / speedup
    if not local_prometheus.is_running():
        raise click.ClickException("Prometheus is not running: `mpcloud prometheus up` first")
    server = start_replay(s.counts, pairs, tick, start, history, backfill=not no_backfill)
    r = server.replay
    click.echo(f"replaying {s.series_id} from trace minute {r.start} on 127.0.0.1:{server.port}/metrics "
               f"(1 trace minute = {tick:g} s; operator: MPCLOUD_SCALING_TICK_SECONDS={tick:g})")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(tick):
            now = time.time()
            click.echo(f"trace minute {r.position(now):9.1f}  demand {r.demand(now):10.1f}/min")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
