"""Names of tenant databases and roles: deterministic, distinct, readable, within PostgreSQL's 63 bytes."""

from __future__ import annotations

import pytest

from mpcloud_operator.backing.postgres import Provisioner, function_role, index_name, tenant_for


def test_tenant_names_are_stable_readable_and_bounded():
    t = tenant_for("todo", "default")
    assert t == tenant_for("todo", "default")
    assert t.database.startswith("mpc_todo_default_") and t.schema == "docs" and t.owner == f"{t.database}_owner"
    long = tenant_for("n" * 63, "a" * 63)
    assert len(long.database) <= 41 and len(long.owner) <= 63
    assert len(function_role(long, "f" * 63)) <= 63
    assert len(index_name("c" * 48, "a.b" * 30)) <= 63


@pytest.mark.parametrize("a, b", [(("a-b", "c"), ("a", "b-c")), (("x", "y"), ("X", "y")), (("ns", "app"), ("ns", "app2"))])
def test_distinct_tenants_never_share_a_database(a, b):
    assert tenant_for(*a).database != tenant_for(*b).database


def test_function_roles_are_per_tenant_and_per_function():
    t1, t2 = tenant_for("ns", "one"), tenant_for("ns", "two")
    assert function_role(t1, "add") != function_role(t2, "add")
    assert function_role(t1, "add") != function_role(t1, "add2")
    assert function_role(t1, "add").startswith(t1.database + "_add_")


def test_function_dsn():
    prov = Provisioner("postgresql://postgres:pw@10.0.0.1:5433/postgres")
    t = tenant_for("ns")
    assert prov.dsn(t, "r", "p@ss/w") == f"postgresql://r:p%40ss%2Fw@10.0.0.1:5433/{t.database}"
    assert prov.dsn(t, "r", "p", host="pg.svc", port=5432) == f"postgresql://r:p@pg.svc:5432/{t.database}"
