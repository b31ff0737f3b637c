"""KerberosKeytab: the keytab reaches only the renewer; the ticket reaches every consumer."""

from testbed.harness import run_stack
from testbed.runs import deployment_pod_specs
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64


def kerberos_run(**settings):
    config = {"kerberos": {**KERBEROS_CONFIG["kerberos"], **settings}}
    return run_stack(config, {"kerberosKeytab": KEYTAB_B64}, stack="dev")


def test_disabled_kerberos_creates_nothing():
    run = run_stack({}, stack="dev")
    assert not [r for r in run.resources if "kerberos" in r.type.lower() or (r.k8s_name or "").endswith("-keytab")]


def test_keytab_is_a_secret_mounted_read_only_by_the_renewer_only():
    run = kerberos_run()
    keytab = run.one("Secret", "-keytab")
    assert keytab.inputs["data"] == {"airflow.keytab": KEYTAB_B64}
    assert "data" in keytab.secret_paths
    mounting = []
    for name, spec in deployment_pod_specs(run).items():
        volumes = {v["name"] for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "dev-keytab"}
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] in volumes:
                    mounting.append(name)
                    assert mount["readOnly"] is True
    assert mounting == ["dev-kerberos"]


def test_krb5_conf_names_realm_kdcs_and_turns_off_dns_canonicalisation():
    conf = kerberos_run().one("ConfigMap", "-krb5-conf").inputs["data"]["krb5.conf"]
    assert "default_realm = EXAMPLE.ORG" in conf
    assert "kdc = kdc1.example.org" in conf and "kdc = kdc2.example.org" in conf
    assert "admin_server = kdc1.example.org" in conf
    assert "dns_canonicalize_hostname = false" in conf and "rdns = false" in conf
    assert "ticket_lifetime = 2d" in conf and "renew_lifetime = 14d" in conf


def test_ticket_cache_is_a_small_read_write_many_volume_of_the_configured_class():
    claim = kerberos_run(ccacheStorageClass="cephfs-ssd", ccacheSize="20Mi").one("PersistentVolumeClaim")
    assert claim.inputs["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim.inputs["spec"]["storageClassName"] == "cephfs-ssd"
    assert claim.inputs["spec"]["resources"]["requests"]["storage"] == "20Mi"


def test_renewer_runs_airflow_kerberos_into_the_shared_cache_and_is_probed_on_ticket_validity():
    run = kerberos_run()
    renewer = run.one("Deployment", "-kerberos").inputs["spec"]
    container = renewer["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["args"] == ["kerberos"]
    assert env["AIRFLOW__KERBEROS__PRINCIPAL"] == "analytics/airflow-dev.example.org@EXAMPLE.ORG"
    assert env["KRB5CCNAME"] == "FILE:/var/run/airflow-krb5/krb5cc"
    assert env["AIRFLOW__KERBEROS__CCACHE"] == "/var/run/airflow-krb5/krb5cc"
    assert env["KRB5_CONFIG"] == "/etc/airflow-krb5/krb5.conf"
    # No database: the CLI's migration check is off and its log-template sync goes to a file on the writable /tmp.
    assert env["AIRFLOW__DATABASE__CHECK_MIGRATIONS"] == "False"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "sqlite:////tmp/airflow-kerberos.db"
    assert container["livenessProbe"]["exec"]["command"] == ["klist", "-s", "-c", "/var/run/airflow-krb5/krb5cc"]
    assert renewer["replicas"] == 1 and renewer["strategy"]["type"] == "Recreate"
    assert renewer["template"]["spec"]["serviceAccountName"] == "dev-kerberos"
    assert renewer["template"]["spec"]["automountServiceAccountToken"] is False


def test_consumers_get_volumes_mounts_and_env_for_the_ticket():
    from components.settings.sections import KerberosSettings
    from components.kerberos_keytab import KerberosKeytab, KerberosKeytabArgs

    seen = {}

    def program():
        settings = KerberosSettings(**{k: v for k, v in KERBEROS_CONFIG["kerberos"].items() if k != "adminServer"})
        keytab = KerberosKeytab(
            "krb",
            KerberosKeytabArgs(instance="x", namespace="ns", settings=settings, keytab_base64=KEYTAB_B64,
                               image="apache/airflow:3.3.2", service_account_name="x-kerberos"),
        )
        seen["mounts"] = {m.name: (m.mount_path, m.read_only) for m in keytab.volume_mounts}
        seen["env"] = {e.name: e.value for e in keytab.env}
        seen["volumes"] = [v.name for v in keytab.volumes]

    run_stack({}, program=program)
    assert seen["mounts"] == {"krb5-ccache": ("/var/run/airflow-krb5", None), "krb5-conf": ("/etc/airflow-krb5", True)}
    assert seen["env"] == {"KRB5CCNAME": "FILE:/var/run/airflow-krb5/krb5cc", "KRB5_CONFIG": "/etc/airflow-krb5/krb5.conf"}
    assert seen["volumes"] == ["krb5-ccache", "krb5-conf"]


def test_up_does_not_wait_for_the_ticket_cache_to_bind_before_its_consumer_exists():
    claim = kerberos_run().one("PersistentVolumeClaim")
    assert claim.metadata["annotations"] == {"pulumi.com/skipAwait": "true"}


def test_destroy_leaves_the_ticket_cache_to_the_namespace_it_deletes_and_to_nothing_else():
    # Task pods left behind keep the claim in use; deleting the namespace deletes them with it.
    assert kerberos_run().one("PersistentVolumeClaim").retain_on_delete is True
    config = {**KERBEROS_CONFIG, "createNamespace": False}
    elsewhere = run_stack(config, {"kerberosKeytab": KEYTAB_B64}, stack="dev").one("PersistentVolumeClaim")
    assert elsewhere.retain_on_delete is False  # a namespace the stack does not delete must not keep our claim


def test_ticket_reaches_scheduler_api_server_triggerer_and_task_pods_but_not_the_dag_processor():
    import yaml

    run = kerberos_run()
    holders = {name for name, spec in deployment_pod_specs(run).items() if any(v["name"] == "krb5-ccache" for v in spec["volumes"])}
    # The renewer writes the cache; deferrable operators' triggers need the ticket as much as tasks do.
    assert holders == {"dev-kerberos", "dev-scheduler", "dev-api-server", "dev-triggerer"}
    for name, spec in deployment_pod_specs(run).items():
        if name in ("dev-scheduler", "dev-api-server", "dev-triggerer"):
            main = spec["containers"][0]
            assert {"name": "KRB5CCNAME", "value": "FILE:/var/run/airflow-krb5/krb5cc"} in main["env"]
            assert {m["mountPath"] for m in main["volumeMounts"]} >= {"/var/run/airflow-krb5", "/etc/airflow-krb5"}
    template = yaml.safe_load(run.one("ConfigMap", "-pod-template").inputs["data"]["pod_template.yaml"])
    assert {v["name"] for v in template["spec"]["volumes"]} >= {"krb5-ccache", "krb5-conf"}
    assert not [v for v in template["spec"]["volumes"] if "keytab" in v["name"]]


LDAP = {"mode": "ldap", "ldapUri": "ldaps://ldap.example.org", "ldapSearchBase": "ou=people,dc=example,dc=org"}
HTTP_KEYTAB_B64 = __import__("base64").b64encode(b"\x05\x02 the HTTP/ keytab").decode()


def api_auth_run(http_keytab=HTTP_KEYTAB_B64, **kerberos):
    config = {"kerberos": {**KERBEROS_CONFIG["kerberos"], "apiAuth": True, **kerberos}, "auth": LDAP}
    return run_stack(config, {"kerberosKeytab": KEYTAB_B64, "kerberosApiKeytab": http_keytab}, stack="dev")


def test_api_auth_mounts_the_http_keytab_and_the_spnego_plugin_into_the_api_server_only():
    run = api_auth_run()
    secret = run.one("Secret", "-api-keytab")
    assert secret.inputs["data"] == {"http.keytab": HTTP_KEYTAB_B64} and "data" in secret.secret_paths
    plugin = run.one("ConfigMap", "-api-plugins").inputs["data"]["kerberos_api.py"]
    assert "class SpnegoMiddleware" in plugin and "fastapi_root_middlewares" in plugin
    for name, spec in deployment_pod_specs(run).items():
        volumes = {v["name"] for v in spec["volumes"]}
        env = {e["name"]: e.get("value") for c in spec["containers"] for e in c.get("env") or []}
        if name == "dev-api-server":
            assert {"api-keytab", "api-plugins"} <= volumes
            assert env["KRB5_KTNAME"] == "FILE:/etc/airflow-api-keytab/http.keytab"
            # `airflow` copies [kerberos] keytab into KRB5_KTNAME when it starts.
            assert env["AIRFLOW__KERBEROS__KEYTAB"] == "/etc/airflow-api-keytab/http.keytab"
            mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
            assert mounts["api-plugins"]["mountPath"] == "/opt/airflow/plugins/kerberos_api.py"
            assert mounts["api-plugins"]["subPath"] == "kerberos_api.py"
            assert mounts["api-keytab"]["readOnly"] is True
        else:
            assert not volumes & {"api-keytab", "api-plugins"}, name
            assert "KRB5_KTNAME" not in env and "api-keytab" not in str(env), name


def test_a_new_http_keytab_rolls_the_api_server_alone():
    def sums(run):
        return {n: d.inputs["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/config")
                for d in run.of_kind("Deployment") for n in [d.k8s_name]}

    before, after = sums(api_auth_run()), sums(api_auth_run(http_keytab=KEYTAB_B64))
    assert {name for name in before if before[name] != after[name]} == {"dev-api-server"}


def test_api_auth_without_its_keytab_or_with_simple_auth_or_without_kerberos_is_refused():
    import pytest

    from components.settings import ConfigError

    with pytest.raises(ConfigError) as error:
        run_stack({"kerberos": {**KERBEROS_CONFIG["kerberos"], "apiAuth": True}}, {"kerberosKeytab": KEYTAB_B64})
    text = str(error.value)
    assert "airflow-platform:kerberosApiKeytab: kerberos.apiAuth is on but no HTTP service keytab" in text
    assert "airflow-platform:kerberos.apiAuth: needs auth.mode oidc or ldap" in text
    with pytest.raises(ConfigError) as error:
        run_stack({"kerberos": {"apiAuth": True}, "auth": LDAP}, {"kerberosApiKeytab": HTTP_KEYTAB_B64})
    assert "apiAuth needs enabled Kerberos" in str(error.value)


def test_spnego_plugin_maps_principals_of_the_instance_realm_to_plain_user_names():
    import ast
    import pathlib

    source = (pathlib.Path(__file__).parents[3] / "components/airflow_plugins/kerberos_api.py").read_text()
    namespace: dict = {}
    function = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "username_for")
    exec(compile(ast.Module([function], []), "kerberos_api.py", "exec"), namespace)
    username_for = namespace["username_for"]
    assert username_for("jdoe@EXAMPLE.ORG", "EXAMPLE.ORG") == "jdoe"
    assert username_for("svc/reports.example.org@EXAMPLE.ORG", "EXAMPLE.ORG") == "svc/reports.example.org"
    # Another realm's jdoe is not ours: it must be created under its full principal.
    assert username_for("jdoe@OTHER.ORG", "EXAMPLE.ORG") == "jdoe@OTHER.ORG"
