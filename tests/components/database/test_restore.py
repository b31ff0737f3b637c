"""`postgres.restore`: the CloudNativePG cluster bootstrapped from backups, after loss or as a clone of prod;
what the operator gets (checked against its CRDs) and what is refused before anything runs."""

from __future__ import annotations

import jsonschema
import pytest

from components.settings import ConfigError
from testbed.harness import run_stack
from testbed.stacks import TEST_SECRETS, stack_file_config
from tests.components.database.test_crd_schemas import _schema

# The branch reads prod's archive with its own backup key (which needs read access to prod's backup prefix).
S3 = {k: TEST_SECRETS[k] for k in ("s3AccessKeyId", "s3SecretAccessKey", "s3BackupAccessKeyId", "s3BackupSecretAccessKey")}
PROD = stack_file_config("prod")


def prod_with(restore: dict, **backups):
    config = {**PROD, "postgres": {**PROD["postgres"], "restore": restore,
                                   "backups": {**PROD["postgres"].get("backups", {}), **backups}}}
    return run_stack(config, dict(TEST_SECRETS), stack="prod")


def branch_with(restore: dict):
    """A throw-away stack without backups of its own, as `python -m envs create` makes them."""
    return run_stack({"postgres": {"backups": {"enabled": False}, "restore": restore}}, S3, stack="br-feature-x-1a2b3c")


def problems_of(run) -> str:
    with pytest.raises(ConfigError) as error:
        run()
    return str(error.value)


def test_rebuilding_after_loss_recovers_from_its_own_archive_and_archives_under_a_new_name():
    run = prod_with({"source": "prod", "targetTime": "2026-01-02T03:04:05Z"}, serverName="prod-pg-2")
    spec = run.one("Cluster").inputs["spec"]
    assert spec["bootstrap"] == {
        "recovery": {
            "source": "backup-source",
            "database": "airflow",
            "owner": "airflow",
            "secret": {"name": "prod-db-credentials"},
            "recoveryTarget": {"targetTime": "2026-01-02T03:04:05+00:00"},
        }
    }
    assert spec["externalClusters"] == [
        {"name": "backup-source", "plugin": {"name": "barman-cloud.cloudnative-pg.io",
                                             "parameters": {"barmanObjectName": "prod-pg-restore", "serverName": "prod-pg"}}}
    ]
    assert spec["plugins"][0]["parameters"] == {"barmanObjectName": "prod-pg-backups", "serverName": "prod-pg-2"}
    stores = {s.k8s_name: s.inputs["spec"] for s in run.of_kind("ObjectStore")}
    assert stores["prod-pg-restore"]["configuration"]["destinationPath"] == stores["prod-pg-backups"]["configuration"]["destinationPath"]
    # The source store expires nothing: only the archiving store carries the retention policy.
    assert "retentionPolicy" not in stores["prod-pg-restore"] and stores["prod-pg-backups"]["retentionPolicy"]


def test_without_a_target_time_the_latest_state_is_recovered():
    spec = prod_with({"source": "prod"}, serverName="prod-pg-2").one("Cluster").inputs["spec"]
    assert "recoveryTarget" not in spec["bootstrap"]["recovery"]


def test_a_branch_clones_prod_from_prods_bucket_and_archive_and_keeps_no_backups_of_its_own():
    run = branch_with({"source": "prod"})
    spec = run.one("Cluster").inputs["spec"]
    assert spec["externalClusters"][0]["plugin"]["parameters"]["serverName"] == "prod-pg"
    assert "plugins" not in spec and not run.of_kind("ScheduledBackup")
    (store,) = run.of_kind("ObjectStore")
    assert store.inputs["spec"]["configuration"]["destinationPath"] == "s3://airflow-prod-airflow-logs/postgres/"
    assert "retentionPolicy" not in store.inputs["spec"]
    assert store.inputs["spec"]["configuration"]["s3Credentials"]["accessKeyId"]["name"] == "br-feature-x-1a2b3c-pg-s3"


def test_a_restore_is_only_a_bootstrap_so_changing_it_later_touches_no_live_cluster():
    cluster = prod_with({"source": "prod"}, serverName="prod-pg-2").one("Cluster")
    assert cluster.protect  # prod's database stays protected while restored
    plain = run_stack(PROD, dict(TEST_SECRETS), stack="prod").one("Cluster")
    assert "initdb" in plain.inputs["spec"]["bootstrap"] and "externalClusters" not in plain.inputs["spec"]


@pytest.mark.parametrize(
    "run, expected",
    [
        (lambda: branch_with({"source": "staging"}),
         "postgres.restore: no stack 'staging' in this project (no Pulumi.staging.yaml)"),
        (lambda: branch_with({"source": "dev"}),
         "postgres.restore: stack 'dev' has postgres.backups.enabled false: it has no backups to restore"),
        (lambda: branch_with({"source": "br-feature-x-1a2b3c"}),
         "postgres.restore: source 'br-feature-x-1a2b3c' is this stack, and postgres.backups.enabled is false"),
        (lambda: prod_with({"source": "prod"}),
         "postgres.restore: the restored cluster would archive as 'prod-pg', the archive it restores from: set "
         "postgres.backups.serverName to a new name, e.g. 'prod-pg-2'"),
        (lambda: prod_with({"source": "prod", "targetTime": "2999-01-01T00:00:00Z"}, serverName="prod-pg-2"),
         "is in the future: no backup can reach it"),
        (lambda: prod_with({"source": "prod", "targetTime": "2026-01-02 03:04:05"}, serverName="prod-pg-2"),
         "postgres.restore.targetTime = '2026-01-02 03:04:05': Input should have timezone info"),
        (lambda: run_stack({"postgres": {"mode": "external", "restore": {"source": "prod"}}},
                           {"postgresExternalUri": "postgresql://u:p@h/db"}, stack="x"),
         "postgres.restore: postgres.mode is external: there is no CloudNativePG cluster to restore into"),
    ],
    ids=["missing-source", "source-without-backups", "self-without-backups", "same-archive", "future", "no-zone",
         "external"],
)
def test_nonsense_is_refused_before_anything_runs_naming_the_setting(run, expected):
    assert expected in problems_of(run)


@pytest.mark.parametrize("kind, name", [("Cluster", None), ("ObjectStore", "-pg-restore")])
@pytest.mark.parametrize("case", ["rebuild", "clone"])
def test_restored_objects_match_the_operators_crds(case, kind, name, crd_dir):
    run = prod_with({"source": "prod", "targetTime": "2026-01-02T03:04:05Z"}, serverName="prod-pg-2") \
        if case == "rebuild" else branch_with({"source": "prod"})
    resource = run.one(kind, name)
    document = {"apiVersion": resource.inputs["apiVersion"], "kind": kind, "metadata": resource.metadata,
                "spec": resource.inputs["spec"]}
    validator = jsonschema.Draft202012Validator(_schema(crd_dir, document["apiVersion"], kind))
    assert [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)] == []
