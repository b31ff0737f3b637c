"""The Pooler (PgBouncer in front of the database): how Airflow connects through it, its size, spread and budget,
and how it is deleted."""

from testbed.harness import run_stack
from testbed.runs import dev, prod, stack


# --- deleting it ----------------------------------------------------------------------------------------


def test_the_pooler_is_deleted_without_waiting_for_its_deployment():
    """The node test's `destroy` hung on a Pooler deleted in the foreground: CloudNativePG recreates the
    Deployment of a Pooler being deleted (cloudnative-pg#11360), so the Pooler waited for it forever."""
    annotations = dev().one("Pooler").metadata["annotations"]
    assert annotations["pulumi.com/deletionPropagationPolicy"] == "background"


# --- connecting through it ------------------------------------------------------------------------------


def test_airflow_connects_through_the_pooler_with_a_secret_url():
    from components.postgres_cluster import PostgresCluster, PostgresClusterArgs
    from components.settings.sections import PostgresSettings
    import pulumi

    seen = {}

    def program():
        cluster = PostgresCluster("db", PostgresClusterArgs(instance="x", namespace="ns", settings=PostgresSettings()))
        pulumi.Output.all(cluster.sqlalchemy_url, cluster.host, cluster.port).apply(
            lambda v: seen.update(url=v[0], host=v[1], port=v[2])
        )
        seen["secret"] = cluster.sqlalchemy_url

    run_stack({}, program=program)
    assert seen["host"] == "x-pgbouncer.ns.svc" and seen["port"] == 5432
    assert seen["url"].startswith("postgresql://airflow:Pw") and seen["url"].endswith("@x-pgbouncer.ns.svc:5432/airflow")
    from pulumi.runtime.sync_await import _sync_await

    assert _sync_await(seen["secret"].is_secret())


# --- size, spread and budget -------------------------------------------------------------------------------


def test_prods_two_pgbouncers_are_sized_spread_and_budgeted():
    run = stack("prod")
    template = run.one("Pooler").inputs["spec"]["template"]["spec"]
    (container,) = template["containers"]
    assert container["name"] == "pgbouncer" and {"cpu", "memory"} <= set(container["resources"]["limits"])
    term = template["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"] == {"matchLabels": {"cnpg.io/poolerName": "prod-pgbouncer"}}
    budget = run.one("PodDisruptionBudget", "prod-pgbouncer").inputs["spec"]
    assert budget["maxUnavailable"] == 1 and budget["selector"]["matchLabels"] == {"cnpg.io/poolerName": "prod-pgbouncer"}


def test_a_single_pgbouncer_gets_no_budget_that_would_block_every_drain():
    assert [p.k8s_name for p in stack("dev").of_kind("PodDisruptionBudget")] == []
