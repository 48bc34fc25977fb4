"""A MiniProgramApp's managed database on the real PostgreSQL: provisioned by the operator (under its own RBAC),
shared with the app's CloudFunctions' collections, closed to every other app, the role gone with the app and the
data kept. The app's pods run on kwok nodes (sandboxed placement); the test connects with the Secret's
credentials exactly as the app's process would."""

from __future__ import annotations

import base64

import psycopg
import pytest
from kubernetes import client
from psycopg.conninfo import make_conninfo

from mpcloud_operator.devenv import postgres
from tests.integration.conftest import wait_until
from tests.integration.custom_resources import CustomResources

pytestmark = pytest.mark.integration


class Apps(CustomResources):
    kind, plural = "MiniProgramApp", "miniprogramapps"


def app_body(name: str) -> dict:
    return {"apiVersion": "mpcloud.io/v1alpha1", "kind": "MiniProgramApp", "metadata": {"name": name},
            "spec": {"image": "nginxinc/nginx-unprivileged:1.27", "ports": [{"name": "http", "containerPort": 8080}],
                     "bindings": {"database": {"managed": True}}}}


def credentials(core, ns: str, name: str) -> dict[str, str] | None:
    try:
        secret = core.read_namespaced_secret(f"{name}-mpcloud-database", ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def connect(creds: dict[str, str], database: str | None = None) -> psycopg.Connection:
    # From this host, PostgreSQL's loopback address (the Secret's HOST is the one pods reach).
    dsn = make_conninfo(creds["DSN"], host="127.0.0.1", port=postgres.port(), dbname=database or creds["DATABASE"])
    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


@pytest.fixture
def apps(api_client, namespace, operator, function_platform) -> Apps:
    client.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(namespace, {
        "metadata": {"name": "mpcloud-operator-bindings"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mpcloud-operator-bindings"},
        "subjects": [{"kind": "ServiceAccount", "name": "mpcloud-operator", "namespace": "mpcloud-system"}]})
    return Apps(api_client, namespace)


def test_managed_database_is_the_apps_own_and_outlives_its_role(apps):
    apps.create(app_body("shop"))
    apps.create(app_body("other"))
    for name in ("shop", "other"):
        apps.wait_condition(name, "Ready", status="True", timeout=90)
    shop = wait_until(lambda: credentials(apps.core, apps.ns, "shop"), 30, what="shop's database Secret")
    other = wait_until(lambda: credentials(apps.core, apps.ns, "other"), 30, what="other's database Secret")
    assert set(shop) == {"DSN", "HOST", "PORT", "DATABASE", "USER", "PASSWORD", "SCHEMA"}
    assert shop["DATABASE"] != other["DATABASE"] and f"@{shop['HOST']}:{shop['PORT']}/" in shop["DSN"]
    dep = apps.apps.read_namespaced_deployment("shop", apps.ns)
    assert {"secretRef": "shop-mpcloud-database", "prefix": "DATABASE_"} == {
        "secretRef": dep.spec.template.spec.containers[0].env_from[0].secret_ref.name,
        "prefix": dep.spec.template.spec.containers[0].env_from[0].prefix}

    with connect(shop) as conn:  # the app's own SQL, in its database
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text)")
        conn.execute("INSERT INTO orders (item) VALUES ('tea')")
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'orders'").fetchone()[0]
        assert owner == f"{shop['DATABASE']}_owner"  # the tenant's, not the login role's
    with pytest.raises(psycopg.OperationalError, match="permission denied|not permitted|no pg_hba"):
        connect(other, database=shop["DATABASE"]).close()  # another app cannot even connect

    apps.delete("shop")

    def role_gone() -> bool:
        try:
            connect(shop).close()
        except psycopg.OperationalError:
            return True
        return False

    wait_until(role_gone, 60, interval=0.5, what="shop's role dropped with the app")
    with psycopg.connect(postgres.dsn(database=shop["DATABASE"]), autocommit=True, connect_timeout=10) as db:
        assert db.execute("SELECT item FROM docs.orders").fetchall() == [("tea",)]  # the data stays
    with connect(other) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
