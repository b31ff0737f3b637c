"""Runs inside the Airflow venv (scripts/airflow-venv), started by rendered_stacks.run_probe with a request file:
maps the pod's container paths onto the temp dir the test laid its volumes out in (refusing writes to Secret and
ConfigMap volumes with EROFS, as the kubelet does), runs the tasks the request names against Airflow's own code,
and writes what each returned or raised. Not imported by the tests: read and run as a program."""

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
