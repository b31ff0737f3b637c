"""Bad input: the defects the every-setting tests (test_bad_input_every_setting.py) found, pinned one by one, the
stack file door's own inputs, and the environment variables our tools read into a stack's config.
"""

from __future__ import annotations

import re

import pulumi
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from components.settings import PROJECT, ConfigError
from components.settings.cli import check_stack_file
from tests.settings.hostile_input import (KEYTAB, MARKER, NASTY_TEXT, STACK, _UNPRINTABLE, hostile_text,
    read_as_pulumi_up)



@pytest.fixture(scope="module", autouse=True)
def no_engine_config_left_behind():
    """read_as_pulumi_up sets the engine's config; the modules after this one start without it."""
    yield
    pulumi.runtime.set_all_config({}, [])


# ---------------------------------------------------------------------------------------------------------
# The defects the every-setting tests found, pinned one by one: (config, the key path a problem must name, words it must say)


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


REFUSED = [
    # Tracebacks before: AttributeError, RecursionError, OverflowError, and a problem naming no key at all.
    ({"airflowConnections": "[]"}, "airflowConnections", "must be a JSON object"),
    ({"airflowConnections": "[" * 100_000}, "airflowConnections", "must be a JSON object"),
    ({"quota": {"requestsCpu": "9" * 400}}, "quota.requestsCpu", "is more than"),
    ({"quota": {"limitsMemory": "9" * 400 + "Pi"}}, "quota.limitsMemory", "is more than 8Ei"),
    ({"s3": {"endpointUrl": "http://[::1"}}, "s3.endpointUrl", "invalid IPv6 address"),
    # A line break let through by `$` in a pattern: the value went on into names, tags and YAML.
    ({"instance": "dev\n"}, "instance", "DNS-1123 label"),
    ({"navbarColor": "#fff\n"}, "navbarColor", "CSS colour"),
    ({"airflowVersion": "3.3.2\n"}, "airflowVersion", "Airflow 3 version"),
    ({"airflowPythonVersion": "3.12\n"}, "airflowPythonVersion", "Python version"),
    ({"scheduler": {"resources": _resources("1\n", "1Gi", "2", "2Gi")}}, "scheduler.resources.requests.cpu", "CPU quantity"),
    ({"gitSync": {"image": "registry.k8s.io/git-sync/git-sync:v4.4.2\n"}}, "gitSync.image", "image reference"),
    # Numbers and quantities no cluster or service takes.
    ({"postgres": {"storageSize": "1000000Ti"}}, "postgres.storageSize", "more than 64Ti"),
    ({"postgres": {"storageSize": "0"}}, "postgres.storageSize", "more than 0"),
    ({"limitRange": {"enabled": False}, "taskPod": {"resources": _resources("1", "1Gi", "5000", "2Gi")}},
     "taskPod.resources.limits.cpu", "more than 4096 cores"),
    ({"scheduler": {"resources": _resources("0", "0", "0", "0")}}, "scheduler.resources", "must be more than 0"),
    ({"postgres": {"resources": _resources("1", "1Gi", "8", "1Gi")}}, "postgres.resources", "exceed limitRange.max"),
    ({"scheduler": {"replicas": True, "resources": _resources("1", "1Gi", "2", "2Gi")}}, "scheduler.replicas",
     "must be a number"),
    ({"executor": {"taskQueuedTimeoutSeconds": 10**12}}, "executor.taskQueuedTimeoutSeconds", "less than or equal"),
    ({"dbCleanup": {"retentionDays": 10**15}}, "dbCleanup.retentionDays", "less than or equal to 36500"),
    ({"postgres": {"poolerMaxClientConn": 10**9}}, "postgres.poolerMaxClientConn", "less than or equal"),
    ({"gitSync": {"depth": 10**12}}, "gitSync.depth", "less than or equal"),
    ({"quota": {"pods": 10**9}}, "quota.pods", "less than or equal to 150000"),
    ({"cost": {"cpuPerCoreMonth": float("inf")}}, "cost.cpuPerCoreMonth", "finite number"),
    ({"kerberos": {"ticketLifetime": "-5s"}}, "kerberos.ticketLifetime", "krb5 duration"),
    ({"kerberos": {"ticketLifetime": "10m"}}, "kerberos", "reinitFrequencySeconds (3600) must be shorter"),
    ({"metrics": {"scrapeInterval": "1h"}}, "metrics.scrapeInterval", "between 1s and 5m"),
    ({"s3": {"endpointUrl": "http://minio:99999"}}, "s3.endpointUrl", "invalid port number"),
    ({"kerberos": {"kdcs": ["kdc1:99999"]}}, "kerberos.kdcs.0", "port (1-65535)"),
    # Shell text, path traversal and option injection where a name, a path or a ref goes.
    ({"dbCleanup": {"tables": ["x; rm -rf /"]}}, "dbCleanup.tables.0", "table name"),
    ({"gitSync": {"subPath": "../../etc"}}, "gitSync.subPath", "no '..' segment"),
    ({"gitSync": {"ref": "--upload-pack=touch /tmp/pwned"}}, "gitSync.ref", "not starting with '-'"),
    ({"gitSync": {"repo": "https://git.example.org/$(id).git"}}, "gitSync.repo", "'$('"),
    ({"network": {"dnsNamespace": "$(rm -rf /)"}}, "network.dnsNamespace", "DNS-1123 label"),
    ({"auth": {"oidcProviderName": "../x"}}, "auth.oidcProviderName", "provider name"),
    ({"ingress": {"path": "airflow"}}, "ingress.path", "absolute URL path"),
    ({"ingress": {"path": "/a/../b"}}, "ingress.path", "'/../'"),
    ({"cost": {"currency": "$(rm -rf /)"}}, "cost.currency", "ISO 4217"),
    # A line break that starts another line of krb5.conf or postgresql.conf.
    ({"kerberos": {"realm": "EX.ORG\n[realms]"}}, "kerberos.realm", "Kerberos realm"),
    ({"postgres": {"parameters": {"max_connections": "200\nfsync = off"}}}, "postgres.parameters.max_connections",
     "one line"),
    ({"kubernetesRenderDir": "/tmp/x\x00y"}, "kubernetesRenderDir", "one line"),
    # Values Kubernetes, CloudNativePG or the identity provider would refuse during `pulumi up`, or never act on.
    ({"postgres": {"backups": {"schedule": "a b c d e f"}}}, "postgres.backups.schedule", "second 'a'"),
    ({"dbCleanup": {"schedule": "99 99 * * *"}}, "dbCleanup.schedule", "minute '99' is outside 0-59"),
    ({"placement": {"nodeSelector": {"bad key": "v"}}}, "placement.nodeSelector.bad key", "the key 'bad key'"),
    ({"placement": {"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}}, "placement.tolerations.0",
     "Exists takes no value"),
    ({"network": {"taskPodEgressCidrs": ["10.0.0.0"]}}, "network.taskPodEgressCidrs.0", "prefix length"),
    ({"metrics": {"runbookUrl": "javascript:alert(1)"}}, "metrics.runbookUrl", "http:// or https:// URL"),
    ({"auth": {"mode": "ldap", "ldapUri": "http://ldap.example.org", "ldapSearchBase": "dc=example,dc=org"}},
     "auth.ldapUri", "ldap:// or ldaps:// URL"),
    ({"s3": {"logPrincipal": "logs-user"}}, "s3.logPrincipal", "not an ARN"),
    ({"postgres": {"restore": {"source": STACK, "targetTime": 5}}}, "postgres.restore.targetTime", "RFC 3339"),
    # Backups under the log prefix: the log lifecycle rule would expire them, the log key reach them.
    ({"postgres": {"backups": {"prefix": "logs"}}}, "postgres.backups.prefix", "overlaps s3.logPrefix"),
    ({"postgres": {"backups": {"prefix": ""}}}, "postgres.backups.prefix", "S3 key prefix"),
    # The key of a map is named as written, not camelCased (it was 'postgres.parameters.maxConnections').
    ({"postgres": {"parameters": {"max_connections": 5}}}, "postgres.parameters.max_connections", "valid string"),
    # Secrets: a line break at the end is part of the credential; the error never repeats it.
    ({"gitSyncToken": f"{MARKER}\n"}, "gitSyncToken", "one line"),
    ({"postgres": {"mode": "external"}, "postgresExternalUri": f"postgresql://u:{MARKER}@h:99999/db"},
     "postgresExternalUri", "invalid port number"),
]


@pytest.mark.parametrize("config, key, says", REFUSED, ids=[f"{key}-{i}" for i, (_, key, _) in enumerate(REFUSED)])
def test_each_defect_found_is_refused_with_the_setting_named(config, key, says):
    with pytest.raises(ConfigError) as caught:
        read_as_pulumi_up(config)
    named = [p for p in caught.value.problems if re.match(rf"{re.escape(PROJECT)}:{re.escape(key)}(?: = |: )", p)]
    assert named and says in named[0], caught.value.problems
    assert MARKER not in str(caught.value)
    assert all(not _UNPRINTABLE.search(problem) for problem in caught.value.problems)


def test_a_value_cannot_forge_a_problem_line():
    with pytest.raises(ConfigError) as caught:
        read_as_pulumi_up({"instance": "Dev\n  - airflow-platform:protect: fine"})
    assert "\n  - airflow-platform:protect" not in str(caught.value)
    assert caught.value.problems[0].startswith("airflow-platform:instance = 'Dev\\n  - ")


def test_a_task_pod_that_requests_nothing_still_has_its_quota_sized():
    """It was a ZeroDivisionError: how many task pods fit was divided by the task pod's request."""
    from components.settings import capacity

    settings_object = read_as_pulumi_up({"taskPod": {"resources": _resources("0", "0", "2", "2Gi")}})
    assert capacity.task_pods_that_fit(settings_object) == settings_object.quota.concurrent_tasks


SSH = {"gitSyncSshKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n"}


KNOWN_HOSTS = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n"


ACCEPTED = [
    {"gitSync": {"enabled": True, "repo": "git@git.example.org:team/dags.git", "ref": "feature/JIRA-123_Big Thing",
                 "subPath": "/dags/", "knownHosts": KNOWN_HOSTS}, **SSH},
    {"gitSync": {"enabled": True, "repo": "ssh://git@git.example.org:2222/team/dags.git", "ref": "v1.2.3",
                 "knownHosts": KNOWN_HOSTS}, **SSH},
    {"ingress": {"enabled": True, "host": "*.example.org", "path": "/airflow",
                 "annotations": {"nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers \"A: b\";\n"}}},
    {"kerberos": {"enabled": True, "principal": "airflow@EX.ORG", "realm": "EX.ORG", "kdcs": ["[2001:db8::1]:88", "kdc2"],
                  "ticketLifetime": "10h30m", "renewLifetime": "604800"}, "kerberosKeytab": KEYTAB},
    {"kerberos": {"ticketLifetime": "10:30"}},
    {"postgres": {"parameters": {"shared_preload_libraries": "'$libdir/pg_stat_statements'", "search_path": ""}}},
    {"postgres": {"backups": {"schedule": "0 */30 1-5 ? JAN-MAR MON-FRI", "prefix": "pg/backups"}}},
    {"dbCleanup": {"schedule": "*/15 0-6 * * 1,3,5"}},
    {"placement": {"nodeSelector": {"kubernetes.io/hostname": "node-1"}, "tolerations": [{"operator": "Exists"}]}},
    {"network": {"taskPodEgressCidrs": ["10.0.0.0/8", "2001:db8::/32"]}},
    {"cost": {"currency": "€", "cpuPerCoreMonth": 0}},
    {"s3": {"endpointUrl": "http://127.0.0.1:9000", "podEndpointUrl": "http://[fd00::1]:9000", "region": "garage",
            "logPrincipal": "arn:aws:iam:::user/tenant$logs"}, "kubernetesRenderDir": "../rendered/dev"},
    {"postgres": {"restore": {"source": STACK, "bucket": "other-bucket", "targetTime": "2024-05-01T10:00:00+02:00"}}},
    {"auth": {"mode": "ldap", "ldapUri": "ldaps://ldap.example.org:636", "ldapSearchBase": "ou=people,dc=example,dc=org",
              "ldapBindDn": "cn=airflow,dc=example,dc=org", "ldapUidField": "sAMAccountName"},
     "authLdapBindPassword": "pass word with spaces"},
]


@pytest.mark.parametrize("config", ACCEPTED, ids=lambda config: ",".join(config))
def test_the_tightened_rules_still_take_what_works(config):
    read_as_pulumi_up(config)


# ---------------------------------------------------------------------------------------------------------
# The stack file door's own inputs


def test_check_reads_a_stack_file_as_pulumi_up_does(tmp_path):
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    # A scalar is text to the engine: the instance name '0', not the number 0.
    path.write_text(f"config:\n  {PROJECT}:instance: 0\n")
    assert check_stack_file(path) == []
    # Two encrypted S3 keys are not the same key because neither can be read.
    path.write_text(f"config:\n  {PROJECT}:s3AccessKeyId: {{secure: v1:a}}\n  {PROJECT}:s3SecretAccessKey: {{secure: v1:b}}\n"
                    f"  {PROJECT}:s3LogAccessKeyId: {{secure: v1:c}}\n  {PROJECT}:s3LogSecretAccessKey: {{secure: v1:d}}\n")
    assert check_stack_file(path) == []
    # The rules that depend on the stack read the stack's name, not the instance the file sets.
    path.write_text(f"config:\n  {PROJECT}:instance: team-x\n")
    assert check_stack_file(path) == []


@pytest.mark.parametrize("text", ["config: [1, 2\n", "- just\n- a list\n", "config: 5\n", "config:\n  a: {b\n"])
def test_a_stack_file_that_is_not_a_mapping_is_one_problem(tmp_path, text):
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    path.write_text(text)
    problems = check_stack_file(path)
    assert problems and all(path.name in problem or problem.startswith(PROJECT) for problem in problems), problems


# ---------------------------------------------------------------------------------------------------------
# Environment variables our tools read into a stack's config (envs: branch environments)


def _env_cases():
    from envs.branch_config import SECRET_ENV

    return [("AIRFLOW_DAGS_REPO", "gitSync.repo"), *((var, key) for key, var in SECRET_ENV.items())]


@pytest.mark.parametrize("variable, key", _env_cases(), ids=[var for var, _ in _env_cases()])
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(value=st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40)))
def test_a_hostile_environment_variable_is_a_config_problem_by_name(variable, key, value):
    """`python -m envs` reads AIRFLOW_DAGS_REPO and the AIRFLOW_PLATFORM_* secrets into a branch stack's config
    and checks it with the model before any engine runs: a bad value is a problem naming the key it feeds."""
    from envs.branch_config import SECRET_ENV, branch_config, config_problems

    # Every other variable set and valid (one git credential only), so that only this one can be wrong.
    env = {var: f"valid-{var}" for key_, var in SECRET_ENV.items() if key_ != "gitSyncSshKey"}
    env["AIRFLOW_DAGS_REPO"] = "https://git.example.org/team/dags.git"
    if variable == SECRET_ENV["gitSyncSshKey"]:
        del env[SECRET_ENV["gitSyncToken"]]

    def problems_with(text: str) -> list[str]:
        _, plain, secrets = branch_config("feature/x", dags_repo=None, env={**env, variable: text})
        return config_problems(plain, secrets)

    hostile_text = value if key == "gitSync.repo" else f"{MARKER}{value}"
    try:
        problems = problems_with(hostile_text)
    except ValueError as error:  # the CLI prints it: no repository at all
        assert not value and "AIRFLOW_DAGS_REPO" in str(error)
        return
    for problem in problems:
        assert not _UNPRINTABLE.search(problem) and MARKER not in problem, problem
    already = problems_with(env.get(variable, "valid"))
    assert all(problem.startswith(f"{PROJECT}:{key}") for problem in problems if problem not in already), problems
