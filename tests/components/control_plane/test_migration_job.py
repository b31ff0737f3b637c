"""The database migration Job: after the database, before every component, a new one for each Airflow version."""

from testbed.harness import run_stack
from testbed.runs import dev, pod_spec


def test_migration_job_runs_after_the_database_and_before_every_component():
    run = dev()
    job = run.one("Job")
    assert job.k8s_name == "dev-migrate-3-3-2"
    assert pod_spec(job)["containers"][0]["args"] == ["db", "migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    # Depending on the PostgresCluster component means depending on its Cluster, which waits for Ready.
    assert run.one("Cluster").urn in job.dependencies
    assert run.one("Cluster").metadata["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
    for deployment in run.of_kind("Deployment"):
        if deployment.k8s_name in ("dev-kerberos", "dev-statsd-exporter"):  # neither runs Airflow on the database
            continue
        assert job.urn in deployment.dependencies, deployment.k8s_name
        init = pod_spec(deployment)["initContainers"][0]
        assert init["args"][:2] == ["db", "check-migrations"]
    # The running scheduler reads the task pod template for every task: it names the new image only once migrated.
    assert job.urn in run.one("ConfigMap", "dev-pod-template").dependencies


def test_an_airflow_upgrade_creates_a_new_migration_job():
    assert run_stack({"airflowVersion": "3.3.1"}, stack="dev").one("Job").k8s_name == "dev-migrate-3-3-1"
