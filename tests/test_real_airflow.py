"""The configuration we generate, checked against the real Airflow 3.3.2 and the providers our image carries.

The other tests pin down what we render; these prove Airflow reads it the way we mean it. They run the rendered
objects of three stacks (dev with the simple auth manager, a prod with OIDC, a prod-like one with LDAP,
Kerberos and git-sync) through Airflow's own code in the separate virtualenv `scripts/airflow-venv` builds
(about a minute and a half, once, on a fresh machine; seconds after that):

* every `AIRFLOW__SECTION__KEY` we set names a current (not renamed, not deprecated) option of Airflow or of a
  provider, and Airflow parses its value with the option's type;
* the components that consume the settings (KubernetesExecutor config, remote logging, secrets backend,
  SQLAlchemy engine arguments, Fernet, JWT signing) end up with the values we mean;
* the task pod template goes through the executor's own loading and reconciling;
* the FAB `webserver_config.py` loads as FAB loads it, and SimpleAuthManager logs the admin in with the
  generated password through a read-only Secret volume, as in the pod;
* every command line we give the Airflow image parses with the real `airflow` CLI.

Each stack is one subprocess of that venv's Python running PROBE below, with the stack's ConfigMap and Secret as
its environment, and the pod's volumes (Secrets, ConfigMaps, emptyDirs) laid out in a temp dir: the probe maps
the container paths onto it and refuses writes to Secret and ConfigMap volumes with EROFS, as the kubelet does.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slow
import yaml
from cryptography.fernet import Fernet

from components import kube
from components.airflow_settings import fernet_key_from
from testbed.harness import ROOT, run_stack
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS, stack_file_config

AIRFLOW_VENV = ROOT / "scripts" / "airflow-venv"
BUILD_TIMEOUT = 30 * 60
PROBE_TIMEOUT = 180

S3_KEYS = {k: TEST_SECRETS[k] for k in ("s3AccessKeyId", "s3SecretAccessKey", "s3LogAccessKeyId", "s3LogSecretAccessKey")}
LDAP_BIND_PASSWORD = "ldap-bind-password-must-not-leak"
LDAP_AUTH = {
    "mode": "ldap",
    "ldapUri": "ldaps://ldap.example.org:636",
    "ldapBindDn": "cn=airflow,ou=services,dc=example,dc=org",
    "ldapSearchBase": "ou=people,dc=example,dc=org",
    "roleMapping": {
        "cn=airflow-admins,ou=groups,dc=example,dc=org": ["Admin"],
        "cn=data-engineers,ou=groups,dc=example,dc=org": ["User", "Op"],
    },
    "defaultRole": "Viewer",
}
GIT_SYNC = {"gitSync": {"enabled": True, "repo": "https://git.example.org/team/dags.git", "subPath": "dags"}}

# name -> (config, secret config, Pulumi stack)
STACKS = {
    "dev": (stack_file_config("dev"), S3_KEYS, "dev"),
    "prod-oidc": (stack_file_config("prod"), {**S3_KEYS, "authOidcClientSecret": TEST_SECRETS["authOidcClientSecret"]}, "prod"),
    "prod-ldap": (
        {**stack_file_config("prod"), "auth": LDAP_AUTH, **KERBEROS_CONFIG, **GIT_SYNC},
        {**S3_KEYS, "authLdapBindPassword": LDAP_BIND_PASSWORD, "kerberosKeytab": KEYTAB_B64,
         "gitSyncToken": "git-token-must-not-leak"},
        "prod",
    ),
}

# Options Airflow lists as sensitive (masked in `airflow config list` and the UI) that we still keep in the
# ConfigMap, and why that is fine.
SENSITIVE_BUT_PUBLIC = {
    # Only the paths of the mounted connections/variables files; the secrets are in the files.
    "AIRFLOW__SECRETS__BACKEND_KWARGS",
}


# --- the venv -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def airflow_python() -> Path:
    """The Python of the Airflow venv, built by scripts/airflow-venv when missing."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(AIRFLOW_VENV), "--print-path"], capture_output=True, text=True, timeout=BUILD_TIMEOUT
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"scripts/airflow-venv did not finish in {BUILD_TIMEOUT}s:\n{_tail(e.stderr)}")
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(
            "could not build the Airflow venv these tests need (scripts/airflow-venv, which installs "
            f"apache-airflow and its providers from the package index; exit {proc.returncode}):\n{_tail(proc.stderr)}"
        )
    python = Path(proc.stdout.strip().splitlines()[-1]) / "bin" / "python"
    assert python.exists(), f"scripts/airflow-venv printed {proc.stdout!r}, but {python} does not exist"
    if time.monotonic() - started > 10:
        print(f"built the Airflow venv in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return python


def _tail(text, lines: int = 40) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


# --- rendering a stack and laying out its pods ----------------------------------------------------------


class Rendered:
    """One stack's objects, as `run_stack` records them."""

    def __init__(self, name: str):
        config, secrets, stack = STACKS[name]
        self.name = name
        self.run = run_stack(config, secrets, stack=stack)
        self.config_env: dict[str, str] = dict(self.run.one("ConfigMap", "-config").inputs["data"])
        # What the api-server reads (it reads every instance secret; the other components a subset).
        self.secret_env: dict[str, str] = {
            key: value
            for name in ("-secrets", "-jwt", "-api-key")
            for key, value in self.run.one("Secret", name).inputs["stringData"].items()
        }
        self.webserver: dict[str, str] = dict(self.run.one("Secret", "-webserver-config").inputs["stringData"])
        self.pod_template = yaml.safe_load(self.run.one("ConfigMap", "-pod-template").inputs["data"]["pod_template.yaml"])

    @property
    def env(self) -> dict[str, str]:
        return {**self.config_env, **self.secret_env}

    def deployment(self, component: str) -> dict:
        return self.run.one("Deployment", f"-{component}").inputs["spec"]["template"]["spec"]

    def volume_files(self, volume: dict) -> dict[str, str] | None:
        """What a Secret or ConfigMap volume shows as files (None: an empty writable volume)."""
        if "secret" in volume:
            obj = self.run.named(volume["secret"]["secretName"]).inputs
            files = dict(obj.get("stringData") or {})
            files.update({k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()})
            return files
        if "configMap" in volume:
            return dict(self.run.named(volume["configMap"]["name"]).inputs["data"])
        return None


class PodFilesystem:
    """The volumes of one pod on disk: container path -> (host dir, read-only), for the probe to map."""

    def __init__(self, rendered: Rendered, spec: dict, root: Path):
        self.spec = spec
        self.dirs: dict[str, tuple[Path, bool]] = {}
        for volume in spec["volumes"]:
            host = root / volume["name"]
            host.mkdir(parents=True)
            files = rendered.volume_files(volume)
            for key, text in (files or {}).items():
                (host / key).write_text(text)
            # The kubelet mounts Secret and ConfigMap volumes read-only, whatever the pod says.
            self.dirs[volume["name"]] = (host, files is not None)

    def mounts(self, container: dict) -> dict[str, tuple[str, bool]]:
        found = {}
        for mount in container.get("volumeMounts", []):
            if mount["mountPath"] == "/tmp":  # the probe's own /tmp stays the machine's
                continue
            host, read_only = self.dirs[mount["name"]]
            if mount.get("subPath"):
                host = host / mount["subPath"]
            found[mount["mountPath"]] = (str(host), read_only or bool(mount.get("readOnly")))
        return found

    def run_init_container(self, container: dict) -> None:
        """Runs an init container that needs no Airflow (a file copy) with its paths mapped onto the host."""
        mounts = sorted(self.mounts(container).items(), key=lambda item: -len(item[0]))

        def mapped(arg: str) -> str:
            for path, (host, _) in mounts:
                if arg == path or arg.startswith(path + "/"):
                    return host + arg[len(path):]
            return arg

        subprocess.run([mapped(arg) for arg in container["command"]], check=True, timeout=30)


def airflow_commands(rendered: Rendered) -> list[dict]:
    """Every command line a pod of the stack gives the Airflow image, as `airflow` would get it."""
    image = rendered.pod_template["spec"]["containers"][0]["image"]
    workloads = [*rendered.run.of_kind("Deployment"), *rendered.run.of_kind("Job"), *rendered.run.of_kind("CronJob")]
    commands = []
    for workload in workloads:
        spec = workload.inputs["spec"]
        template = spec["template"] if "template" in spec else spec["jobTemplate"]["spec"]["template"]
        for container in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]:
            if container.get("image") != image:
                continue
            where = f"{workload.k8s_name}/{container['name']}"
            command = container.get("command")
            if not command:  # the image's entrypoint runs `airflow <args>`
                commands.append({"where": where, "argv": container.get("args", [])})
            elif command[:2] == ["sh", "-c"] and "airflow " in command[2]:
                commands.append({"where": where, "shell": command[2]})
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                action = (container.get(probe) or {}).get("exec")
                if action and action["command"][:2] == ["sh", "-c"]:
                    commands.append({"where": f"{where} {probe}", "shell": action["command"][2]})
    return commands


def expand_shell_commands(commands: list[dict], bin_dir: Path) -> list[dict]:
    """Runs each `sh -c` command with a stand-in `airflow` that records its argv, so the shell's own
    expansions (dates, $HOSTNAME) happen for real and the real CLI then parses what it would have got."""
    bin_dir.mkdir()
    record = bin_dir / "argv"
    stub = bin_dir / "airflow"
    stub.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done > {shlex.quote(str(record))}\n')
    stub.chmod(0o755)
    expanded = []
    for command in commands:
        if "shell" not in command:
            expanded.append(command)
            continue
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOSTNAME": "airflow-scheduler-5d9c7-x2x4q"}
        subprocess.run(["sh", "-c", command["shell"]], env=env, check=True, timeout=30)
        argv = record.read_bytes().split(b"\0")[:-1]
        expanded.append({**command, "argv": [a.decode() for a in argv]})
    return expanded


# --- the probe: runs inside the Airflow venv ------------------------------------------------------------

PROBE = r'''
import builtins, contextlib, errno, io, json, os, sys, traceback

request = json.load(open(sys.argv[1]))
MOUNTS = sorted(request["mounts"].items(), key=lambda item: -len(item[0]))


def resolve(path):
    """A container path -> (host path, read-only)."""
    if isinstance(path, int):
        return path, False
    text = os.fspath(path)
    if isinstance(text, bytes):
        return path, False
    for container, (host, read_only) in MOUNTS:
        if text == container or text.startswith(container + "/"):
            return host + text[len(container):], read_only
    return path, False


_open = builtins.open


def container_open(file, mode="r", *args, **kwargs):
    host, read_only = resolve(file)
    if read_only and any(flag in mode for flag in "wax+"):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(file))
    return _open(host, mode, *args, **kwargs)


builtins.open = container_open
for _name in ("exists", "isfile", "isdir"):
    _real = getattr(os.path, _name)
    setattr(os.path, _name, (lambda real: lambda path: real(resolve(path)[0]))(_real))


def qualname(obj):
    obj = obj if isinstance(obj, type) else type(obj)
    return f"{obj.__module__}.{obj.__qualname__}"


def options():
    from airflow.configuration import conf

    description = conf.configuration_description
    found = {}
    for name in request["options"]:
        _, section, key = name.split("__", 2)
        section, key = section.lower(), key.lower()
        option = description.get(section, {}).get("options", {}).get(key)
        info = {
            "known": option is not None,
            "renamed_to": conf.inversed_deprecated_options.get((section, key)),
            "section_renamed_to": conf.inversed_deprecated_sections.get(section),
            "version_deprecated": (option or {}).get("version_deprecated"),
            "type": (option or {}).get("type"),
            "sensitive": (section, key) in conf.sensitive_config_values,
        }
        getter = {"boolean": conf.getboolean, "integer": conf.getint, "float": conf.getfloat}.get(info["type"], conf.get)
        if getter == conf.get and os.environ[name].lower() in ("true", "false"):
            # Many flags are typed "string" in the descriptions; their readers use getboolean.
            getter = conf.getboolean
        try:
            info["read"] = conf.get(section, key)
            info["parsed"] = getter(section, key)
        except Exception as e:
            info["parse_error"] = repr(e)
        found[name] = info
    return found


def consumers():
    from airflow.configuration import conf, initialize_secrets_backends

    result = {}
    from airflow.providers.cncf.kubernetes.kube_config import KubeConfig

    kube = KubeConfig()
    result["kube_config"] = {
        name: getattr(kube, name)
        for name in ("pod_template_file", "delete_worker_pods", "delete_worker_pods_on_failure",
                     "worker_pods_creation_batch_size", "kube_image", "kube_namespace", "executor_namespace",
                     "dags_folder")
    }
    from airflow.executors.executor_loader import ExecutorLoader

    result["executor"] = qualname(ExecutorLoader.import_default_executor_cls()[0])
    from airflow.api_fastapi.app import get_auth_manager_cls

    result["auth_manager"] = qualname(get_auth_manager_cls())
    from airflow import settings

    result["poolclass"] = getattr(settings.prepare_engine_args().get("poolclass"), "__name__", None)
    import airflow.config_templates.airflow_local_settings as local_settings

    remote = local_settings.REMOTE_TASK_LOG
    result["logging"] = {
        "remote_logging": local_settings.REMOTE_LOGGING,
        "remote_task_log": qualname(remote) if remote is not None else None,
        "remote_base": getattr(remote, "remote_base", None),
        "delete_local_copy": getattr(remote, "delete_local_copy", None),
        "conn_id": conf.get("logging", "remote_log_conn_id"),
    }
    backends = initialize_secrets_backends()
    connection = backends[0].get_connection(result["logging"]["conn_id"])
    result["secrets"] = {
        "backends": [qualname(b) for b in backends],
        "log_connection": None if connection is None else {"conn_type": connection.conn_type, "login": connection.login},
    }
    from airflow.models.crypto import get_fernet

    fernet = get_fernet()
    result["fernet"] = {"is_encrypted": fernet.is_encrypted,
                        "roundtrip": fernet.decrypt(fernet.encrypt(b"probe")) == b"probe"}
    from airflow.api_fastapi.auth.tokens import JWTGenerator, JWTValidator, get_sig_validation_args, get_signing_args

    signing, validation = get_signing_args(False), get_sig_validation_args(False)
    token = JWTGenerator(**signing, valid_for=60, audience="probe").generate({"sub": "probe"})
    claims = JWTValidator(**validation, audience="probe").validated_claims(token)
    result["jwt"] = {"signing_secret": signing.get("secret_key"), "validation_secret": validation.get("secret_key"),
                     "roundtrip_sub": claims["sub"]}
    return result


def pod_template():
    from kubernetes.client import models as k8s
    from airflow.providers.cncf.kubernetes.executors.kubernetes_executor_utils import get_base_pod_from_template
    from airflow.providers.cncf.kubernetes.kube_config import KubeConfig
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    kube = KubeConfig()
    # What AirflowKubernetesScheduler._build_pod_request does for a task, without the API server.
    base = get_base_pod_from_template(None, kube)
    common = dict(
        namespace=kube.executor_namespace, scheduler_job_id="42", pod_id="example-dag-extract", dag_id="example_dag",
        task_id="extract", kube_image=kube.kube_image, try_number=1, map_index=-1, date=None, run_id="manual__1",
        args=["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", "{}"],
        base_worker_pod=base, with_mutation_hook=True,
    )
    plain = PodGenerator.construct_pod(pod_override_object=None, **common)
    # A task's executor_config pod_override: more memory and one extra volume.
    override = k8s.V1Pod(spec=k8s.V1PodSpec(
        containers=[k8s.V1Container(name="base", resources=k8s.V1ResourceRequirements(limits={"memory": "8Gi"}),
                                    volume_mounts=[k8s.V1VolumeMount(name="scratch", mount_path="/scratch")])],
        volumes=[k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource())],
    ))
    overridden = PodGenerator.construct_pod(pod_override_object=override, **common)
    return {name: PodGenerator.serialize_pod(pod) for name, pod in
            (("base", base), ("plain", plain), ("overridden", overridden))}


def fab():
    from flask import Flask
    from flask_appbuilder.security.manager import AUTH_DB, AUTH_LDAP, AUTH_OAUTH
    from airflow.configuration import conf
    from airflow.providers.fab.auth_manager.security_manager.override import FabAirflowSecurityManagerOverride

    app = Flask("probe")
    path = conf.get_mandatory_value("fab", "config_file")
    # As airflow.providers.fab.www.app.create_app loads it (silent: a missing file is skipped, not an error).
    with app.app_context():
        loaded = app.config.from_pyfile(path, silent=True)
    config = app.config
    manager = config.get("SECURITY_MANAGER_CLASS")
    result = {
        "config_file": path,
        "loaded": loaded,
        "auth_type": {AUTH_DB: "AUTH_DB", AUTH_LDAP: "AUTH_LDAP", AUTH_OAUTH: "AUTH_OAUTH"}.get(config.get("AUTH_TYPE")),
        "has_auth_role_public": "AUTH_ROLE_PUBLIC" in config,
        "security_manager": None if manager is None else {
            "name": manager.__name__,
            "extends_airflow_override": issubclass(manager, FabAirflowSecurityManagerOverride),
        },
        "settings": {key: value for key, value in config.items()
                     if key.startswith(("AUTH_", "PERMANENT_SESSION")) and key != "AUTH_TYPE"},
    }
    if result["auth_type"] == "AUTH_OAUTH":
        providers = config["OAUTH_PROVIDERS"]
        result["oauth_providers"] = providers
        # What FAB's security manager does at start-up for every provider (authlib; no network yet).
        from authlib.integrations.flask_client import OAuth

        oauth = OAuth(app)
        clients = {}
        for provider in providers:
            client = oauth.register(provider["name"], **provider["remote_app"])
            clients[provider["name"]] = {"client_id": client.client_id, "client_kwargs": client.client_kwargs}
        result["oauth_clients"] = clients
        # The override's mapping of ID-token claims to FAB's user info, on the real class.
        claims = {"sub": "u-1", "preferred_username": "jdoe", "email": "jdoe@example.org", "given_name": "J",
                  "family_name": "Doe", "groups": ["ops", "data-engineers"]}

        class Remote:
            def userinfo(self):
                return claims

        security_manager = object.__new__(manager)
        security_manager.oauth_remotes = {providers[0]["name"]: Remote()}
        result["user_info"] = manager.get_oauth_user_info(security_manager, providers[0]["name"], {"userinfo": claims})
        result["user_info_from_endpoint"] = manager.get_oauth_user_info(security_manager, providers[0]["name"], {})
    return result


def simple_auth():
    from fastapi import HTTPException
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.datamodels.login import LoginBody
    from airflow.api_fastapi.auth.managers.simple.services.login import SimpleAuthManagerLogin
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    result = {"passwords_file": SimpleAuthManager.get_generated_password_file()}
    manager = init_auth_manager()  # what the api-server does at start-up (opens the file "a+")
    result["users"] = [[user.username, user.role] for user in manager.get_users()]
    result["passwords"] = manager.get_passwords()  # what every login does (opens the file "r+")
    token = SimpleAuthManagerLogin.create_token(LoginBody(username=request["login"][0], password=request["login"][1]))
    result["token_claims"] = manager._get_token_validator().validated_claims(token)
    try:
        SimpleAuthManagerLogin.create_token(LoginBody(username=request["login"][0], password="wrong"))
        result["wrong_password"] = "accepted"
    except HTTPException as e:
        result["wrong_password"] = e.status_code
    return result


def cli():
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    parsed = []
    for command in request["cli"]:
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stderr):
                args = parser.parse_args(command["argv"])
            parsed.append({**command, "ok": True, "func": getattr(args.func, "__name__", repr(args.func)),
                           "args": {k: str(v) for k, v in vars(args).items() if k != "func"}})
        except SystemExit:
            parsed.append({**command, "ok": False, "error": stderr.getvalue()[-2000:]})
    return parsed


results = {}
for task in request["tasks"]:
    try:
        results[task] = {"ok": True, "value": globals()[task]()}
    except BaseException:
        results[task] = {"ok": False, "error": traceback.format_exc()}
with _open(request["out"], "w") as out:
    json.dump(results, out, default=repr)
'''


def run_probe(python: Path, work: Path, rendered: Rendered) -> dict:
    """Lays out the api-server's and the scheduler's volumes, runs the init containers that only copy files,
    and runs PROBE with the stack's environment."""
    mounts: dict[str, tuple[str, bool]] = {}
    for component in ("scheduler", "api-server"):
        spec = rendered.deployment(component)
        filesystem = PodFilesystem(rendered, spec, work / component)
        for init in spec.get("initContainers", []):
            if init.get("command"):
                filesystem.run_init_container(init)
        container = next(c for c in spec["containers"] if c["name"] == component)
        mounts.update(filesystem.mounts(container))

    tasks = ["options", "consumers", "pod_template", "cli"]
    request: dict = {
        "mounts": mounts,
        "options": sorted(name for name in rendered.env if name.startswith("AIRFLOW__")),
        "cli": expand_shell_commands(airflow_commands(rendered), work / "cli-bin"),
        "out": str(work / "result.json"),
    }
    if rendered.env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager"):
        tasks.append("fab")
    else:
        tasks.append("simple_auth")
        request["login"] = ["admin", rendered.run.exports["admin_password"]]
    request["tasks"] = tasks
    (work / "request.json").write_text(json.dumps(request))
    (work / "probe.py").write_text(PROBE)
    home = work / "airflow-home"
    home.mkdir()
    env = {
        "PATH": f"{python.parent}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(home),
        **rendered.env,
    }
    proc = subprocess.run(
        [str(python), str(work / "probe.py"), str(work / "request.json")],
        env=env, cwd=work, capture_output=True, text=True, timeout=PROBE_TIMEOUT,
    )
    assert proc.returncode == 0, f"the probe for {rendered.name} failed:\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"
    return json.loads((work / "result.json").read_text())


@pytest.fixture(scope="module")
def stacks() -> dict[str, Rendered]:
    return {name: Rendered(name) for name in STACKS}


@pytest.fixture(scope="module")
def probes(airflow_python, stacks, tmp_path_factory) -> dict[str, dict]:
    """One probe per stack, run side by side (each is mostly Airflow's import time)."""
    with ThreadPoolExecutor(max_workers=len(stacks)) as pool:
        futures = {
            name: pool.submit(run_probe, airflow_python, tmp_path_factory.mktemp(f"probe-{name}"), rendered)
            for name, rendered in stacks.items()
        }
        return {name: future.result() for name, future in futures.items()}


def probed(probes, stack: str, task: str):
    result = probes[stack][task]
    assert result["ok"], f"the {task} probe of {stack} raised inside Airflow:\n{result['error']}"
    return result["value"]


ALL_STACKS = pytest.mark.parametrize("stack", list(STACKS))


# --- 1. every option is one Airflow 3.3.2 knows, and parses -----------------------------------------------


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


# --- 2. the Fernet key ------------------------------------------------------------------------------------


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


# --- 3. the task pod template -----------------------------------------------------------------------------


@ALL_STACKS
def test_the_executor_loads_our_pod_template_and_keeps_it_when_building_task_pods(probes, stacks, stack):
    rendered = stacks[stack]
    template = rendered.pod_template
    pods = probed(probes, stack, "pod_template")
    base, ours = pods["base"], template["spec"]["containers"][0]
    assert base["spec"]["containers"][0]["name"] == "base"
    assert base["spec"]["restartPolicy"] == "Never"
    # Nothing of the template was dropped on the way in (the kubernetes client ignores unknown fields).
    assert base["spec"] == template["spec"]
    assert base["metadata"]["labels"] == template["metadata"]["labels"]

    for name in ("plain", "overridden"):
        pod = pods[name]
        spec, container = pod["spec"], pod["spec"]["containers"][0]
        assert pod["metadata"]["labels"].items() >= template["metadata"]["labels"].items()
        assert {"dag_id", "task_id", "try_number", "airflow-worker"} <= pod["metadata"]["labels"].keys()
        assert pod["metadata"]["namespace"] == rendered.run.exports["namespace"]
        assert spec["securityContext"] == template["spec"]["securityContext"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == template["spec"]["serviceAccountName"]
        assert spec["restartPolicy"] == "Never"
        assert spec.get("initContainers") == template["spec"].get("initContainers")
        assert container["name"] == "base" and container["image"] == ours["image"]
        assert container["securityContext"] == ours["securityContext"]
        assert container["envFrom"] == ours["envFrom"]
        assert container["args"][:3] == ["python", "-m", "airflow.sdk.execution_time.execute_workload"]
        assert {"name": "AIRFLOW_IS_K8S_EXECUTOR_POD", "value": "True"} in container["env"]
        for item in ours.get("env", []):
            assert item in container["env"]
        assert all(v in spec["volumes"] for v in template["spec"]["volumes"])
        assert all(m in container["volumeMounts"] for m in ours["volumeMounts"])
    overridden = pods["overridden"]["spec"]
    assert {"name": "scratch", "emptyDir": {}} in overridden["volumes"]
    # The executor merges field by field, not deeply: an override's `resources` replaces ours whole, requests
    # included (a team that overrides resources must give requests too).
    assert overridden["containers"][0]["resources"] == {"limits": {"memory": "8Gi"}}
    assert {"name": "scratch", "mountPath": "/scratch"} in overridden["containers"][0]["volumeMounts"]


# --- 4. the FAB webserver_config.py -----------------------------------------------------------------------


def test_oidc_webserver_config_loads_under_fab_and_maps_groups_to_roles(probes, stacks):
    rendered = stacks["prod-oidc"]
    fab = probed(probes, "prod-oidc", "fab")
    assert fab["config_file"] == "/opt/airflow/webserver/webserver_config.py"
    assert fab["loaded"] is True, "FAB skipped the webserver_config.py (silent load)"
    assert fab["auth_type"] == "AUTH_OAUTH"
    assert fab["has_auth_role_public"] is False
    assert fab["security_manager"] == {"name": "GroupsFromOidcClaims", "extends_airflow_override": True}
    settings = fab["settings"]
    assert settings["AUTH_ROLES_MAPPING"] == {
        "airflow-prod-admins": ["Admin"], "airflow-prod-ops": ["Op"], "airflow-prod-users": ["User"]
    }
    assert settings["AUTH_ROLES_SYNC_AT_LOGIN"] is True
    assert settings["AUTH_USER_REGISTRATION"] is True
    assert settings["AUTH_USER_REGISTRATION_ROLE"] == "Public"
    (provider,) = fab["oauth_providers"]
    # The client secret came from the mounted Secret file, not from the config text.
    assert provider["remote_app"]["client_secret"] == TEST_SECRETS["authOidcClientSecret"]
    assert TEST_SECRETS["authOidcClientSecret"] not in rendered.webserver["webserver_config.py"]
    assert fab["oauth_clients"] == {
        "oidc": {"client_id": "airflow-prod", "client_kwargs": {"scope": "openid email profile groups"}}
    }
    expected_user = {"username": "jdoe", "email": "jdoe@example.org", "first_name": "J", "last_name": "Doe",
                     "role_keys": ["ops", "data-engineers"]}
    assert fab["user_info"] == expected_user
    assert fab["user_info_from_endpoint"] == expected_user


def test_ldap_webserver_config_loads_under_fab_with_the_bind_password_from_its_file(probes, stacks):
    rendered = stacks["prod-ldap"]
    fab = probed(probes, "prod-ldap", "fab")
    assert fab["loaded"] is True, "FAB skipped the webserver_config.py (silent load)"
    assert fab["auth_type"] == "AUTH_LDAP"
    assert fab["has_auth_role_public"] is False
    assert fab["security_manager"] is None
    settings = fab["settings"]
    assert settings["AUTH_ROLES_MAPPING"] == LDAP_AUTH["roleMapping"]
    assert settings["AUTH_ROLES_SYNC_AT_LOGIN"] is True
    assert settings["AUTH_USER_REGISTRATION_ROLE"] == "Viewer"
    assert settings["AUTH_LDAP_SERVER"] == LDAP_AUTH["ldapUri"]
    assert settings["AUTH_LDAP_SEARCH"] == LDAP_AUTH["ldapSearchBase"]
    assert settings["AUTH_LDAP_BIND_USER"] == LDAP_AUTH["ldapBindDn"]
    assert settings["AUTH_LDAP_BIND_PASSWORD"] == LDAP_BIND_PASSWORD
    assert settings["AUTH_LDAP_UID_FIELD"] == "uid" and settings["AUTH_LDAP_GROUP_FIELD"] == "memberOf"
    assert LDAP_BIND_PASSWORD not in rendered.webserver["webserver_config.py"]


@pytest.mark.parametrize("stack", ["prod-oidc", "prod-ldap"])
def test_webserver_config_imports_only_what_it_uses(stacks, stack):
    tree = ast.parse(stacks[stack].webserver["webserver_config.py"])
    imported = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names
    }
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported <= used, f"unused imports: {sorted(imported - used)}"


# --- 5. the simple auth manager ---------------------------------------------------------------------------


def test_simple_auth_manager_logs_the_admin_in_through_the_read_only_secret_volume(probes, stacks):
    rendered = stacks["dev"]
    password = rendered.run.exports["admin_password"]
    assert json.loads(rendered.webserver["simple_auth_manager_passwords.json"]) == {"admin": password}
    # The Secret volume is read-only and SimpleAuthManager opens the file read-write, so the api-server
    # works on a copy an init container makes in a writable in-memory volume.
    spec = rendered.deployment("api-server")
    (copy,) = [c for c in spec["initContainers"] if c["name"] == "copy-simple-auth-passwords"]
    assert copy["command"] == ["install", "-m", "0600", "/opt/airflow/webserver/simple_auth_manager_passwords.json",
                               "/opt/airflow/simple-auth/simple_auth_manager_passwords.json"]
    assert {"name": "simple-auth", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} in spec["volumes"]

    found = probed(probes, "dev", "simple_auth")
    assert found["passwords_file"] == "/opt/airflow/simple-auth/simple_auth_manager_passwords.json"
    assert found["users"] == [["admin", "admin"]]
    assert found["passwords"] == {"admin": password}
    assert found["token_claims"]["sub"] == "admin" and found["token_claims"]["role"] == "admin"
    assert found["wrong_password"] == 401


# --- command lines ----------------------------------------------------------------------------------------


@ALL_STACKS
def test_every_command_line_we_give_the_airflow_image_parses(probes, stack):
    parsed = probed(probes, stack, "cli")
    failures = [f"{p['where']}: airflow {' '.join(p['argv'])}\n{p['error']}" for p in parsed if not p["ok"]]
    assert not failures, "\n".join(failures)
    by_where = {p["where"]: p for p in parsed}
    assert {p["func"] for p in parsed} >= {"api_server", "scheduler", "dag_processor", "triggerer", "migratedb",
                                           "check_migrations", "check"}
    for where, p in by_where.items():
        if where.endswith("livenessProbe") and "jobs" in p["argv"]:
            # `--local` alone: Airflow refuses it with `--hostname` (the probes run for real further down).
            assert p["args"]["local"] == "True" and p["args"]["hostname"] == "None"
    cleanup = [p for p in parsed if p["argv"][:2] == ["db", "clean"]]
    if cleanup:
        # The shell computed a timestamp Airflow accepts, retention days in the past.
        assert cleanup[0]["args"]["clean_before_timestamp"].startswith(("19", "20"))


# --- a read-only root filesystem ----------------------------------------------------------------------------


def airflow_containers(rendered: Rendered) -> list[tuple[str, dict, dict]]:
    """(where, container, pod spec) for every container of the stack that runs Airflow code: its Deployments',
    Jobs' and CronJobs' containers and init containers, and the task pod template's."""
    image = rendered.pod_template["spec"]["containers"][0]["image"]
    specs = [("task pod", rendered.pod_template["spec"])]
    for workload in [*rendered.run.of_kind("Deployment"), *rendered.run.of_kind("Job"), *rendered.run.of_kind("CronJob")]:
        spec = workload.inputs["spec"]
        specs.append((workload.k8s_name, (spec["template"] if "template" in spec else spec["jobTemplate"]["spec"]["template"])["spec"]))
    found = []
    for name, spec in specs:
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            command = container.get("command") or ["airflow"]  # the image's entrypoint runs `airflow <args>`
            if container.get("image") == image and (command[0] == "airflow" or "exec airflow " in command[-1]):
                found.append((f"{name}/{container['name']}", container, spec))
    return found


def container_environment(rendered: Rendered, container: dict) -> dict[str, str]:
    """The environment the kubelet gives `container`: its ConfigMaps and Secrets whole, then its own env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        env.update(rendered.volume_files({"configMap": {"name": ref["name"]}} if "configMapRef" in source
                                         else {"secret": {"secretName": ref["name"]}}))
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = rendered.volume_files({"secret": {"secretName": ref["name"]}})[ref["key"]]
    return env


def run_on_read_only_home(python: Path, work: Path, container: dict, spec: dict, env: dict[str, str],
                          argv: list[str]) -> subprocess.CompletedProcess:
    """`airflow <argv>` with the container's environment, AIRFLOW_HOME on a read-only bind mount as the image's
    /opt/airflow is under readOnlyRootFilesystem, and the container's emptyDirs below it writable. A private mount
    namespace (unshare -m) keeps the mounts from the machine and ends with the command; root is not exempt from a
    read-only mount, as it is from permission bits."""
    home = work / "airflow-home"
    home.mkdir(parents=True)
    empty_dirs = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
    script = [f"mount --bind {home} {home}", f"mount -o remount,bind,ro {home}"]
    for mount in container.get("volumeMounts", []):
        if mount["name"] in empty_dirs and mount["mountPath"].startswith(kube.AIRFLOW_HOME + "/"):
            inside = home / mount["mountPath"][len(kube.AIRFLOW_HOME) + 1:]
            inside.mkdir(parents=True)
            writable = work / "empty-dirs" / mount["name"]
            writable.mkdir(parents=True)
            script.append(f"mount --bind {writable} {inside}")
    script.append('exec "$@"')
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    full_env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8", **env,
                "AIRFLOW_HOME": str(home)}
    return subprocess.run([*unshare, "sh", "-c", "\n".join(script), "sh", "airflow", *argv], env=full_env, cwd=work,
                          capture_output=True, text=True, timeout=PROBE_TIMEOUT)


def test_every_airflow_container_starts_with_its_home_on_a_read_only_filesystem(airflow_python, stacks, tmp_path):
    # The first deploy on a real node: every Airflow container exited at start with `OSError: [Errno 30]
    # Read-only file system: '/opt/airflow/airflow.cfg'`, because `airflow` writes a default airflow.cfg before
    # any subcommand but `version` unless AIRFLOW_CONFIG names a file that exists. `config get-value` needs no
    # database and goes through that same start; prod-ldap has every kind of Airflow container (Kerberos on).
    rendered = stacks["prod-ldap"]
    containers = airflow_containers(rendered)
    assert {"task pod/base", "prod-migrate-3-3-2/migrate", "prod-cleanup/db-clean", "prod-kerberos/renewer",
            "prod-scheduler/wait-for-migrations", "prod-api-server/api-server", "prod-triggerer/triggerer"} <= {
        where for where, _, _ in containers}
    argv = ["config", "get-value", "core", "executor"]
    where, container, spec = next(item for item in containers if item[0].endswith("/migrate"))
    env = {k: v for k, v in container_environment(rendered, container).items() if k != "AIRFLOW_CONFIG"}
    before = run_on_read_only_home(airflow_python, tmp_path / "without", container, spec, env, argv)
    assert before.returncode != 0 and "Read-only file system" in before.stderr and "airflow.cfg" in before.stderr, (
        f"without AIRFLOW_CONFIG, {where} should fail as on the node:\n{_tail(before.stdout)}\n{_tail(before.stderr)}")

    # Containers with the same environment and mounts (the init containers, the migration and clean-up jobs)
    # start alike: one run each.
    distinct = {}
    for where, container, spec in containers:
        env = container_environment(rendered, container)
        key = json.dumps([env, container.get("volumeMounts", [])], sort_keys=True)
        distinct.setdefault(key, (where, container, spec, env))

    def run(index: int, item) -> tuple[str, subprocess.CompletedProcess]:
        where, container, spec, env = item
        return where, run_on_read_only_home(airflow_python, tmp_path / str(index), container, spec, env, argv)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(len(distinct)), distinct.values()))
    failures = [f"{where}: exit {proc.returncode}\n{_tail(proc.stderr, 8)}" for where, proc in results if proc.returncode]
    assert not failures, "\n".join(failures)
    # The renewer reads no instance config: the default executor.
    assert {proc.stdout.strip().splitlines()[-1] for _, proc in results} == {"KubernetesExecutor", "LocalExecutor"}


# --- bonus: the migration against a real PostgreSQL ------------------------------------------------------


def _postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres") or shutil.which("initdb")
    return Path(found).resolve().parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on a free localhost port (initdb refuses root: as `postgres` then).
    Yields (port, run_sql)."""
    bin_dir = _postgres_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root and there is no runuser to drop to the `postgres` user")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="airflow-platform-pg-"))
    root.chmod(0o755)
    data, sockets = root / "data", root / "sockets"
    for path in (data, sockets):
        path.mkdir()
        if as_user:
            shutil.chown(path, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*argv, **kwargs):
        return subprocess.run([*as_user, *map(str, argv)], check=True, capture_output=True, text=True, timeout=60,
                              **kwargs)

    started = False
    try:
        # Sockets trust the superuser (test set-up only); TCP, which Airflow uses, checks passwords.
        run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256")
        run(bin_dir / "pg_ctl", "-D", data, "-l", sockets / "server.log", "-w", "-t", "30", "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        started = True

        def sql(statement: str, database: str = "postgres"):
            return run(bin_dir / "psql", "-h", sockets, "-p", port, "-U", "postgres", "-d", database,
                       "-v", "ON_ERROR_STOP=1", "-c", statement)

        yield port, sql
    except subprocess.CalledProcessError as e:
        pytest.fail(f"could not start PostgreSQL: {e.cmd}\n{e.stdout}\n{e.stderr}")
    finally:
        if started:
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def workload_container(rendered: Rendered, workload_kind: str, name: str) -> dict:
    workload = rendered.run.one(workload_kind).inputs["spec"]
    template = workload["template"] if "template" in workload else workload["jobTemplate"]["spec"]["template"]
    return next(c for c in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]
                if c["name"] == name)


def airflow_command(env: dict[str, str], argv: list[str]) -> None:
    proc = subprocess.run(["airflow", *argv], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"airflow {' '.join(argv)} failed:\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"


@pytest.fixture(scope="module")
def migrated_database(airflow_python, stacks, postgres, tmp_path_factory):
    """prod-oidc's database on the throwaway server, owned by the user its URL names, migrated by the migration
    Job's own command. Yields (the stack's environment pointed at it, run_sql in it)."""
    rendered = stacks["prod-oidc"]
    port, sql = postgres
    # The URL shape we generate, pointed at the throwaway server instead of the pooler Service.
    url = urlsplit(rendered.secret_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (url.scheme, url.username, url.path, url.port) == ("postgresql", "airflow", "/airflow", 5432)
    sql(f"CREATE ROLE {url.username} LOGIN PASSWORD '{url.password}'")
    sql(f"CREATE DATABASE {url.path.lstrip('/')} OWNER {url.username}")
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "PATH": f"{airflow_python.parent}:/usr/bin:/bin",
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        "LANG": "C.UTF-8",
        **rendered.env,
        "AIRFLOW_CONFIG": kube.AIRFLOW_CONFIG_FILE,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{port}").geturl(),
    }
    airflow_command(env, workload_container(rendered, "Job", "migrate")["args"])  # the migration Job: airflow db migrate
    yield env, lambda statement: sql(statement, database=url.path.lstrip("/"))


def test_the_migration_job_and_the_wait_and_clean_up_commands_work_on_postgres(stacks, migrated_database):
    rendered = stacks["prod-oidc"]
    env, _ = migrated_database  # migrated by the migration Job's command
    airflow = functools.partial(airflow_command, env)
    container = functools.partial(workload_container, rendered)
    wait = next(c for c in rendered.deployment("scheduler")["initContainers"] if c["name"] == "wait-for-migrations")
    airflow(wait["args"])  # every component's init container: returns once the schema is current
    cleanup = rendered.run.of_kind("CronJob")
    if cleanup:  # the db clean-up CronJob's shell command, with `airflow` on PATH
        command = container("CronJob", "db-clean")["command"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{command} failed:\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"


@pytest.mark.parametrize("component,job_type", [("dag-processor", "DagProcessorJob"), ("triggerer", "TriggererJob")])
def test_the_job_probes_pass_for_this_pods_live_job_and_fail_without_one(airflow_python, stacks, migrated_database,
                                                                       component, job_type):
    # On the first real node these probes were `--local --hostname "$HOSTNAME"`, which Airflow refuses whatever
    # the database holds ("You can't use --hostname and --local at the same time"): the pods never became ready.
    rendered = stacks["prod-oidc"]
    env, sql = migrated_database
    container = rendered.deployment(component)["containers"][0]
    command = container["livenessProbe"]["exec"]["command"]
    assert container["readinessProbe"]["exec"]["command"] == command
    # The hostname a job records and `--local` looks for, as Airflow computes it on this machine (in a pod: the pod's).
    hostname = subprocess.run([str(airflow_python), "-c", "from airflow.utils.net import get_hostname; print(get_hostname())"],
                              env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=True).stdout.splitlines()[-1]
    # The kubelet runs an exec probe inside the container: its environment, HOSTNAME the pod's name.
    probe_env = {**env, **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}, "HOSTNAME": hostname}

    def probe() -> subprocess.CompletedProcess:
        return subprocess.run(command, env=probe_env, capture_output=True, text=True, timeout=PROBE_TIMEOUT)

    def only_job(host: str | None, heartbeat_age_seconds: int = 0) -> None:
        sql(f"DELETE FROM job WHERE job_type = '{job_type}'")
        if host is not None:
            sql("INSERT INTO job (job_type, state, hostname, unixname, start_date, latest_heartbeat) VALUES "
                f"('{job_type}', 'running', '{host}', 'airflow', now(), now() - interval '{heartbeat_age_seconds} seconds')")

    only_job(hostname)
    alive = probe()
    assert alive.returncode == 0 and "Found one alive job." in alive.stdout, f"{command}:\n{alive.stdout}\n{alive.stderr}"
    for case, host, age in (("no job", None, 0), ("another pod's job", f"{hostname}-other", 0),
                            ("a job without a heartbeat for a day", hostname, 86400)):
        only_job(host, age)
        dead = probe()
        assert dead.returncode != 0 and "No alive jobs found." in dead.stdout + dead.stderr, (
            f"{case}: {command}:\n{dead.stdout}\n{dead.stderr}")
