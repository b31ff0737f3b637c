"""The whole instance, composed: config in, components composed, outputs out.

`__main__.py` calls `airflow_instance()` for `pulumi up` with any Pulumi CLI; our own tools (the embedded
default, branch environments, merge-request previews, the end-to-end tests) run the same function as an
Automation API inline program (`engine.py`), so both paths run exactly this code.

    Settings ─┬─ InstanceNamespace
              ├─ WorkerRBAC ─────────── service accounts ──────┐
              ├─ LogBucket ──── s3:// URL, log connection ─────┤
              │      └───── backup destination ─ PostgresCluster ── pooler URL ─┤
              ├─ KerberosKeytab ─── volumes, mounts, env ──────┴─> AirflowControlPlane
              ├─ NetworkPolicies (default-deny ingress, one policy per allowed path)
              └─ Metrics (StatsD exporter; monitors and alert rules with the Prometheus operator)

InstanceNamespace's name goes to every component that puts objects in it, and PostgresCluster's Cluster and
Pooler names to NetworkPolicies and Metrics. Each component takes its section of the Settings and the Outputs
it needs, and uses every one: an Output it is given is what makes Pulumi create what it waits for first.

Three S3 credentials, one per job: `s3AccessKeyId` provisions the bucket and is used by `pulumi up` alone;
`s3LogAccessKeyId` goes into the log connection (Airflow and task pods); `s3BackupAccessKeyId` goes to
PostgreSQL's backups. None falls back to another. Likewise two endpoints: `pulumi up` provisions through
`s3.endpointUrl`, and pods (the log connection, the backups, task pods' egress) are told `s3.podEndpointUrl`,
which defaults to it.
"""
import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.airflow_control_plane import AirflowControlPlane, AirflowControlPlaneArgs
from components.airflow_schema import AirflowSchema
from components.footprint import stack_outputs
from components.instance_namespace import InstanceNamespace, InstanceNamespaceArgs
from components.kerberos_keytab import KerberosKeytab, KerberosKeytabArgs
from components.log_bucket import LogBucket, LogBucketArgs
from components.metrics import Metrics, MetricsArgs
from components.network_policies import NetworkPolicies, NetworkPoliciesArgs
from components.postgres_cluster import BackupDestination, PostgresCluster, PostgresClusterArgs
from components.settings import capacity, load_settings, restore_source, secret_output
from components.worker_rbac import WorkerRBAC, WorkerRBACArgs


def airflow_instance() -> None:
    settings = load_settings()
    instance = settings.instance

    # Every Kubernetes object waits for this record's check: a stack whose airflowVersion goes back is refused
    # before anything in the cluster changes (components/airflow_schema.py).
    schema = AirflowSchema(f"{instance}-schema", airflow_version=settings.airflow_version)
    kubernetes = k8s.Provider(
        "kubernetes",
        render_yaml_to_directory=settings.kubernetes_render_dir,
        context=settings.kubernetes_context,
        # Otherwise a changed ConfigMap or Secret is replaced (deleted, then created under its fixed name) and
        # so is every pod reading it. Updated in place, the pods roll through their config checksum instead.
        enable_config_map_mutable=True,
        enable_secret_mutable=True,
        opts=pulumi.ResourceOptions(depends_on=[schema]),
    )
    on_cluster = pulumi.ResourceOptions(providers=[kubernetes])
    # The database and the bucket hold what cannot be recreated: every stack but a disposable one protects
    # and retains them, and the namespace the database lives in (deleting a namespace deletes what is in it).
    stateful = pulumi.ResourceOptions.merge(
        on_cluster, pulumi.ResourceOptions(protect=settings.protected, retain_on_delete=settings.protected)
    )

    namespace = InstanceNamespace(
        instance,
        InstanceNamespaceArgs(
            instance=instance,
            name=settings.kubernetes_namespace,
            create=settings.create_namespace,
            team=settings.team,
            quota=capacity.quota_hard(settings) if settings.quota.enabled else None,
            limit_range=settings.limit_range,
        ),
        opts=stateful,
    )

    rbac = WorkerRBAC(
        instance,
        WorkerRBACArgs(
            instance=instance,
            namespace=namespace.name,
            task_pod_api_access=settings.task_pod.kubernetes_api_access,
            kerberos_enabled=settings.kerberos.enabled,
        ),
        opts=on_cluster,
    )

    s3_access_key_id = secret_output(settings.s3_access_key_id)
    s3_secret_access_key = secret_output(settings.s3_secret_access_key)
    logs = LogBucket(
        instance,
        LogBucketArgs(
            bucket_name=settings.bucket_name,
            region=settings.s3.region,
            endpoint_url=settings.s3.endpoint_url,
            pod_endpoint_url=settings.s3.pod_endpoint,
            log_prefix=settings.s3.log_prefix,
            retention_days=settings.s3.retention_days,
            access_key_id=s3_access_key_id,
            secret_access_key=s3_secret_access_key,
            log_access_key_id=secret_output(settings.s3_log_access_key_id),
            log_secret_access_key=secret_output(settings.s3_log_secret_access_key),
            log_principal=settings.s3.log_principal,
            backup_principal=settings.s3.backup_principal,
            backup_prefix=settings.postgres.backups.prefix,
            ca_bundle=settings.s3.ca_bundle,
            verify_tls=settings.s3.verify_tls,
            attempts=settings.s3.log_upload_attempts,
            force_destroy=settings.s3.force_destroy,
            tags={"airflow-instance": instance, **({"team": settings.team} if settings.team else {})},
        ),
        opts=stateful,
    )

    database = PostgresCluster(
        instance,
        PostgresClusterArgs(
            instance=instance,
            namespace=namespace.name,
            settings=settings.postgres,
            placement=settings.placement,
            external_uri=secret_output(settings.postgres_external_uri),
            backup=BackupDestination(
                bucket=logs.bucket_name,
                prefix=settings.postgres.backups.prefix,
                endpoint_url=settings.s3.pod_endpoint,
                ca_bundle=settings.s3.ca_bundle,
                access_key_id=secret_output(settings.s3_backup_access_key_id),
                secret_access_key=secret_output(settings.s3_backup_secret_access_key),
            ),
            restore=restore_source.resolve(settings)[0] if settings.postgres.restore else None,
        ),
        opts=stateful,
    )

    kerberos_mounts = None
    if settings.kerberos.enabled:
        kerberos = KerberosKeytab(
            instance,
            KerberosKeytabArgs(
                instance=instance,
                namespace=namespace.name,
                settings=settings.kerberos,
                keytab_base64=secret_output(settings.kerberos_keytab),
                image=settings.image,
                image_pull_policy=settings.image_pull_policy,
                service_account_name=rbac.service_account_names[kube.KERBEROS],
                placement=settings.placement,
                api_keytab_base64=secret_output(settings.kerberos_api_keytab),
                namespace_deletes_cache=settings.create_namespace and not settings.protected,
            ),
            opts=on_cluster,
        )
        kerberos_mounts = kerberos.mounts

    airflow = AirflowControlPlane(
        instance,
        AirflowControlPlaneArgs(
            settings=settings,
            namespace=namespace.name,
            service_accounts=rbac.service_account_names,
            token_components=rbac.token_components,
            database_url=database.sqlalchemy_url,
            logs_url=logs.logs_url,
            log_connection_id=logs.connection_id,
            log_connection=logs.connection,
            kerberos=kerberos_mounts,
            migrate_after=(database, rbac, logs.bucket),
        ),
        opts=on_cluster,
    )

    if settings.network.enabled:
        NetworkPolicies(
            instance,
            NetworkPoliciesArgs(
                instance=instance,
                namespace=namespace.name,
                settings=settings.network,
                ingress_enabled=settings.ingress.enabled,
                postgres_cluster=database.cluster_name,
                pooler=database.pooler_name,
                metrics_exporter=settings.metrics.enabled,
                prometheus_scrapes_database=settings.metrics.enabled and settings.metrics.prometheus_operator,
                s3_endpoint=settings.s3.pod_endpoint,
            ),
            opts=on_cluster,
        )

    if settings.metrics.enabled:
        Metrics(
            instance,
            MetricsArgs.from_settings(
                settings, namespace.name, cnpg_cluster=database.cluster_name, cnpg_pooler=database.pooler_name
            ),
            opts=on_cluster,
        )

    pulumi.export("url", airflow.url)
    pulumi.export("namespace", namespace.name)
    pulumi.export("service_accounts", rbac.service_account_names)
    pulumi.export("log_bucket", logs.bucket_name)
    pulumi.export("logs_url", logs.logs_url)
    pulumi.export("database_host", database.host)
    # What the instance reserves while it runs (LimitRange defaults included) and its price: components/footprint.py.
    for key, value in stack_outputs(settings).items():
        pulumi.export(key, value)
    if airflow.admin_password is not None:
        pulumi.export("admin_user", "admin")
        pulumi.export("admin_password", airflow.admin_password)
