"""KerberosKeytab: one instance's Kerberos identity, and the ticket its pods share.

The keytab is mounted in one place only, the renewer, which runs `airflow kerberos` to keep a TGT fresh in
a ticket cache on a small ReadWriteMany volume. Consumers (scheduler, api-server, task pods) mount that
volume and the krb5.conf and so hold a ticket without ever seeing the keytab: the way Wikimedia shares its
TGT with task pods, minus the keytab they had to add back to every task pod.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.component_base import type_token
from components.settings.namespace_sections import PlacementSettings
from components.settings.sections import KerberosSettings

COMPONENT = kube.KERBEROS
KEYTAB_DIR = "/etc/airflow-keytab"
KEYTAB_PATH = f"{KEYTAB_DIR}/airflow.keytab"
KRB5_CONFIG_DIR = "/etc/airflow-krb5"
KRB5_CONFIG_PATH = f"{KRB5_CONFIG_DIR}/krb5.conf"
CCACHE_DIR = "/var/run/airflow-krb5"
CCACHE_PATH = f"{CCACHE_DIR}/krb5cc"
RENEWER_DB = "/tmp/airflow-kerberos.db"
API_KEYTAB_DIR = "/etc/airflow-api-keytab"
API_KEYTAB_PATH = f"{API_KEYTAB_DIR}/http.keytab"


def krb5_conf(settings: KerberosSettings) -> str:
    kdcs = "\n".join(f"    kdc = {kdc}" for kdc in settings.kdcs)
    admin = f"\n    admin_server = {settings.admin_server}" if settings.admin_server else ""
    # Canonicalising through DNS and reverse DNS breaks principals behind load balancers and in pods,
    # whose PTR records rarely match (Wikimedia had to pin host aliases before turning both off).
    return f"""[libdefaults]
  default_realm = {settings.realm}
  dns_lookup_realm = false
  dns_lookup_kdc = false
  dns_canonicalize_hostname = false
  rdns = false
  ticket_lifetime = {settings.ticket_lifetime}
  renew_lifetime = {settings.renew_lifetime}
  forwardable = true
  udp_preference_limit = 1

[realms]
  {settings.realm} = {{
{kdcs}{admin}
  }}
"""


@dataclass
class KerberosMounts:
    """What KerberosKeytab hands to consumers of the ticket (AirflowControlPlane's pods and task pods)."""

    volumes: list[k8s.core.v1.VolumeArgs]
    volume_mounts: list[k8s.core.v1.VolumeMountArgs]
    env: list[k8s.core.v1.EnvVarArgs]
    principal: str
    ccache_path: str
    # Kerberos on the REST API (kerberos.apiAuth): the HTTP service keytab, for the api-server only.
    api_volumes: list[k8s.core.v1.VolumeArgs] = field(default_factory=list)
    api_volume_mounts: list[k8s.core.v1.VolumeMountArgs] = field(default_factory=list)
    api_env: list[k8s.core.v1.EnvVarArgs] = field(default_factory=list)
    # (Secret, its data): the api-server's config checksum covers the keytab too.
    api_keytab: tuple | None = None


@dataclass
class KerberosKeytabArgs:
    instance: str
    namespace: pulumi.Input[str]
    settings: KerberosSettings
    keytab_base64: pulumi.Input[str]
    image: str
    service_account_name: pulumi.Input[str]
    image_pull_policy: str = "IfNotPresent"
    placement: PlacementSettings = field(default_factory=PlacementSettings)
    # The api-server's HTTP/<host> service keytab, for Kerberos on the REST API (settings.api_auth).
    api_keytab_base64: pulumi.Input[str] | None = None
    # True when the stack's namespace is deleted with the stack: the ticket cache's claim is left to it.
    namespace_deletes_cache: bool = False


class KerberosKeytab(pulumi.ComponentResource):
    """Exposes `mounts` (volumes, mounts and env) for every pod that needs the ticket."""

    volumes: list[k8s.core.v1.VolumeArgs]
    volume_mounts: list[k8s.core.v1.VolumeMountArgs]
    env: list[k8s.core.v1.EnvVarArgs]
    mounts: KerberosMounts

    def __init__(self, name: str, args: KerberosKeytabArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("KerberosKeytab"), name, None, opts)
        self._args = args
        child = pulumi.ResourceOptions(parent=self)

        self.keytab_secret = k8s.core.v1.Secret(
            f"{name}-keytab",
            metadata=self._meta("keytab"),
            data={"airflow.keytab": pulumi.Output.secret(args.keytab_base64)},
            opts=child,
        )
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-krb5-conf", metadata=self._meta("krb5-conf"), data={"krb5.conf": krb5_conf(args.settings)}, opts=child
        )
        # `pulumi up` does not wait for the claim to bind: a WaitForFirstConsumer class binds it only once
        # the renewer is scheduled, which is created after it.
        ccache_meta = kube.object_meta(
            args.instance,
            COMPONENT,
            args.namespace,
            kube.resource_name(args.instance, "krb5-ccache"),
            annotations={"pulumi.com/skipAwait": "true"},
        )
        self.ticket_cache = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-ccache",
            metadata=ccache_meta,
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteMany"],
                storage_class_name=args.settings.ccache_storage_class,
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": args.settings.ccache_size}),
            ),
            # Task pods the scheduler leaves behind (failed ones are kept unless executor.deleteWorkerPodsOnFailure;
            # any once the scheduler is gone) keep the claim in use, and Kubernetes deletes a claim in use only
            # after its pods: `destroy` waited ten minutes for it on the test node and failed. Deleting the
            # namespace deletes those pods and the claim together, so when the stack's namespace goes, the claim
            # goes with it instead of on its own (an update that turns Kerberos off leaves it there until then).
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.namespace_deletes_cache),
        )

        self.volumes = [
            k8s.core.v1.VolumeArgs(
                name="krb5-ccache",
                # Plain names, not Outputs: the volumes also go into the task pod template file.
                persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                    claim_name=kube.resource_name(args.instance, "krb5-ccache")
                ),
            ),
            k8s.core.v1.VolumeArgs(
                name="krb5-conf",
                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=kube.resource_name(args.instance, "krb5-conf")),
            ),
        ]
        # Consumers mount the cache writable: libkrb5 stores the service tickets it gets in the same cache.
        self.volume_mounts = [
            k8s.core.v1.VolumeMountArgs(name="krb5-ccache", mount_path=CCACHE_DIR),
            k8s.core.v1.VolumeMountArgs(name="krb5-conf", mount_path=KRB5_CONFIG_DIR, read_only=True),
        ]
        self.env = [
            k8s.core.v1.EnvVarArgs(name="KRB5CCNAME", value=f"FILE:{CCACHE_PATH}"),
            k8s.core.v1.EnvVarArgs(name="KRB5_CONFIG", value=KRB5_CONFIG_PATH),
        ]
        self.renewer = self._renewer()
        self._api_keytab()
        self.mounts = KerberosMounts(
            volumes=self.volumes,
            volume_mounts=self.volume_mounts,
            env=self.env,
            principal=args.settings.principal,
            ccache_path=CCACHE_PATH,
            api_volumes=self.api_volumes,
            api_volume_mounts=self.api_volume_mounts,
            api_env=self.api_env,
            api_keytab=(self.api_keytab_secret, self.api_keytab_data) if self.api_keytab_secret else None,
        )
        self.register_outputs(
            {
                "keytab_secret": self.keytab_secret.metadata.name,
                "krb5_config_map": self.config_map.metadata.name,
                "ticket_cache_claim": self.ticket_cache.metadata.name,
            }
        )

    def _api_keytab(self) -> None:
        """The HTTP service keytab, for the api-server alone: it proves the server to Kerberos clients, so no
        other pod may hold it (one that did could pose as the API)."""
        self.api_volumes: list[k8s.core.v1.VolumeArgs] = []
        self.api_volume_mounts: list[k8s.core.v1.VolumeMountArgs] = []
        self.api_env: list[k8s.core.v1.EnvVarArgs] = []
        self.api_keytab_secret = self.api_keytab_data = None
        if not (self._args.settings.api_auth and self._args.api_keytab_base64 is not None):
            return
        self.api_keytab_data = {"http.keytab": pulumi.Output.secret(self._args.api_keytab_base64)}
        self.api_keytab_secret = k8s.core.v1.Secret(
            f"{self._name}-api-keytab",
            metadata=self._meta("api-keytab"),
            data=self.api_keytab_data,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.api_volumes = [
            k8s.core.v1.VolumeArgs(
                name="api-keytab",
                secret=k8s.core.v1.SecretVolumeSourceArgs(
                    secret_name=kube.resource_name(self._args.instance, "api-keytab"), default_mode=0o440
                ),
            )
        ]
        self.api_volume_mounts = [k8s.core.v1.VolumeMountArgs(name="api-keytab", mount_path=API_KEYTAB_DIR, read_only=True)]
        # The acceptor keytab of GSSAPI; the instance's own keytab stays with the renewer alone. With `[core]
        # security = kerberos` the `airflow` command overwrites KRB5_KTNAME with `[kerberos] keytab` before it
        # starts the server (airflow/__main__.py), so that setting must name the HTTP keytab too.
        self.api_env = [
            k8s.core.v1.EnvVarArgs(name="KRB5_KTNAME", value=f"FILE:{API_KEYTAB_PATH}"),
            k8s.core.v1.EnvVarArgs(name="AIRFLOW__KERBEROS__KEYTAB", value=API_KEYTAB_PATH),
        ]

    def _meta(self, role: str) -> k8s.meta.v1.ObjectMetaArgs:
        return kube.object_meta(
            self._args.instance, COMPONENT, self._args.namespace, kube.resource_name(self._args.instance, role)
        )

    def _renewer(self) -> k8s.apps.v1.Deployment:
        args = self._args
        scratch_volumes, scratch_mounts = kube.scratch_volumes()
        keytab_volume = k8s.core.v1.VolumeArgs(
            name="keytab",
            secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=self.keytab_secret.metadata.name, default_mode=0o440),
        )
        env = [
            *kube.airflow_env(),
            *self.env,
            k8s.core.v1.EnvVarArgs(name="AIRFLOW__CORE__SECURITY", value="kerberos"),
            k8s.core.v1.EnvVarArgs(name="AIRFLOW__KERBEROS__PRINCIPAL", value=args.settings.principal),
            k8s.core.v1.EnvVarArgs(name="AIRFLOW__KERBEROS__KEYTAB", value=KEYTAB_PATH),
            k8s.core.v1.EnvVarArgs(name="AIRFLOW__KERBEROS__CCACHE", value=CCACHE_PATH),
            k8s.core.v1.EnvVarArgs(
                name="AIRFLOW__KERBEROS__REINIT_FREQUENCY", value=str(args.settings.reinit_frequency_seconds)
            ),
            k8s.core.v1.EnvVarArgs(name="AIRFLOW__KERBEROS__INCLUDE_IP", value="False"),
            # The renewer needs no database; skip the image entrypoint's wait for one.
            k8s.core.v1.EnvVarArgs(name="CONNECTION_CHECK_MAX_COUNT", value="0"),
            # Yet `airflow kerberos` is a CLI command like any other: first it checks the database's migrations
            # (and exits "Database migration required" without one) and syncs log templates into it. Skip the
            # check, and give the sync a throwaway SQLite file on the writable /tmp: $AIRFLOW_HOME is on the
            # read-only root. tests/kdc/test_ticket_renewal.py runs the renewer against the real Airflow and a KDC.
            k8s.core.v1.EnvVarArgs(name="AIRFLOW__DATABASE__CHECK_MIGRATIONS", value="False"),
            k8s.core.v1.EnvVarArgs(name="AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", value=f"sqlite:///{RENEWER_DB}"),
        ]
        selector = kube.selector_labels(args.instance, COMPONENT)
        container = k8s.core.v1.ContainerArgs(
            name="renewer",
            image=args.image,
            image_pull_policy=args.image_pull_policy,
            args=["kerberos"],
            env=env,
            resources=kube.resource_requirements(args.settings.renewer_resources),
            security_context=kube.restricted_container_security_context(),
            volume_mounts=[
                *self.volume_mounts,
                k8s.core.v1.VolumeMountArgs(name="keytab", mount_path=KEYTAB_DIR, read_only=True),
                *scratch_mounts,
            ],
            # Alive means holding a valid ticket, not merely running: klist -s exits 1 on an expired cache.
            liveness_probe=k8s.core.v1.ProbeArgs(
                exec_=k8s.core.v1.ExecActionArgs(command=["klist", "-s", "-c", CCACHE_PATH]),
                initial_delay_seconds=60,
                period_seconds=60,
                failure_threshold=3,
            ),
        )
        return k8s.apps.v1.Deployment(
            f"{self._name}-renewer",
            metadata=self._meta("kerberos"),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                # Two renewers would race on the same cache file.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels(args.instance, COMPONENT)),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=args.service_account_name,
                        automount_service_account_token=False,
                        security_context=kube.restricted_pod_security_context(),
                        containers=[container],
                        volumes=[*self.volumes, keytab_volume, *scratch_volumes],
                        node_selector=dict(args.placement.node_selector) or None,
                        tolerations=kube.tolerations(args.placement) or None,
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
