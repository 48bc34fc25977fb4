"""The local PostgreSQL's pure parts: pg_hba, where its state lives."""

from __future__ import annotations

from pathlib import Path

from mpcloud_operator.devenv import postgres


def test_hba_allows_only_scram_over_tcp_from_loopback_and_the_given_subnets():
    lines = [ln for ln in postgres.hba_text(["10.88.0.0/24"]).splitlines() if not ln.startswith("#")]
    assert lines == ["host all all 127.0.0.1/32 scram-sha-256", "host all all ::1/128 scram-sha-256",
                     "host all all 10.88.0.0/24 scram-sha-256"]


def test_state_under_mpcloud_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MPCLOUD_HOME", str(tmp_path))
    assert postgres.default_base() == Path(tmp_path) / "postgres"


def test_pod_network_reads_the_real_nodes_bridges(tmp_path):
    from mpcloud_operator.devenv.cluster.realnode import NodeState, nodes_dir

    assert postgres.pod_network(tmp_path) == ([], [])
    for i, (gw, net) in enumerate([("10.88.1.1", "10.88.1.0/24"), ("10.88.2.1", "10.88.2.0/24")]):
        d = nodes_dir(tmp_path) / f"real-node-{i}"
        d.mkdir(parents=True)
        NodeState(name=d.name, dir=str(d), bridge=f"br{i}", subnet=net, gateway=gw, cgroup_root="x",
                  kubelet_port=1, kubelet_healthz_port=2).save()
    assert postgres.pod_network(tmp_path) == (["10.88.1.1", "10.88.2.1"], ["10.88.1.0/24", "10.88.2.0/24"])
