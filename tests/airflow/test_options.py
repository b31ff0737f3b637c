"""Every `AIRFLOW__SECTION__KEY` we set names a current (not renamed, not deprecated) option of Airflow 3.3.2 or of a
provider and parses with the option's type; the secret ones are those Airflow masks; the components that consume
the settings (KubernetesExecutor config, remote logging, secrets backend, SQLAlchemy engine arguments, Fernet,
JWT signing) end up with the values we mean.

How: the rendered stacks run through Airflow's own code in the Airflow venv (rendered_stacks.py, probe_in_airflow.py).
"""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet

from components import kube
from components.airflow_settings import fernet_key_from
from testbed.stacks import TEST_SECRETS
from tests.airflow.rendered_stacks import ALL_STACKS, SENSITIVE_BUT_PUBLIC, probed

pytestmark = pytest.mark.slow


# --- every option is one Airflow 3.3.2 knows, and parses -----------------------------------------------


@ALL_STACKS
def test_every_airflow_option_we_set_is_current_and_parses(probes, stacks, stack):
    rendered = stacks[stack]
    options = probed(probes, stack, "options")
    problems = []
    for name, info in options.items():
        if not info["known"]:
            problems.append(f"{name}: Airflow 3.3.2 (with our providers) has no such option")
        if info["renamed_to"] or info["section_renamed_to"]:
            problems.append(f"{name}: renamed to {info['renamed_to'] or info['section_renamed_to']}")
        if info["version_deprecated"]:
            problems.append(f"{name}: deprecated since {info['version_deprecated']}")
        if "parse_error" in info:
            problems.append(f"{name}={rendered.env[name]!r} does not parse as {info['type']}: {info['parse_error']}")
        elif info["read"] != rendered.env[name]:
            problems.append(f"{name}: Airflow reads {info['read']!r}, not our {rendered.env[name]!r}")
    assert not problems, "\n".join(problems)
    # Values Airflow types as other than strings come out typed.
    assert options["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"]["type"] == "float"
    assert options["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"]["parsed"] == 3600.0
    assert options["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"]["parsed"] == kube.SCHEDULER_HEALTH_PORT
    assert options["AIRFLOW__API__WORKERS"]["type"] == "integer"
    assert options["AIRFLOW__CORE__LOAD_EXAMPLES"]["parsed"] is False


@ALL_STACKS
def test_secret_options_are_the_ones_airflow_masks_and_the_config_map_holds_none(probes, stacks, stack):
    rendered = stacks[stack]
    options = probed(probes, stack, "options")
    in_config_map = {name for name in rendered.config_env if name.startswith("AIRFLOW__") and options[name]["sensitive"]}
    assert in_config_map == SENSITIVE_BUT_PUBLIC
    assert all(options[name]["sensitive"] for name in rendered.secret_env), {
        name: options[name]["sensitive"] for name in rendered.secret_env
    }


# --- what the consumers of the settings end up with -------------------------------------------------------


@ALL_STACKS
def test_airflow_components_read_the_settings_as_we_mean_them(probes, stacks, stack):
    rendered = stacks[stack]
    env = rendered.env
    found = probed(probes, stack, "consumers")
    assert found["executor"].endswith(".KubernetesExecutor")
    assert found["auth_manager"] == env["AIRFLOW__CORE__AUTH_MANAGER"]
    assert found["kube_config"] == {
        "pod_template_file": "/opt/airflow/pod-templates/pod_template.yaml",
        "delete_worker_pods": True,
        "delete_worker_pods_on_failure": False,
        "worker_pods_creation_batch_size": int(env["AIRFLOW__KUBERNETES_EXECUTOR__WORKER_PODS_CREATION_BATCH_SIZE"]),
        # The image the executor puts on every task pod is the one the template names.
        "kube_image": rendered.pod_template["spec"]["containers"][0]["image"],
        "kube_namespace": rendered.run.exports["namespace"],
        "executor_namespace": rendered.run.exports["namespace"],
        "dags_folder": env["AIRFLOW__CORE__DAGS_FOLDER"],
    }
    # PgBouncer pools: every Airflow process connects without a pool of its own.
    assert found["poolclass"] == "NullPool"
    assert found["logging"] == {
        "remote_logging": True,
        "remote_task_log": "airflow.providers.amazon.aws.log.s3_task_handler.S3RemoteLogIO",
        "remote_base": rendered.run.exports["logs_url"],
        "delete_local_copy": True,
        "conn_id": "s3_logs",
    }
    # The LocalFilesystemBackend, built from our kwargs, finds the log connection in the mounted file.
    assert found["secrets"]["backends"][0] == "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    assert found["secrets"]["log_connection"] == {"conn_type": "aws", "login": TEST_SECRETS["s3LogAccessKeyId"]}
    assert found["fernet"]["roundtrip"] is True
    assert found["fernet"]["is_encrypted"] is True  # a real Fernet, not the no-key stand-in
    # The api-server signs and the validators check tokens with our JWT secret, not a generated one.
    assert found["jwt"]["signing_secret"] == found["jwt"]["validation_secret"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert found["jwt"]["roundtrip_sub"] == "probe"


# --- the Fernet key ------------------------------------------------------------------------------------


def test_the_generated_fernet_key_is_accepted_by_fernet(probes, stacks):
    rendered = stacks["dev"]
    key = rendered.secret_env["AIRFLOW__CORE__FERNET_KEY"]
    # Derived from the fernet-key RandomPassword (whose resource ID, unlike a RandomBytes', is not its value), as
    # URL-safe base64: what the Fernet spec asks for (Python's Fernet accepts both alphabets; not every reader does).
    password = next(r.outputs_secret for r in rendered.run.resources if r.name.endswith("-fernet-key"))
    assert key == fernet_key_from(password)
    assert len(base64.urlsafe_b64decode(key)) == 32 and not {"+", "/"} & set(key)
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"
    # Airflow's own get_fernet() builds from the same key and round-trips (see the consumers probe).
    assert probed(probes, "dev", "consumers")["fernet"]["roundtrip"] is True
