"""`devenv.postgres` itself: idempotent up/down, address and password kept, pg_hba reloaded, files private."""

from __future__ import annotations

import os
import pwd
import stat

import psycopg
import pytest

pytestmark = pytest.mark.integration


def test_up_down_status_are_idempotent_and_keep_address_password_and_data(pg, tmp_path):
    from mpcloud_operator.devenv import postgres
    from mpcloud_operator.devenv.ports import free_port

    base = tmp_path / "pg"
    try:
        dsn = postgres.up(base, port=free_port())
        assert postgres.up(base) == dsn  # running: kept as it is
        assert stat.S_IMODE((base / "password").stat().st_mode) == 0o600
        if os.geteuid() == 0:  # the server runs as the postgres OS user, never root
            assert (base / "data").stat().st_uid == pwd.getpwnam("postgres").pw_uid
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (1)")
        pid = postgres._pid(base)
        assert postgres.up(base, allow=["10.99.0.0/24"]) == dsn  # only pg_hba changed: a reload, same process
        assert postgres._pid(base) == pid and "10.99.0.0/24" in (base / "data" / "pg_hba.conf").read_text()
        assert postgres.status(base)["allow"] == ["10.99.0.0/24"] and "***" in postgres.status(base)["dsn"]
        assert postgres.down(base) and not postgres.down(base)
        assert postgres.status(base)["running"] is False
        assert postgres.up(base) == dsn  # same port and password after a stop
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(1,)]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(dsn.replace(postgres.password(base), "wrong"))
    finally:
        postgres.down(base)
