"""The pods of an Airflow instance: what every Airflow container mounts and reads, the long-running
components' containers and probes, the containers that run one schema-level command, and the pod template
every task runs in.

Only Kubernetes *Args* are built here; AirflowControlPlane makes the objects, and its docstring says which
component gets which secret and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import airflow_auth, git_sync, kube
from components.airflow_settings import (
    CONNECTIONS_DIR,
    DAGS_DIR,
    DATABASE_URL_KEY,
    PLUGINS_DIR,
    POD_TEMPLATE_DIR,
    S3_CA_DIR,
    SIMPLE_AUTH_DIR,
    SIMPLE_AUTH_PASSWORDS,
    WEBSERVER_DIR,
)
from components.kerberos_keytab import KerberosMounts
from components.kube import API_SERVER, DAG_PROCESSOR, MIGRATE, SCHEDULER, TASK, TRIGGERER
from components.settings import Settings

# Who holds the instance's ticket (never its keytab). The triggerer runs deferrable operators' triggers against
# the same Kerberized services as the tasks that deferred to it. The dag-processor does not: DAG files' top-level
# code runs on every parse, so a call to a Kerberized service there would turn its outage into import errors
# (DAGs vanishing) and hit the KDC and the service every parse interval; without a ticket it fails at once.
TICKET_HOLDERS = (SCHEDULER, API_SERVER, TRIGGERER, TASK)

# Which of the instance's Secrets each component reads whole; see AirflowControlPlane's docstring for why.
SECRETS_OF = {
    API_SERVER: ("secrets", "jwt", "api-key"),
    SCHEDULER: ("secrets", "jwt"),
    DAG_PROCESSOR: ("secrets",),
    TRIGGERER: ("secrets",),
}


@dataclass
class Part:
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
    init_containers: tuple = ()


class AirflowPods:
    """The pod specs and containers of one instance's Airflow components."""

    def __init__(
        self,
        settings: Settings,
        service_accounts: Mapping[str, pulumi.Input[str]],
        token_components: frozenset[str],
        kerberos: KerberosMounts | None,
        *,
        with_git_secret: bool,
        with_kerberos_api: bool,
    ):
        self._settings = settings
        self._service_accounts = service_accounts
        self._token_components = token_components
        self._kerberos = kerberos
        self._with_git_secret = with_git_secret
        self._with_kerberos_api = with_kerberos_api

    def volumes(self, component: str) -> tuple[list[k8s.core.v1.VolumeArgs], list[k8s.core.v1.VolumeMountArgs]]:
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
            volumes += git_sync.volumes(s, with_secret=self._with_git_secret)
            mounts.append(k8s.core.v1.VolumeMountArgs(name="dags", mount_path=DAGS_DIR, read_only=True))
        if s.s3.ca_bundle is not None:
            volumes.append(
                k8s.core.v1.VolumeArgs(name="s3-ca", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=s.name("s3")))
            )
            mounts.append(k8s.core.v1.VolumeMountArgs(name="s3-ca", mount_path=S3_CA_DIR, read_only=True))
        kerberos = self._kerberos
        if kerberos is not None and component in TICKET_HOLDERS:
            volumes += kerberos.volumes
            mounts += kerberos.volume_mounts
        return volumes, mounts

    def env(self, component: str) -> list[k8s.core.v1.EnvVarArgs]:
        """The literal env of `component`'s Airflow container (its settings come from `env_from`)."""
        env = kube.airflow_env()
        kerberos = self._kerberos
        if kerberos is not None and component in TICKET_HOLDERS:
            env += list(kerberos.env) + (list(kerberos.api_env) if component == API_SERVER and self._with_kerberos_api else [])
        return env

    def env_from(self, component: str) -> list[k8s.core.v1.EnvFromSourceArgs]:
        s = self._settings
        sources = [k8s.core.v1.EnvFromSourceArgs(config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(name=s.name("config")))]
        for role in SECRETS_OF.get(component, ()):
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

    def git_sync_container(self, one_time: bool) -> k8s.core.v1.ContainerArgs:
        return git_sync.container(self._settings, one_time, with_secret=self._with_git_secret)

    def wait_for_migrations(self) -> k8s.core.v1.ContainerArgs:
        return self.airflow_command(
            "wait-for-migrations",
            self._settings.triggerer.resources,
            args=["db", "check-migrations", "--migration-wait-timeout=600"],
        )

    def pod_spec(
        self,
        component: str,
        containers: list[k8s.core.v1.ContainerArgs],
        volumes: list[k8s.core.v1.VolumeArgs],
        init_containers: list[k8s.core.v1.ContainerArgs] | None = None,
        restart_policy: str | None = None,
        anti_affinity: bool = False,
        service_account_name: str | None = None,
    ) -> k8s.core.v1.PodSpecArgs:
        """`component`'s pod, run as the service account WorkerRBAC made for it (`service_account_name`: its
        plain name, where the spec travels as data and an Output cannot go)."""
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
            service_account_name=service_account_name or self._service_accounts[component],
            automount_service_account_token=component in self._token_components,
            security_context=kube.restricted_pod_security_context(),
            init_containers=init_containers or None,
            containers=containers,
            volumes=volumes,
            restart_policy=restart_policy,
            node_selector=dict(s.placement.node_selector) or None,
            tolerations=kube.tolerations(s.placement) or None,
            affinity=affinity,
        )

    def parts(self) -> list[Part]:
        s = self._settings
        port = kube.API_SERVER_PORT

        def jobs_check(job_type: str) -> dict:
            # `--local`: a running job of this type recorded under this pod's hostname, as Airflow computes it (the
            # job records it the same way). Airflow refuses `--local` together with `--hostname`.
            command = k8s.core.v1.ExecActionArgs(
                command=["sh", "-c", f"exec airflow jobs check --job-type {job_type} --local"]
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
        if self._with_kerberos_api:
            api_volumes += [
                k8s.core.v1.VolumeArgs(name="api-plugins", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=s.name("api-plugins"))),
                *self._kerberos.api_volumes,
            ]
            # One file by subPath: a whole ConfigMap volume brings its ..data links, and the plugin loader
            # would find the module under each of them.
            api_mounts += [
                k8s.core.v1.VolumeMountArgs(
                    name="api-plugins", mount_path=f"{PLUGINS_DIR}/kerberos_api.py", sub_path="kerberos_api.py", read_only=True
                ),
                *self._kerberos.api_volume_mounts,
            ]
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
            Part(
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
                init_containers=tuple(api_init),
            ),
            Part(
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
            ),
            Part(DAG_PROCESSOR, ["dag-processor"], s.dag_processor.replicas, s.dag_processor.resources,
                 jobs_check("DagProcessorJob"), parses_dags=True),
            # Its log server would check requests with the API secret key, which it does not get (nor should:
            # it runs user code); running triggers' logs reach the UI from S3 once uploaded.
            Part(TRIGGERER, ["triggerer", "--skip-serve-logs"], s.triggerer.replicas, s.triggerer.resources,
                 jobs_check("TriggererJob"), parses_dags=True),
        ]

    def team_label(self) -> dict[str, str]:
        return {"airflow-platform/team": self._settings.team} if self._settings.team else {}

    def airflow_command(self, name: str, resources, args=None, command=None) -> k8s.core.v1.ContainerArgs:
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
            env_from=self.env_from(MIGRATE),
            env=[*kube.airflow_env(), *self._database_url_env()],
            resources=kube.resource_requirements(resources),
            security_context=kube.restricted_container_security_context(),
            volume_mounts=mounts,
        )

    def task_pod_template(self, service_account_name: str) -> dict:
        """The pod every task runs in, as the KubernetesExecutor reads it from `pod_template_file`: plain data,
        so it takes the task service account's name resolved."""
        s = self._settings
        volumes, mounts = self.volumes(TASK)
        base = k8s.core.v1.ContainerArgs(
            # The executor finds the task's container by this name and position.
            name="base",
            image=s.image,
            image_pull_policy=s.image_pull_policy,
            env_from=self.env_from(TASK),
            env=self.env(TASK),
            resources=kube.resource_requirements(s.task_pod.resources),
            security_context=kube.restricted_container_security_context(),
            volume_mounts=mounts,
        )
        init = [self.git_sync_container(one_time=True)] if s.git_sync.enabled else None
        spec = self.pod_spec(
            TASK, [base], volumes, init_containers=init, restart_policy="Never", service_account_name=service_account_name
        )
        # The executor adds dag_id, task_id, run_id and try_number labels; ours add who pays for the pod.
        labels = kube.labels(s.instance, TASK, self.team_label())
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "task-pod", "labels": labels},
            "spec": kube.to_manifest(spec),
        }

