"""The three stacks the tests in this folder check against the real Airflow 3.3.2 (dev with the simple auth manager, a
prod with OIDC, a prod-like one with LDAP, Kerberos and git-sync), rendered under mocks; their pods' volumes laid
out in a temp dir; and the probe (probe_in_airflow.py) run with a stack's environment in the Airflow venv.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from testbed.harness import run_stack
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS, stack_file_config
from tests.airflow.venv import _tail

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


# The probe (probe_in_airflow.py) runs inside the Airflow venv.
PROBE = Path(__file__).with_name("probe_in_airflow.py")


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
    (work / "probe.py").write_text(PROBE.read_text())
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


def probed(probes, stack: str, task: str):
    result = probes[stack][task]
    assert result["ok"], f"the {task} probe of {stack} raised inside Airflow:\n{result['error']}"
    return result["value"]


ALL_STACKS = pytest.mark.parametrize("stack", list(STACKS))
