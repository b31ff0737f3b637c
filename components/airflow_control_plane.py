"""AirflowControlPlane: Airflow 3 with the KubernetesExecutor, the one component that knows Airflow.

It creates the instance's secrets (Fernet key, API secret key, JWT secret) as `pulumi_random` resources, so
they are generated once, kept encrypted in state and never change unless someone rotates them on purpose
(`pulumi up --replace <urn>`); the official chart regenerates its JWT and API secrets on every upgrade
and loses its Fernet key under GitOps tools.

Settings that are not secret go into a ConfigMap of `AIRFLOW__SECTION__KEY` variables; secret ones only
into Secrets. The database migration is an ordinary Job, one per Airflow version, that runs after the
database is Ready and before any component rolls; every component also waits for it in an init container.
Each Deployment carries a checksum of exactly the config it reads, so a change rolls only its users.

Task pods (one per task) get the configuration, the connections file and the DAGs, but no database
credentials, no Fernet key or JWT secret and no service-account token: in Airflow 3 they talk to the
api-server's Execution API with a short-lived token the scheduler hands them.

Each component gets only the secrets it uses (checked against Airflow 3.3's source): the database URL and
Fernet key go to the four components; the JWT secret only to the api-server, which checks tokens, and the
scheduler, which signs them; the API secret key (it signs login sessions) only to the api-server. The
dag-processor and the triggerer run user code in-process with the execution API's auth bypassed, so they
need neither. Jobs that only touch the schema get the database URL alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components import airflow_api_access, airflow_auth, git_sync, kube
from components.component_base import type_token
from components.airflow_pods import SECRETS_OF, AirflowPods, Part
from components.airflow_settings import (
    DATABASE_URL_KEY,
    SIMPLE_AUTH_PASSWORDS,
    WEBSERVER_DIR,
    airflow_environment,
    base_url,
    fernet_key_from,
)
from components.kerberos_keytab import KerberosMounts
from components.kube import API_SERVER, DAG_PROCESSOR, DB_CLEANUP, MIGRATE, SCHEDULER, TASK, TRIGGERER
from components.settings import Settings, secret_output


@dataclass
class AirflowControlPlaneArgs:
    settings: Settings
    # The namespace's and the service accounts' names as Outputs: every object waits for the namespace, every
    # pod for its account.
    namespace: pulumi.Input[str]
    service_accounts: dict[str, pulumi.Input[str]]
    # Components whose pods mount their service-account token (those WorkerRBAC gave API rights).
    token_components: frozenset[str]
    database_url: pulumi.Input[str]
    logs_url: pulumi.Input[str]
    log_connection_id: str
    log_connection: pulumi.Input[dict]
    kerberos: KerberosMounts | None = None
    # The migration Job runs only once these are up (the database component, whose Cluster is Ready).
    migrate_after: tuple[pulumi.Resource, ...] = ()


class AirflowControlPlane(pulumi.ComponentResource):
    url: pulumi.Output[str]
    admin_password: pulumi.Output[str] | None

    def __init__(self, name: str, args: AirflowControlPlaneArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("AirflowControlPlane"), name, None, opts)
        self._args = args
        self._settings = s = args.settings
        self._namespace = args.namespace

        self._contents: dict[pulumi.Resource, object] = {}
        self._generate_secrets()
        self.config_map = self._config_map()
        self.secret = self._airflow_secret()
        self.jwt = self._one_key_secret("jwt", "AIRFLOW__API_AUTH__JWT_SECRET", self.jwt_secret)
        self.api_key = self._one_key_secret("api-key", "AIRFLOW__API__SECRET_KEY", self.api_secret_key)
        self.connections = self._connections_secret()
        self.auth_secret = self._auth_secret()
        self.kerberos_api = self._kerberos_api()
        self.git_secret = self._git_secret()
        self.s3_ca = self._s3_ca_config_map()
        self._pods = AirflowPods(
            s,
            args.service_accounts,
            args.token_components,
            args.kerberos,
            with_git_secret=self.git_secret is not None,
            with_kerberos_api=self.kerberos_api is not None,
        )
        self.service = airflow_api_access.api_service(
            f"{name}-api-server", s.instance, self._meta(API_SERVER, API_SERVER), self._opts()
        )
        self.closed = self.ingress = None
        if s.ingress.enabled:
            self.closed = airflow_api_access.closed_service(f"{name}-closed", self._meta("closed", API_SERVER), self._opts())
            self.ingress = airflow_api_access.ingress(
                f"{name}-api-server",
                s.ingress,
                self._meta(API_SERVER, API_SERVER, annotations=dict(s.ingress.annotations) or None),
                self.service,
                self.closed,
                self._opts(),
            )
        self.url = pulumi.Output.from_input(base_url(s))
        self.migration = self._migration_job()
        self.pod_template = self._pod_template_config_map()
        parts = self._pods.parts()
        self.deployments = {part.component: self._deployment(part) for part in parts}
        self.disruption_budgets = {part.component: self._disruption_budget(part) for part in parts if part.replicas > 1}
        self.db_cleanup = self._db_cleanup_cron_job() if self._settings.db_cleanup.enabled else None
        self.register_outputs(
            {
                "url": self.url,
                "namespace": self._namespace,
                "admin_password": self.admin_password,
                "migration_job": self.migration.metadata.name,
            }
        )

    # --- secrets and configuration -------------------------------------------------------------------------

    def _opts(self, **extra) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **extra)

    def _meta(self, role: str, component: str = "airflow", annotations=None) -> k8s.meta.v1.ObjectMetaArgs:
        return kube.object_meta(self._settings.instance, component, self._namespace, self._settings.name(role), annotations)

    def _generate_secrets(self) -> None:
        name = self._name
        # Fernet wants URL-safe base64 of 32 random bytes. Not from RandomBytes: its resource ID is its base64
        # value, and IDs are stored unencrypted in the state. A RandomPassword's ID is not its value, and 64
        # characters of 62 symbols hold more than the 256 bits the digest keeps.
        self.fernet_key = self._password("fernet-key", 64).apply(fernet_key_from)
        self.api_secret_key = self._password("api-secret-key", 64)
        # One JWT secret for the api-server and the scheduler: tokens signed by one must verify in the other.
        self.jwt_secret = self._password("jwt-secret", 64)
        self.admin_password = None if airflow_auth.uses_fab(self._settings.auth) else self._password("admin-password", 24)

    def _password(self, role: str, length: int) -> pulumi.Output[str]:
        password = random.RandomPassword(f"{self._name}-{role}", length=length, special=False, opts=self._opts())
        return pulumi.Output.secret(password.result)

    def _config_map(self) -> k8s.core.v1.ConfigMap:
        data = pulumi.Output.all(self._args.logs_url).apply(
            lambda values: {
                **airflow_environment(self._settings, self._args.log_connection_id, self._args.kerberos),
                "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": values[0],
            }
        )
        return self._kept(
            k8s.core.v1.ConfigMap(f"{self._name}-config", metadata=self._meta("config"), data=data, opts=self._opts()), data
        )

    def _airflow_secret(self) -> k8s.core.v1.Secret:
        data = {DATABASE_URL_KEY: self._args.database_url, "AIRFLOW__CORE__FERNET_KEY": self.fernet_key}
        return self._kept(
            k8s.core.v1.Secret(f"{self._name}-secrets", metadata=self._meta("secrets"), string_data=data, opts=self._opts()),
            data,
        )

    def _one_key_secret(self, role: str, key: str, value: pulumi.Output[str]) -> k8s.core.v1.Secret:
        data = {key: value}
        return self._kept(
            k8s.core.v1.Secret(f"{self._name}-{role}", metadata=self._meta(role), string_data=data, opts=self._opts()), data
        )

    def _connections_secret(self) -> k8s.core.v1.Secret:
        """The LocalFilesystemBackend's files: the log connection plus the stack's own connections."""
        extra = secret_output(self._settings.airflow_connections) or pulumi.Output.from_input("{}")

        def files(values) -> dict[str, str]:
            log_connection, extra_text = values
            connections = {**json.loads(extra_text), self._args.log_connection_id: log_connection}
            return {"connections.json": json.dumps(connections, indent=2, sort_keys=True), "variables.json": "{}"}

        data = pulumi.Output.secret(pulumi.Output.all(self._args.log_connection, extra).apply(files))
        return self._kept(
            k8s.core.v1.Secret(
                f"{self._name}-connections", metadata=self._meta("connections"), string_data=data, opts=self._opts()
            ),
            data,
        )

    def _auth_secret(self) -> k8s.core.v1.Secret:
        s = self._settings
        if airflow_auth.uses_fab(s.auth):
            data: dict = {"webserver_config.py": airflow_auth.webserver_config(s.auth, WEBSERVER_DIR)}
            if s.auth.mode == "oidc":
                data["oidc-client-secret"] = secret_output(s.auth_oidc_client_secret)
            if s.auth.mode == "ldap" and s.auth_ldap_bind_password is not None:
                data["ldap-bind-password"] = secret_output(s.auth_ldap_bind_password)
        else:
            data = {
                SIMPLE_AUTH_PASSWORDS: self.admin_password.apply(
                    lambda password: json.dumps({airflow_auth.ADMIN_USER: password})
                )
            }
        return self._kept(
            k8s.core.v1.Secret(
                f"{self._name}-webserver-config", metadata=self._meta("webserver-config"), string_data=data, opts=self._opts()
            ),
            data,
        )

    def _kerberos_api(self) -> tuple | None:
        """The api-server's SPNEGO plugin (components/airflow_plugins/kerberos_api.py) and HTTP keytab."""
        kerberos = self._args.kerberos
        if kerberos is None or kerberos.api_keytab is None:
            return None
        data = {"kerberos_api.py": airflow_auth.kerberos_api_plugin()}
        plugin = self._kept(
            k8s.core.v1.ConfigMap(f"{self._name}-api-plugins", metadata=self._meta("api-plugins"), data=data, opts=self._opts()),
            data,
        )
        return plugin, self._kept(*kerberos.api_keytab)

    def _git_secret(self) -> k8s.core.v1.Secret | None:
        data = git_sync.secret_data(self._settings)
        if data is None:
            return None
        return self._kept(
            k8s.core.v1.Secret(f"{self._name}-git-sync", metadata=self._meta("git-sync"), string_data=data, opts=self._opts()),
            data,
        )

    def _s3_ca_config_map(self) -> k8s.core.v1.ConfigMap | None:
        # A CA bundle is public material, so a ConfigMap is the right home for it.
        if self._settings.s3.ca_bundle is None:
            return None
        data = {"ca.crt": self._settings.s3.ca_bundle}
        return self._kept(
            k8s.core.v1.ConfigMap(f"{self._name}-s3-ca", metadata=self._meta("s3"), data=data, opts=self._opts()), data
        )

    def _pod_template_config_map(self) -> k8s.core.v1.ConfigMap:
        # The template names the Airflow image, and the running scheduler reads it for every task pod it starts:
        # changed only after the migration, no task pod of a new version starts on the old schema.
        template = pulumi.Output.from_input(self._args.service_accounts[TASK]).apply(
            lambda account: yaml.safe_dump(self._pods.task_pod_template(account), sort_keys=False)
        )
        data = {"pod_template.yaml": template}
        return self._kept(
            k8s.core.v1.ConfigMap(
                f"{self._name}-pod-template", metadata=self._meta("pod-template"), data=data,
                opts=self._opts(depends_on=[self.migration]),
            ),
            data,
        )

    # --- pods ----------------------------------------------------------------------------------------------

    def _secrets_of(self, component: str) -> list:
        objects = {"secrets": self.secret, "jwt": self.jwt, "api-key": self.api_key}
        return [objects[role] for role in SECRETS_OF.get(component, ())]

    def _reads(self, component: str) -> tuple:
        """What `component` reads besides the common config and its Secrets: a change to any of it rolls only
        this one."""
        return {
            API_SERVER: (self.auth_secret, *(self.kerberos_api or ())),
            SCHEDULER: (self.pod_template,),
            DAG_PROCESSOR: (self.git_secret,),
            TRIGGERER: (self.git_secret,),
        }[component]

    def _kept(self, obj, contents):
        """Remembers what the program put into a ConfigMap or Secret, for the checksum of the pods reading it."""
        self._contents[obj] = contents
        return obj

    def _checksum(self, objects) -> pulumi.Output[str]:
        """A digest of what a pod reads, so that a change rolls exactly the pods that read it. It hashes the
        program's own inputs, not the objects' outputs: the provider folds `string_data` into `data`, unknown
        in a preview and empty afterwards. It is computed from secret values but reveals none of them, so it
        is stored in the clear: a secret annotation would hide every diff of the Deployment."""
        data = [self._contents[obj] for obj in objects if obj is not None]
        digest = pulumi.Output.all(*data).apply(
            lambda values: hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()
        )
        return pulumi.Output.unsecret(digest)

    def _deployment(self, part: Part) -> k8s.apps.v1.Deployment:
        s = self._settings
        volumes, mounts = self._pods.volumes(part.component)
        volumes += list(part.extra_volumes)
        mounts += list(part.extra_mounts)
        containers = [
            k8s.core.v1.ContainerArgs(
                name=part.component,
                image=s.image,
                image_pull_policy=s.image_pull_policy,
                args=part.args,
                env_from=self._pods.env_from(part.component),
                env=self._pods.env(part.component),
                ports=part.ports,
                resources=kube.resource_requirements(part.resources),
                security_context=kube.restricted_container_security_context(),
                volume_mounts=mounts,
                **part.probes,
            )
        ]
        if part.parses_dags and s.git_sync.enabled:
            containers.append(self._pods.git_sync_container(one_time=False))
        checksum = self._checksum(
            [self.config_map, self.connections, self.s3_ca, *self._secrets_of(part.component), *self._reads(part.component)]
        )
        labels = kube.labels(s.instance, part.component, self._pods.team_label())
        return k8s.apps.v1.Deployment(
            f"{self._name}-{part.component}",
            metadata=self._meta(part.component, part.component),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=part.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector_labels(s.instance, part.component)),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations={"checksum/config": checksum}),
                    spec=self._pods.pod_spec(
                        part.component,
                        containers,
                        volumes,
                        init_containers=[self._pods.wait_for_migrations(), *part.init_containers],
                        anti_affinity=part.replicas > 1,
                    ),
                ),
            ),
            opts=self._opts(depends_on=[self.migration]),
        )

    def _disruption_budget(self, part: Part) -> k8s.policy.v1.PodDisruptionBudget:
        return kube.disruption_budget(
            f"{self._name}-{part.component}",
            self._meta(part.component, part.component),
            kube.selector_labels(self._settings.instance, part.component),
            self._opts(),
        )

    def _migration_job(self) -> k8s.batch.v1.Job:
        s = self._settings
        volumes, _ = kube.scratch_volumes()
        container = self._pods.airflow_command(MIGRATE, s.scheduler.resources, args=["db", "migrate"])
        name = kube.migration_job_name(s.instance, s.airflow_version)
        return k8s.batch.v1.Job(
            f"{self._name}-migrate",
            metadata=kube.object_meta(s.instance, MIGRATE, self._namespace, name),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=6,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels(s.instance, MIGRATE)),
                    spec=self._pods.pod_spec(MIGRATE, [container], volumes, restart_policy="Never"),
                ),
            ),
            # The name carries the Airflow version, so an upgrade creates a new Job (and migrates once)
            # instead of trying to patch an immutable finished one.
            opts=self._opts(
                depends_on=[self.config_map, self.secret, *self._args.migrate_after], delete_before_replace=True
            ),
        )

    def db_cleanup_command(self) -> str:
        """`airflow db clean` for rows older than the retention, computed when the job runs."""
        cleanup = self._settings.db_cleanup
        command = (
            "exec airflow db clean --yes --clean-before-timestamp "
            f'"$(date -u -d "@$(( $(date +%s) - {cleanup.retention_days} * 86400 ))" +%Y-%m-%dT%H:%M:%S+00:00)"'
        )
        if cleanup.skip_archive:
            command += " --skip-archive"
        if cleanup.tables:
            command += " --tables " + ",".join(cleanup.tables)
        return command

    def _db_cleanup_cron_job(self) -> k8s.batch.v1.CronJob:
        """Upkeep without a maintenance DAG: old task instances, logs rows and XComs leave the database."""
        s = self._settings
        volumes, _ = kube.scratch_volumes()
        container = self._pods.airflow_command(
            "db-clean", s.triggerer.resources, command=["sh", "-c", self.db_cleanup_command()]
        )
        return k8s.batch.v1.CronJob(
            f"{self._name}-db-cleanup",
            metadata=kube.object_meta(s.instance, MIGRATE, self._namespace, s.name("cleanup")),
            spec=k8s.batch.v1.CronJobSpecArgs(
                schedule=s.db_cleanup.schedule,
                concurrency_policy="Forbid",
                successful_jobs_history_limit=1,
                failed_jobs_history_limit=3,
                job_template=k8s.batch.v1.JobTemplateSpecArgs(
                    spec=k8s.batch.v1.JobSpecArgs(
                        backoff_limit=2,
                        # A clean-up stuck on a lock would otherwise hold its pod (and quota) until someone looks.
                        active_deadline_seconds=s.db_cleanup.deadline_seconds,
                        template=k8s.core.v1.PodTemplateSpecArgs(
                            metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels(s.instance, DB_CLEANUP)),
                            # The migration job's account: the one that owns schema-level work.
                            spec=self._pods.pod_spec(MIGRATE, [container], volumes, restart_policy="Never"),
                        ),
                    )
                ),
            ),
            opts=self._opts(depends_on=[self.migration]),
        )
