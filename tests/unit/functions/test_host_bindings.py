"""The runtime host reads its binding credentials from the mounted bindings Secret, never from its workers' env."""

from __future__ import annotations

from mpcloud_operator.functions.host import binding_files


def test_mounted_secret_files_become_the_hosts_binding_settings(tmp_path):
    # The layout kubelet writes for a Secret volume: keys are symlinks into a timestamped ..data directory.
    data = tmp_path / "..2026_12_03_17_00_00.123"
    data.mkdir()
    (data / "MPCLOUD_DB_DSN").write_text("postgresql://fn:pw@db/t")
    (data / "MPCLOUD_DB_SCHEMA").write_text("docs")
    (tmp_path / "..data").symlink_to(data.name)
    for key in ("MPCLOUD_DB_DSN", "MPCLOUD_DB_SCHEMA"):
        (tmp_path / key).symlink_to(f"..data/{key}")
    assert binding_files(str(tmp_path)) == {"MPCLOUD_DB_DSN": "postgresql://fn:pw@db/t", "MPCLOUD_DB_SCHEMA": "docs"}


def test_no_directory_means_no_bindings(tmp_path):
    assert binding_files(None) == {} and binding_files(str(tmp_path / "missing")) == {}
