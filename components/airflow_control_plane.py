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

import base64
import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components import airflow_auth, git_sync, kube
from components.config import Settings, secret_output
from components.worker_rbac import API_SERVER, DAG_PROCESSOR, MIGRATE, SCHEDULER, TASK, TRIGGERER

POD_TEMPLATE_DIR = f"{kube.AIRFLOW_HOME}/pod-templates"
POD_TEMPLATE_FILE = f"{POD_TEMPLATE_DIR}/pod_template.yaml"
CONNECTIONS_DIR = f"{kube.AIRFLOW_HOME}/secrets"
WEBSERVER_DIR = f"{kube.AIRFLOW_HOME}/webserver"
# SimpleAuthManager opens its passwords file read-write ("a+" at start-up, "r+" at every login), and a Secret
# volume is read-only: the api-server works on a copy in a writable in-memory volume.
SIMPLE_AUTH_DIR = f"{kube.AIRFLOW_HOME}/simple-auth"
SIMPLE_AUTH_PASSWORDS = "simple_auth_manager_passwords.json"
S3_CA_DIR = f"{kube.AIRFLOW_HOME}/s3-ca"
DAGS_DIR = f"{kube.AIRFLOW_HOME}/dags"
SECRETS_BACKEND = "airflow.secrets.local_filesystem.LocalFilesystemBackend"
DATABASE_URL_KEY = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"


@dataclass
class KerberosMounts:
    """What KerberosKeytab hands to consumers of the ticket."""

    volumes: list[k8s.core.v1.VolumeArgs]
    volume_mounts: list[k8s.core.v1.VolumeMountArgs]
    env: list[k8s.core.v1.EnvVarArgs]
    principal: str
    ccache_path: str


@dataclass
class AirflowControlPlaneArgs:
    settings: Settings
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


@dataclass
class _Part:
    """One long-running Airflow component."""

    component: str
    args: list[str]
    replicas: int
    resources: object
    probes: dict
    ports: list[k8s.core.v1.ContainerPortArgs] | None = None
    parses_dags: bool = False
    extra_volumes: tuple = ()
    extra_mounts: tuple = ()
    # What this component reads besides the common config: a change to any of it rolls only this one.
    reads: tuple = ()
    init_containers: tuple = ()


def fernet_key_from(secret: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()).decode()


class AirflowControlPlane(pulumi.ComponentResource):
    url: pulumi.Output[str]
    admin_password: pulumi.Output[str] | None

    def __init__(self, name: str, args: AirflowControlPlaneArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("airflow-platform:index:AirflowControlPlane", name, None, opts)
        self._args = args
        self._settings = s = args.settings
        self._namespace = s.kubernetes_namespace

        self._contents: dict[pulumi.Resource, object] = {}
        self._generate_secrets()
        self.config_map = self._config_map()
        self.secret = self._airflow_secret()
        self.jwt = self._one_key_secret("jwt", "AIRFLOW__API_AUTH__JWT_SECRET", self.jwt_secret)
        self.api_key = self._one_key_secret("api-key", "AIRFLOW__API__SECRET_KEY", self.api_secret_key)
        self.connections = self._connections_secret()
        self.auth_secret = self._auth_secret()
        self.git_secret = self._git_secret()
        self.s3_ca = self._s3_ca_config_map()
        self.pod_template = self._pod_template_config_map()
        self.service = self._api_service()
        self.closed = self._closed_service() if s.ingress.enabled else None
        self.ingress = self._ingress()
        self.url = pulumi.Output.from_input(self.base_url)
        self.migration = self._migration_job()
        parts = self._parts()
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

    @property
    def api_service_host(self) -> str:
        return f"{self._settings.name('api-server')}.{self._namespace}.svc"

    @property
    def base_url(self) -> str:
        ingress = self._settings.ingress
        if ingress.enabled:
            scheme = "https" if ingress.tls_secret_name else "http"
            return f"{scheme}://{ingress.host}{ingress.path.rstrip('/')}"
        return f"http://{self.api_service_host}:{kube.API_SERVER_PORT}"

    def airflow_environment(self) -> dict[str, str]:
        """Every non-secret Airflow setting, as the `AIRFLOW__SECTION__KEY` variables the ConfigMap holds."""
        s = self._settings
        env = {
            "AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": self.dags_folder,
            "AIRFLOW__CORE__AUTH_MANAGER": (
                airflow_auth.FAB_AUTH_MANAGER if airflow_auth.uses_fab(s.auth) else airflow_auth.SIMPLE_AUTH_MANAGER
            ),
            # Task pods reach the Execution API through the Service, not through the public URL.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
                f"http://{self.api_service_host}:{kube.API_SERVER_PORT}/execution/"
            ),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__INSTANCE_NAME": s.instance_title or s.instance,
            "AIRFLOW__FAB__NAVBAR_COLOR": s.navbar_color,
            "AIRFLOW__API__WORKERS": str(s.api_server.workers),
            # PgBouncer in transaction mode does the pooling; a second pool in every process only holds
            # server connections hostage.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED": "False",
            "AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE": self._namespace,
            "AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE": POD_TEMPLATE_FILE,
            "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_REPOSITORY": s.airflow_image,
            "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG": s.image.rsplit(":", 1)[1],
            "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_PODS_CREATION_BATCH_SIZE": str(s.executor.pod_creation_batch_size),
            "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS": "True",
            # A pod refused because the namespace quota is full waits for room (retried every scheduler loop)
            # instead of failing its task; taskQueuedTimeoutSeconds still bounds the wait.
            "AIRFLOW__KUBERNETES_EXECUTOR__TASK_PUBLISH_MAX_RETRIES": "-1",
            "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS_ON_FAILURE": str(s.executor.delete_worker_pods_on_failure),
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": f"{s.executor.task_queued_timeout_seconds}.0",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(kube.SCHEDULER_HEALTH_PORT),
            "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
            "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": self._args.log_connection_id,
            "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "True",
            "AIRFLOW__SECRETS__BACKEND": SECRETS_BACKEND,
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(
                {
                    "connections_file_path": f"{CONNECTIONS_DIR}/connections.json",
                    "variables_file_path": f"{CONNECTIONS_DIR}/variables.json",
                }
            ),
            # The image's entrypoint would otherwise poll the database before every command, task pods
            # (which have no database) included; the migration init container does the waiting.
            "CONNECTION_CHECK_MAX_COUNT": "0",
        }
        if airflow_auth.uses_fab(s.auth):
            env["AIRFLOW__FAB__CONFIG_FILE"] = f"{WEBSERVER_DIR}/webserver_config.py"
        else:
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{airflow_auth.ADMIN_USER}:admin"
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = f"{SIMPLE_AUTH_DIR}/{SIMPLE_AUTH_PASSWORDS}"
        if self._args.kerberos is not None:
            env["AIRFLOW__CORE__SECURITY"] = "kerberos"
            env["AIRFLOW__KERBEROS__PRINCIPAL"] = self._args.kerberos.principal
            env["AIRFLOW__KERBEROS__CCACHE"] = self._args.kerberos.ccache_path
        return env

    @property
    def dags_folder(self) -> str:
        git = self._settings.git_sync
        if not git.enabled:
            return DAGS_DIR
        return "/".join(filter(None, [DAGS_DIR, "repo", git.sub_path.strip("/")]))

    def _config_map(self) -> k8s.core.v1.ConfigMap:
        data = pulumi.Output.all(self._args.logs_url).apply(
            lambda values: {**self.airflow_environment(), "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": values[0]}
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

    # --- pods ----------------------------------------------------------------------------------------------

    def _volumes(self, component: str) -> tuple[list[k8s.core.v1.VolumeArgs], list[k8s.core.v1.VolumeMountArgs]]:
        """Volumes and mounts every Airflow container of `component` has, task pods included."""
        s = self._settings
        volumes, mounts = kube.scratch_volumes()
        volumes.append(
            k8s.core.v1.VolumeArgs(
                name="connections", secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=s.name("connections"))
            )
        )
        mounts.append(k8s.core.v1.VolumeMountArgs(name="connections", mount_path=CONNECTIONS_DIR, read_only=True))
        if s.git_sync.enabled:
            volumes += git_sync.volumes(s, with_secret=self.git_secret is not None)
            mounts.append(k8s.core.v1.VolumeMountArgs(name="dags", mount_path=DAGS_DIR, read_only=True))
        if s.s3.ca_bundle is not None:
            volumes.append(
                k8s.core.v1.VolumeArgs(name="s3-ca", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=s.name("s3")))
            )
            mounts.append(k8s.core.v1.VolumeMountArgs(name="s3-ca", mount_path=S3_CA_DIR, read_only=True))
        kerberos = self._args.kerberos
        if kerberos is not None and component in (SCHEDULER, API_SERVER, TASK):
            volumes += kerberos.volumes
            mounts += kerberos.volume_mounts
        return volumes, mounts

    def _env(self, component: str) -> list[k8s.core.v1.EnvVarArgs]:
        kerberos = self._args.kerberos
        if kerberos is not None and component in (SCHEDULER, API_SERVER, TASK):
            return list(kerberos.env)
        return []

    # Which of the instance's Secrets each component reads whole; see the module's docstring for why.
    SECRETS_OF = {
        API_SERVER: ("secrets", "jwt", "api-key"),
        SCHEDULER: ("secrets", "jwt"),
        DAG_PROCESSOR: ("secrets",),
        TRIGGERER: ("secrets",),
    }

    def _secrets_of(self, component: str) -> list:
        objects = {"secrets": self.secret, "jwt": self.jwt, "api-key": self.api_key}
        return [objects[role] for role in self.SECRETS_OF.get(component, ())]

    def _env_from(self, component: str) -> list[k8s.core.v1.EnvFromSourceArgs]:
        s = self._settings
        sources = [k8s.core.v1.EnvFromSourceArgs(config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(name=s.name("config")))]
        for role in self.SECRETS_OF.get(component, ()):
            sources.append(k8s.core.v1.EnvFromSourceArgs(secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=s.name(role))))
        return sources

    def _database_url_env(self) -> list[k8s.core.v1.EnvVarArgs]:
        """The database URL alone, for containers that only touch the schema."""
        return [
            k8s.core.v1.EnvVarArgs(
                name=DATABASE_URL_KEY,
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=self._settings.name("secrets"), key=DATABASE_URL_KEY)
                ),
            )
        ]

    def _git_sync_container(self, one_time: bool) -> k8s.core.v1.ContainerArgs:
        return git_sync.container(self._settings, one_time, with_secret=self.git_secret is not None)

    def _wait_for_migrations(self) -> k8s.core.v1.ContainerArgs:
        return self._airflow_command(
            "wait-for-migrations",
            self._settings.triggerer.resources,
            args=["db", "check-migrations", "--migration-wait-timeout=600"],
        )

    def _pod_spec(
        self,
        component: str,
        containers: list[k8s.core.v1.ContainerArgs],
        volumes: list[k8s.core.v1.VolumeArgs],
        init_containers: list[k8s.core.v1.ContainerArgs] | None = None,
        restart_policy: str | None = None,
        anti_affinity: bool = False,
    ) -> k8s.core.v1.PodSpecArgs:
        s = self._settings
        affinity = None
        if anti_affinity:
            affinity = k8s.core.v1.AffinityArgs(
                pod_anti_affinity=k8s.core.v1.PodAntiAffinityArgs(
                    preferred_during_scheduling_ignored_during_execution=[
                        k8s.core.v1.WeightedPodAffinityTermArgs(
                            weight=100,
                            pod_affinity_term=k8s.core.v1.PodAffinityTermArgs(
                                topology_key="kubernetes.io/hostname",
                                label_selector=k8s.meta.v1.LabelSelectorArgs(
                                    match_labels=kube.selector_labels(s.instance, component)
                                ),
                            ),
                        )
                    ]
                )
            )
        return k8s.core.v1.PodSpecArgs(
            service_account_name=s.name(component),
            automount_service_account_token=component in self._args.token_components,
            security_context=kube.restricted_pod_security_context(),
            init_containers=init_containers or None,
            containers=containers,
            volumes=volumes,
            restart_policy=restart_policy,
            node_selector=dict(s.placement.node_selector) or None,
            tolerations=kube.tolerations(s.placement) or None,
            affinity=affinity,
        )

    def _parts(self) -> list[_Part]:
        s = self._settings
        port = kube.API_SERVER_PORT

        def jobs_check(job_type: str) -> dict:
            command = k8s.core.v1.ExecActionArgs(
                command=["sh", "-c", f'exec airflow jobs check --job-type {job_type} --local --hostname "$HOSTNAME"']
            )
            return {
                # Unready while its job has no recent heartbeat (cannot reach the database, stuck on a DAG): a
                # rolling update waits for the new pod instead of taking the old one away.
                "readiness_probe": k8s.core.v1.ProbeArgs(
                    exec_=command, initial_delay_seconds=30, period_seconds=60, timeout_seconds=45, failure_threshold=2
                ),
                "liveness_probe": k8s.core.v1.ProbeArgs(
                    exec_=command, initial_delay_seconds=30, period_seconds=60, timeout_seconds=45, failure_threshold=5
                ),
            }

        http = lambda path, port_: k8s.core.v1.HTTPGetActionArgs(path=path, port=port_)  # noqa: E731
        api_args = ["api-server", "--port", str(port), "--workers", str(s.api_server.workers)]
        if s.ingress.enabled:
            api_args.append("--proxy-headers")
        auth_volume = k8s.core.v1.VolumeArgs(
            name="webserver-config",
            secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=s.name("webserver-config"), default_mode=0o440),
        )
        auth_mount = k8s.core.v1.VolumeMountArgs(name="webserver-config", mount_path=WEBSERVER_DIR, read_only=True)
        api_volumes, api_mounts, api_init = [auth_volume], [auth_mount], []
        if not airflow_auth.uses_fab(s.auth):
            simple_auth_mount = k8s.core.v1.VolumeMountArgs(name="simple-auth", mount_path=SIMPLE_AUTH_DIR)
            api_volumes.append(
                k8s.core.v1.VolumeArgs(
                    name="simple-auth", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory", size_limit="1Mi")
                )
            )
            api_mounts.append(simple_auth_mount)
            api_init.append(
                k8s.core.v1.ContainerArgs(
                    name="copy-simple-auth-passwords",
                    image=s.image,
                    image_pull_policy=s.image_pull_policy,
                    command=[
                        "install", "-m", "0600",
                        f"{WEBSERVER_DIR}/{SIMPLE_AUTH_PASSWORDS}", f"{SIMPLE_AUTH_DIR}/{SIMPLE_AUTH_PASSWORDS}",
                    ],
                    volume_mounts=[auth_mount, simple_auth_mount],
                    resources=kube.resource_requirements(kube.COPY_FILE_RESOURCES, kube.SMALL_EPHEMERAL_STORAGE),
                    security_context=kube.restricted_container_security_context(),
                )
            )
        pod_template_volume = k8s.core.v1.VolumeArgs(
            name="pod-template", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=s.name("pod-template"))
        )
        pod_template_mount = k8s.core.v1.VolumeMountArgs(name="pod-template", mount_path=POD_TEMPLATE_DIR, read_only=True)
        return [
            _Part(
                API_SERVER,
                api_args,
                s.api_server.replicas,
                s.api_server.resources,
                {
                    "startup_probe": k8s.core.v1.ProbeArgs(http_get=http("/api/v2/version", port), period_seconds=10, failure_threshold=30),
                    "readiness_probe": k8s.core.v1.ProbeArgs(http_get=http("/api/v2/version", port), period_seconds=10),
                    "liveness_probe": k8s.core.v1.ProbeArgs(
                        http_get=http("/api/v2/version", port), period_seconds=30, timeout_seconds=10, failure_threshold=5
                    ),
                },
                ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=port)],
                extra_volumes=tuple(api_volumes),
                extra_mounts=tuple(api_mounts),
                reads=(self.auth_secret,),
                init_containers=tuple(api_init),
            ),
            _Part(
                SCHEDULER,
                ["scheduler"],
                s.scheduler.replicas,
                s.scheduler.resources,
                {
                    "startup_probe": k8s.core.v1.ProbeArgs(
                        http_get=http("/health", kube.SCHEDULER_HEALTH_PORT), period_seconds=10, failure_threshold=30
                    ),
                    "readiness_probe": k8s.core.v1.ProbeArgs(
                        http_get=http("/health", kube.SCHEDULER_HEALTH_PORT), period_seconds=15, timeout_seconds=10
                    ),
                    "liveness_probe": k8s.core.v1.ProbeArgs(
                        http_get=http("/health", kube.SCHEDULER_HEALTH_PORT), period_seconds=30, timeout_seconds=10, failure_threshold=5
                    ),
                },
                ports=[k8s.core.v1.ContainerPortArgs(name="health", container_port=kube.SCHEDULER_HEALTH_PORT)],
                extra_volumes=(pod_template_volume,),
                extra_mounts=(pod_template_mount,),
                reads=(self.pod_template,),
            ),
            _Part(DAG_PROCESSOR, ["dag-processor"], s.dag_processor.replicas, s.dag_processor.resources,
                  jobs_check("DagProcessorJob"), parses_dags=True, reads=(self.git_secret,)),
            # Its log server would check requests with the API secret key, which it does not get (nor should:
            # it runs user code); running triggers' logs reach the UI from S3 once uploaded.
            _Part(TRIGGERER, ["triggerer", "--skip-serve-logs"], s.triggerer.replicas, s.triggerer.resources,
                  jobs_check("TriggererJob"), parses_dags=True, reads=(self.git_secret,)),
        ]

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

    def _deployment(self, part: _Part) -> k8s.apps.v1.Deployment:
        s = self._settings
        volumes, mounts = self._volumes(part.component)
        volumes += list(part.extra_volumes)
        mounts += list(part.extra_mounts)
        containers = [
            k8s.core.v1.ContainerArgs(
                name=part.component,
                image=s.image,
                image_pull_policy=s.image_pull_policy,
                args=part.args,
                env_from=self._env_from(part.component),
                env=self._env(part.component) or None,
                ports=part.ports,
                resources=kube.resource_requirements(part.resources),
                security_context=kube.restricted_container_security_context(),
                volume_mounts=mounts,
                **part.probes,
            )
        ]
        if part.parses_dags and s.git_sync.enabled:
            containers.append(self._git_sync_container(one_time=False))
        checksum = self._checksum(
            [self.config_map, self.connections, self.s3_ca, *self._secrets_of(part.component), *part.reads]
        )
        labels = kube.labels(s.instance, part.component, self._team_label())
        return k8s.apps.v1.Deployment(
            f"{self._name}-{part.component}",
            metadata=self._meta(part.component, part.component),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=part.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector_labels(s.instance, part.component)),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations={"checksum/config": checksum}),
                    spec=self._pod_spec(
                        part.component,
                        containers,
                        volumes,
                        init_containers=[self._wait_for_migrations(), *part.init_containers],
                        anti_affinity=part.replicas > 1,
                    ),
                ),
            ),
            opts=self._opts(depends_on=[self.migration]),
        )

    def _disruption_budget(self, part: _Part) -> k8s.policy.v1.PodDisruptionBudget:
        s = self._settings
        return k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-{part.component}",
            metadata=self._meta(part.component, part.component),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector_labels(s.instance, part.component)),
            ),
            opts=self._opts(),
        )

    def _team_label(self) -> dict[str, str]:
        return {"airflow-platform/team": self._settings.team} if self._settings.team else {}

    def _airflow_command(self, name: str, resources, args=None, command=None) -> k8s.core.v1.ContainerArgs:
        """A container that runs one schema-level Airflow command (jobs, init containers): the configuration
        and the database URL, no other secret."""
        s = self._settings
        _, mounts = kube.scratch_volumes()
        return k8s.core.v1.ContainerArgs(
            name=name,
            image=s.image,
            image_pull_policy=s.image_pull_policy,
            args=args,
            command=command,
            env_from=self._env_from(MIGRATE),
            env=self._database_url_env(),
            resources=kube.resource_requirements(resources),
            security_context=kube.restricted_container_security_context(),
            volume_mounts=mounts,
        )

    def _migration_job(self) -> k8s.batch.v1.Job:
        s = self._settings
        volumes, _ = kube.scratch_volumes()
        container = self._airflow_command("migrate", s.scheduler.resources, args=["db", "migrate"])
        name = kube.migration_job_name(s.instance, s.airflow_version)
        return k8s.batch.v1.Job(
            f"{self._name}-migrate",
            metadata=kube.object_meta(s.instance, MIGRATE, self._namespace, name),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=6,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels(s.instance, MIGRATE)),
                    spec=self._pod_spec(MIGRATE, [container], volumes, restart_policy="Never"),
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
        container = self._airflow_command(
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
                            metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels(s.instance, "db-cleanup")),
                            # The migration job's account: the one that owns schema-level work.
                            spec=self._pod_spec(MIGRATE, [container], volumes, restart_policy="Never"),
                        ),
                    )
                ),
            ),
            opts=self._opts(depends_on=[self.migration]),
        )

    def task_pod_template(self) -> dict:
        """The pod every task runs in, as the KubernetesExecutor reads it from `pod_template_file`."""
        s = self._settings
        volumes, mounts = self._volumes(TASK)
        base = k8s.core.v1.ContainerArgs(
            # The executor finds the task's container by this name and position.
            name="base",
            image=s.image,
            image_pull_policy=s.image_pull_policy,
            env_from=self._env_from(TASK),
            env=self._env(TASK) or None,
            resources=kube.resource_requirements(s.task_pod.resources),
            security_context=kube.restricted_container_security_context(),
            volume_mounts=mounts,
        )
        init = [self._git_sync_container(one_time=True)] if s.git_sync.enabled else None
        spec = self._pod_spec(TASK, [base], volumes, init_containers=init, restart_policy="Never")
        # The executor adds dag_id, task_id, run_id and try_number labels; ours add who pays for the pod.
        labels = kube.labels(s.instance, TASK, self._team_label())
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "task-pod", "labels": labels},
            "spec": kube.to_manifest(spec),
        }

    def _pod_template_config_map(self) -> k8s.core.v1.ConfigMap:
        data = {"pod_template.yaml": yaml.safe_dump(self.task_pod_template(), sort_keys=False)}
        return self._kept(
            k8s.core.v1.ConfigMap(f"{self._name}-pod-template", metadata=self._meta("pod-template"), data=data, opts=self._opts()),
            data,
        )

    # --- reaching the api-server ---------------------------------------------------------------------------

    def _api_service(self) -> k8s.core.v1.Service:
        s = self._settings
        return k8s.core.v1.Service(
            f"{self._name}-api-server",
            metadata=self._meta(API_SERVER, API_SERVER),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=kube.selector_labels(s.instance, API_SERVER),
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=kube.API_SERVER_PORT, target_port="http")],
            ),
            opts=self._opts(),
        )

    def _closed_service(self) -> k8s.core.v1.Service:
        """A Service that selects no pod: the Ingress sends the Execution API's path here, so the public
        endpoint answers it with an error. Task pods reach the Execution API through the api-server Service."""
        return k8s.core.v1.Service(
            f"{self._name}-closed",
            metadata=self._meta("closed", API_SERVER),
            spec=k8s.core.v1.ServiceSpecArgs(ports=[k8s.core.v1.ServicePortArgs(name="http", port=kube.API_SERVER_PORT)]),
            opts=self._opts(),
        )

    @property
    def execution_api_path(self) -> str:
        return f"{self._settings.ingress.path.rstrip('/')}/execution"

    def _ingress(self) -> k8s.networking.v1.Ingress | None:
        ingress = self._settings.ingress
        if not ingress.enabled:
            return None
        return k8s.networking.v1.Ingress(
            f"{self._name}-api-server",
            metadata=self._meta(API_SERVER, API_SERVER, annotations=dict(ingress.annotations) or None),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name=ingress.class_name,
                tls=[k8s.networking.v1.IngressTLSArgs(hosts=[ingress.host], secret_name=ingress.tls_secret_name)]
                if ingress.tls_secret_name
                else None,
                rules=[
                    k8s.networking.v1.IngressRuleArgs(
                        host=ingress.host,
                        http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                            # The longest matching prefix wins, so /execution goes nowhere and the rest to the UI/API.
                            paths=[
                                self._ingress_path(ingress.path, self.service),
                                self._ingress_path(self.execution_api_path, self.closed),
                            ]
                        ),
                    )
                ],
            ),
            opts=self._opts(),
        )

    @staticmethod
    def _ingress_path(path: str, service: k8s.core.v1.Service) -> k8s.networking.v1.HTTPIngressPathArgs:
        return k8s.networking.v1.HTTPIngressPathArgs(
            path=path,
            path_type="Prefix",
            backend=k8s.networking.v1.IngressBackendArgs(
                service=k8s.networking.v1.IngressServiceBackendArgs(
                    name=service.metadata.name, port=k8s.networking.v1.ServiceBackendPortArgs(name="http")
                )
            ),
        )
