"""PostgresCluster: the metadata database, a CloudNativePG Cluster with a PgBouncer Pooler in front.

Airflow connects through the Pooler (transaction mode), never to the Cluster's `-rw` Service, so many
short-lived task and scheduler connections share a few server connections. WAL archiving and daily base
backups go to S3 through the Barman Cloud plugin (the in-tree `barmanObjectStore` is deprecated since
CloudNativePG 1.26 and due to be removed in 1.31); backups can be switched off for throw-away stacks.
Backup retention is Barman's own policy on the ObjectStore: an S3 lifecycle rule over a backup catalogue
would silently break restores.

In `external` mode the component creates nothing and hands on the URI it is given.

Prerequisites a platform team installs once per cluster (not per instance): the CloudNativePG operator
1.30 (CRDs `postgresql.cnpg.io/v1`) and the Barman Cloud plugin 0.14 (`barmancloud.cnpg.io/v1`, which
needs cert-manager). scripts/fetch-crds pins the exact versions whose CRD schemas the tests check us against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, urlparse

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import images, kube
from components.component_base import kept_child, type_token
from components.settings.namespace_sections import PlacementSettings
from components.settings.restore_source import RestoreSource
from components.settings.sections import PostgresSettings

DATABASE = "airflow"
OWNER = "airflow"
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"
RESTORE_SOURCE = "backup-source"
POOLER_DELETION = ("pulumi.com/deletionPropagationPolicy", "background")
COMPONENT = "database"
# How often the plugin's sidecar re-reads the backup catalogue into the ObjectStore's status, which its backup
# metrics (and so the backup alerts) read. The plugin 0.14 drops the refresh after a backup when the status
# changed meanwhile (a conflict, seen on the test node after a failed backup): at its default 1800 s the
# failing-backup alert would go on firing for up to half an hour after a good backup.
CATALOG_REFRESH_SECONDS = 300
# A restart (a setting that needs one, the backup sidecar's arrival, a minor or major upgrade) begins with a smart
# shutdown, which waits for every client to leave and meanwhile refuses new connections. PgBouncer never leaves:
# it keeps its server connections for server_idle_timeout (600 s). So CloudNativePG's default window (180 s) was
# always spent in full before its fast shutdown, with Airflow's new connections refused throughout. After a short
# window the fast shutdown comes as it did at 180 s. On the test node, turning backups on took 3.5 min at the
# default and 48 s with this; a 15 to 17 major upgrade 237 s and 65 s.
SMART_SHUTDOWN_SECONDS = 15


@dataclass
class BackupDestination:
    """Where WAL and base backups go: the instance's bucket under a prefix of their own, written with a
    credential of their own (never the one that provisions the bucket, never the one task pods hold)."""

    bucket: pulumi.Input[str]
    prefix: str
    # As PostgreSQL's pods reach the store (s3.podEndpointUrl); None: AWS.
    endpoint_url: str | None = None
    ca_bundle: str | None = None
    # Unset: the pods' ambient credentials (IAM role / IRSA).
    access_key_id: pulumi.Input[str] | None = None
    secret_access_key: pulumi.Input[str] | None = None


@dataclass
class PostgresClusterArgs:
    instance: str
    namespace: pulumi.Input[str]
    settings: PostgresSettings
    placement: PlacementSettings = field(default_factory=PlacementSettings)
    external_uri: pulumi.Input[str] | None = None
    backup: BackupDestination | None = None
    # Bootstrap from these backups instead of an empty database (components/settings/restore_source.py).
    restore: RestoreSource | None = None


class PostgresCluster(pulumi.ComponentResource):
    host: pulumi.Output[str]
    port: pulumi.Output[int]
    database: pulumi.Output[str]
    user: pulumi.Output[str]
    sqlalchemy_url: pulumi.Output[str]

    def __init__(self, name: str, args: PostgresClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("PostgresCluster"), name, None, opts)
        self._args = args
        self._options = opts
        # The names CloudNativePG labels its pods with (None in external mode: nothing runs here).
        self.cluster_name = self.pooler_name = None
        self.cluster = self.pooler = self.pooler_budget = self.object_store = self.scheduled_backup = None
        self.restore_store = None
        if args.settings.mode == "external":
            self._use_external(args.external_uri)
        else:
            self._create_cluster()
        self.register_outputs(
            {
                "host": self.host,
                "port": self.port,
                "database": self.database,
                "user": self.user,
                "sqlalchemy_url": self.sqlalchemy_url,
            }
        )

    def _use_external(self, uri: pulumi.Input[str] | None) -> None:
        if uri is None:
            raise ValueError("PostgresCluster in external mode needs external_uri")
        parsed = pulumi.Output.from_input(uri).apply(urlparse)
        # The host, port and names are not secret; only the password in the URI is.
        self.host = pulumi.Output.unsecret(parsed.apply(lambda p: p.hostname or ""))
        self.port = pulumi.Output.unsecret(parsed.apply(lambda p: p.port or kube.POSTGRES_PORT))
        self.database = pulumi.Output.unsecret(parsed.apply(lambda p: p.path.lstrip("/")))
        self.user = pulumi.Output.unsecret(parsed.apply(lambda p: p.username or ""))
        self.sqlalchemy_url = pulumi.Output.secret(uri)

    def _meta(self, role: str, annotations: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgs:
        return kube.object_meta(
            self._args.instance, COMPONENT, self._args.namespace, kube.resource_name(self._args.instance, role),
            annotations,
        )

    def _child(self, **extra) -> pulumi.ResourceOptions:
        return kept_child(self, self._options, **extra)

    def _create_cluster(self) -> None:
        args = self._args
        self.cluster_name = kube.resource_name(args.instance, "pg")
        self.pooler_name = kube.resource_name(args.instance, "pgbouncer")
        password = self._password()
        credentials = self._credentials(password)
        self.object_store = self._backup_store()
        self.restore_store = self._restore_store()
        self.cluster = self._cluster(credentials)
        self.pooler = self._pooler()
        self.pooler_budget = self._pooler_budget() if args.settings.pooler_instances > 1 else None
        self.scheduled_backup = self._scheduled_backup() if self.object_store is not None else None
        self._connect_through_pooler(password)

    def _password(self) -> random.RandomPassword:
        return random.RandomPassword(
            f"{self._name}-password",
            length=32,
            # Letters and digits only: the password goes into a URL and a PgBouncer auth file unescaped.
            special=False,
            opts=self._child(),
        )

    def _credentials(self, password: random.RandomPassword) -> k8s.core.v1.Secret:
        """The owner's login, which CloudNativePG sets when it creates the database (fresh or restored)."""
        return k8s.core.v1.Secret(
            f"{self._name}-credentials",
            metadata=self._meta("db-credentials"),
            type="kubernetes.io/basic-auth",
            string_data={"username": OWNER, "password": password.result},
            opts=self._child(),
        )

    def _backup_store(self):
        """Where WAL and base backups go, with Barman's retention policy; None when backups are off."""
        args, backups = self._args, self._args.settings.backups
        if not (backups.enabled and args.backup is not None):
            return None
        backup = args.backup
        return self._object_store("pg-backups", backup.bucket, backup.prefix, backup.endpoint_url, f"{backups.retention_days}d")

    def _restore_store(self):
        """The backups to bootstrap from; None unless the stack restores."""
        restore = self._args.restore
        if restore is None:
            return None
        # No retention policy: the plugin would expire the source's backups by it, and a branch stack must
        # never delete prod's.
        return self._object_store("pg-restore", restore.bucket, restore.prefix, restore.endpoint_url, None)

    def _cluster_spec(self, credentials: k8s.core.v1.Secret) -> dict:
        args, settings = self._args, self._args.settings
        spec: dict = {
            "instances": settings.instances,
            "imageName": settings.image_name,
            "storage": {"size": settings.storage_size, **_optional("storageClass", settings.storage_class)},
            "resources": _resources(settings.resources),
            "postgresql": {"parameters": dict(settings.parameters)},
            "smartShutdownTimeout": SMART_SHUTDOWN_SECONDS,
            "bootstrap": {
                "initdb": {"database": DATABASE, "owner": OWNER, "secret": {"name": credentials.metadata.name}}
            },
            # A PDB on a single instance would block every node drain; CloudNativePG adds one per role.
            "enablePDB": settings.instances > 1,
            "affinity": {
                "enablePodAntiAffinity": settings.instances > 1,
                "topologyKey": "kubernetes.io/hostname",
                "podAntiAffinityType": "preferred",
                **_optional("nodeSelector", dict(args.placement.node_selector) or None),
                **_optional(
                    "tolerations",
                    [t.model_dump(exclude_none=True) for t in args.placement.tolerations] or None,
                ),
            },
        }
        if self.object_store is not None:
            parameters = {"barmanObjectName": kube.resource_name(args.instance, "pg-backups")}
            if settings.backups.server_name:
                parameters["serverName"] = settings.backups.server_name
            spec["plugins"] = [{"name": BARMAN_PLUGIN, "isWALArchiver": True, "parameters": parameters}]
        if args.restore is not None:
            restore = args.restore
            recovery: dict = {"source": RESTORE_SOURCE, "database": DATABASE, "owner": OWNER,
                              # The owner gets this stack's password, not the source's.
                              "secret": {"name": credentials.metadata.name}}
            if restore.target_time:
                recovery["recoveryTarget"] = {"targetTime": restore.target_time}
            spec["bootstrap"] = {"recovery": recovery}
            spec["externalClusters"] = [
                {
                    "name": RESTORE_SOURCE,
                    "plugin": {
                        "name": BARMAN_PLUGIN,
                        "parameters": {
                            "barmanObjectName": kube.resource_name(args.instance, "pg-restore"),
                            "serverName": restore.server_name,
                        },
                    },
                }
            ]
        return spec

    def _cluster(self, credentials: k8s.core.v1.Secret) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{self._name}-cluster",
            api_version="postgresql.cnpg.io/v1",
            kind="Cluster",
            # `pulumi up` waits until the operator reports the database Ready, so the migration Job that
            # depends on this component never starts against a database that is still initialising.
            metadata=kube.object_meta(
                self._args.instance,
                COMPONENT,
                self._args.namespace,
                self.cluster_name,
                annotations={"pulumi.com/waitFor": "condition=Ready", "pulumi.com/timeoutSeconds": "1200"},
            ),
            spec=self._cluster_spec(credentials),
            # CloudNativePG reads the bootstrap once, when it creates the cluster: restoring means creating it
            # (README: restoring the database), and adding or removing `restore` later changes nothing live.
            opts=self._child(
                depends_on=[credentials, *filter(None, [self.object_store, self.restore_store])],
                ignore_changes=["spec.bootstrap", "spec.externalClusters"],
            ),
        )

    def _pooler(self) -> k8s.apiextensions.CustomResource:
        settings = self._args.settings
        return k8s.apiextensions.CustomResource(
            f"{self._name}-pooler",
            api_version="postgresql.cnpg.io/v1",
            kind="Pooler",
            # Deleted in the background: under the engine's default foreground deletion the Pooler waits for its
            # Deployment to go, while CloudNativePG releases without the fix for cloudnative-pg#11360 recreate
            # that Deployment for a Pooler being deleted, and `destroy` would never finish. The garbage collector
            # removes the Deployment once the Pooler is gone.
            metadata=self._meta("pgbouncer", {POOLER_DELETION[0]: POOLER_DELETION[1]}),
            spec={
                "cluster": {"name": self.cluster_name},
                "instances": settings.pooler_instances,
                "type": "rw",
                "template": self._pooler_template(self.pooler_name),
                "pgbouncer": {
                    "poolMode": "transaction",
                    "parameters": {
                        "max_client_conn": str(settings.pooler_max_client_conn),
                        "default_pool_size": str(settings.pooler_default_pool_size),
                    },
                },
            },
            opts=self._child(depends_on=[self.cluster]),
        )

    def _pooler_budget(self) -> k8s.policy.v1.PodDisruptionBudget:
        return kube.disruption_budget(
            f"{self._name}-pooler", self._meta("pgbouncer"), {kube.CNPG_POOLER_LABEL: self.pooler_name}, self._child()
        )

    def _scheduled_backup(self) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{self._name}-daily-backup",
            api_version="postgresql.cnpg.io/v1",
            kind="ScheduledBackup",
            metadata=self._meta("pg-daily"),
            spec={
                "schedule": self._args.settings.backups.schedule,
                "cluster": {"name": self.cluster_name},
                "method": "plugin",
                "pluginConfiguration": {"name": BARMAN_PLUGIN},
                "backupOwnerReference": "self",
                "immediate": True,
            },
            opts=self._child(depends_on=[self.cluster]),
        )

    def _connect_through_pooler(self, password: random.RandomPassword) -> None:
        """The component's outputs: Airflow reaches the database through the Pooler's Service."""
        self.host = pulumi.Output.concat(self.pooler_name, ".", self._args.namespace, ".svc")
        self.port = pulumi.Output.from_input(kube.POSTGRES_PORT)
        self.database = pulumi.Output.from_input(DATABASE)
        self.user = pulumi.Output.from_input(OWNER)
        self.sqlalchemy_url = pulumi.Output.secret(
            pulumi.Output.all(self.host, password.result).apply(
                lambda parts: f"postgresql://{OWNER}:{quote(parts[1], safe='')}@{parts[0]}:{kube.POSTGRES_PORT}/{DATABASE}"
            )
        )

    def _pooler_template(self, pooler_name: str) -> dict:
        """Sized, pinned and spread PgBouncer pods; CloudNativePG merges this into the pods it makes."""
        args = self._args
        placement = {
            **_optional("nodeSelector", dict(args.placement.node_selector) or None),
            **_optional("tolerations", [t.model_dump(exclude_none=True) for t in args.placement.tolerations] or None),
        }
        return {
            "metadata": {"labels": kube.labels(args.instance, COMPONENT)},
            "spec": {
                "containers": [
                    {
                        "name": "pgbouncer",
                        "image": images.PGBOUNCER,
                        "resources": _resources(args.settings.pooler_resources, kube.SMALL_EPHEMERAL_STORAGE),
                    }
                ],
                "affinity": {
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 100,
                                "podAffinityTerm": {
                                    "topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": {"matchLabels": {kube.CNPG_POOLER_LABEL: pooler_name}},
                                },
                            }
                        ]
                    }
                },
                **placement,
            },
        }

    def _s3_secret(self) -> k8s.core.v1.Secret:
        """The S3 key and CA both ObjectStores use: one Secret, created on first use."""
        if getattr(self, "_s3", None) is None:
            backup = self._args.backup
            self._s3 = k8s.core.v1.Secret(
                f"{self._name}-s3",
                metadata=self._meta("pg-s3"),
                string_data={
                    **_optional("ACCESS_KEY_ID", backup.access_key_id),
                    **_optional("ACCESS_SECRET_KEY", backup.secret_access_key),
                    **_optional("ca.crt", backup.ca_bundle),
                },
                opts=self._child(),
            )
        return self._s3

    def _object_store(self, role: str, bucket, prefix: str, endpoint_url: str | None, retention: str | None):
        backup = self._args.backup
        configuration: dict = {
            "destinationPath": pulumi.Output.concat("s3://", bucket, "/", prefix, "/"),
            "wal": {"compression": "gzip"},
            "data": {"compression": "gzip", "jobs": 2},
            **_optional("endpointURL", endpoint_url),
        }
        if backup is not None and (backup.access_key_id is not None or backup.ca_bundle is not None):
            s3_secret = self._s3_secret()
            if backup.access_key_id is not None:
                configuration["s3Credentials"] = {
                    "accessKeyId": {"name": s3_secret.metadata.name, "key": "ACCESS_KEY_ID"},
                    "secretAccessKey": {"name": s3_secret.metadata.name, "key": "ACCESS_SECRET_KEY"},
                }
            if backup.ca_bundle is not None:
                configuration["endpointCA"] = {"name": s3_secret.metadata.name, "key": "ca.crt"}
        if "s3Credentials" not in configuration:
            configuration["s3Credentials"] = {"inheritFromIAMRole": True}
        return k8s.apiextensions.CustomResource(
            f"{self._name}-object-store" if role == "pg-backups" else f"{self._name}-{role}",
            api_version="barmancloud.cnpg.io/v1",
            kind="ObjectStore",
            metadata=self._meta(role),
            spec={
                **_optional("retentionPolicy", retention),
                "configuration": configuration,
                # Unsized, the plugin's sidecar in every PostgreSQL pod would get the LimitRange's defaults.
                **_optional("instanceSidecarConfiguration", {
                    "resources": _resources(kube.BARMAN_SIDECAR_RESOURCES, kube.SMALL_EPHEMERAL_STORAGE),
                    "retentionPolicyIntervalSeconds": CATALOG_REFRESH_SECONDS,
                } if role == "pg-backups" else None),
            },
            opts=self._child(),
        )


def _optional(key: str, value) -> dict:
    return {} if value is None else {key: value}


def _resources(resources, ephemeral_storage=kube.AIRFLOW_EPHEMERAL_STORAGE) -> dict:
    requirements = kube.resource_requirements(resources, ephemeral_storage)
    return {"requests": requirements.requests, "limits": requirements.limits}
