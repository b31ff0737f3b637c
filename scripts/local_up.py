"""The embedded default, run by `scripts/local-up` once the venv and the Pulumi toolchain are there.

One Airflow instance (the `local` stack) rendered as Kubernetes YAML into rendered/local/, with its log bucket
really created on a local S3 endpoint (moto's server on 127.0.0.1, left running for the next run). State is a
file backend under .local/ with a passphrase that protects only this throw-away state. It ends with the one
`kubectl apply` that applies the folder, and with what the pods are told about S3: the local endpoint is on
this machine's loopback, which no pod reaches, unless the stack file says otherwise (s3.podEndpointUrl).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from pulumi import automation as auto

# The standard library alone up to here, and in build_parser(): scripts/local-up checks the arguments with it
# before it sets up the venv and the toolchain. The engine is imported where it is used.

LOCAL = ROOT / ".local"
STACK = os.environ.get("AIRFLOW_PLATFORM_LOCAL_STACK", "local")
RENDERED = ROOT / "rendered" / STACK
PASSPHRASE = os.environ.get("PULUMI_CONFIG_PASSPHRASE", "local-embedded-default")


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
        return True
    except OSError:
        return False


def s3_endpoint() -> tuple[str, bool]:
    """The local S3 endpoint's URL, and whether it was started just now (so it is empty)."""
    pid_file, port_file = LOCAL / "moto.pid", LOCAL / "moto.port"
    if pid_file.exists() and port_file.exists() and _alive(pid_file):
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        if _answers(url):  # a live pid alone could be another process by now
            return url, False
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    say(f"starting the local S3 endpoint (moto) on 127.0.0.1:{port}")
    log = open(LOCAL / "moto.log", "ab")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=log, start_new_session=True,  # outlives this run, for the next one
    )
    pid_file.write_text(str(server.pid))
    port_file.write_text(str(port))
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if _answers(url):
            return url, True
        time.sleep(0.1)
    raise SystemExit(f"local-up: the local S3 endpoint did not start; see {LOCAL / 'moto.log'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/local-up",
        description="The embedded default: the `local` stack rendered as Kubernetes YAML into rendered/local/, its log "
        "bucket created on a local S3 endpoint, state in a file backend under .local/. With no argument: deploy.",
    )
    parser.add_argument("--show", metavar="OUTPUT",
                        help="print one output of the local stack, secrets revealed (e.g. admin_password), and stop")
    return parser


def main() -> int:
    from engine import Backend, open_stack

    LOCAL.mkdir(exist_ok=True)
    (LOCAL / "state").mkdir(exist_ok=True)
    endpoint, fresh = s3_endpoint()
    backend = Backend(url=f"file://{LOCAL / 'state'}", passphrase=PASSPHRASE)
    stack = open_checked(lambda: open_stack(STACK, backend), discarding=fresh)
    if stack is None:
        return 1
    if fresh and stack.info() is not None:
        # A new endpoint starts empty: state from an earlier one describes a bucket that is gone.
        say(f"the local S3 endpoint is new: starting the '{STACK}' stack afresh")
        stack.workspace.remove_stack(STACK, force=True)
        stack = open_stack(STACK, backend)

    stack.set_config("kubernetesRenderDir", _plain(str(RENDERED)))
    stack.set_config("s3.endpointUrl", _plain(endpoint), path=True)
    stack.set_config("s3.forceDestroy", _plain("true"), path=True)
    stack.set_config("postgres.backups.enabled", _plain("true"), path=True)
    # One key per job, as on a real store (the local endpoint accepts any): provisioning, logs, backups.
    for job in ("", "Log", "Backup"):
        stack.set_config(f"s3{job}AccessKeyId", _secret(f"local-{job.lower() or 'provisioning'}-access-key"))
        stack.set_config(f"s3{job}SecretAccessKey", _secret(f"local-{job.lower() or 'provisioning'}-secret-key"))

    say(f"pulumi up of the '{STACK}' stack (inline program, file backend {LOCAL / 'state'})")
    os.umask(0o077)  # rendered Secrets hold plain text
    started = time.monotonic()
    result = deploy(stack, on_output=lambda line: print(line, end="" if line.endswith("\n") else "\n"))
    if result is None:
        return 1
    for path in [RENDERED.parent, *RENDERED.parent.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    changes = {kind: count for kind, count in (result.summary.resource_changes or {}).items() if kind != "same"}
    say(f"done in {time.monotonic() - started:.1f}s; changes: {changes or 'none'}")
    print(report(stack, result, endpoint))
    return 0


def report(stack: auto.Stack, result: auto.UpResult, endpoint: str) -> str:
    """What every run ends with, whether the update changed something or nothing: where the manifests and the
    bucket are, the stack's outputs, what pods are told about S3, and the next steps. The outputs are the stack's
    own when the update's result carries none."""
    outputs = result.outputs or stack.outputs()
    lines = [f"\nKubernetes manifests: {RENDERED} (Secrets in plain text: owner-only, git-ignored)",
             f"Log bucket on the local S3 endpoint {endpoint} (moto, pid {(LOCAL / 'moto.pid').read_text()})\n"]
    lines += [f"  {name:18} {'[secret]' if output.secret else output.value}" for name, output in sorted(outputs.items())]
    lines.append(f"\n{pod_endpoint_notice(stack_s3_config(stack), endpoint)}")
    lines.append(f"""
Next:
  - apply to a cluster that has CloudNativePG 1.30 and the Barman Cloud plugin (or commit the folder for Argo CD / Flux):
        {shlex.join(apply_command(RENDERED))}
  - the admin password: scripts/local-up --show admin_password
  - set up a real stack: README.md, "Running a real stack"
""")
    return "\n".join(lines)


def open_checked(open_stack, discarding: bool) -> auto.Stack | None:
    """The local stack, or None after saying what stops this run before it changes anything: an earlier run
    killed mid-update (its lock, unfinished operations or a half-written state file left in .local/state) or one
    still running, with the command that recovers (docs/recovering-an-interrupted-update.md). `discarding`: the
    stack is started afresh below (a new S3 endpoint), so only a stale lock, which would stop that, is removed."""
    import recovery

    try:
        return recovery.open_checked(open_stack, STACK, recover_as="--local", discarding=discarding)
    except recovery.DeployFailed as refused:
        print(f"local-up: {refused}", file=sys.stderr)
        return None


def deploy(stack: auto.Stack, on_output) -> auto.UpResult | None:
    """`up` of the local stack; when it fails, what failed where (the S3 endpoint, a resource) is printed once,
    without a traceback, and None returned."""
    import recovery

    try:
        return recovery.up(stack, recover_as="--local", check_first=False, on_output=on_output, color="never")
    except recovery.DeployFailed as failed:
        print(f"local-up: {failed}", file=sys.stderr)
        return None


def apply_command(rendered: Path) -> list[str]:
    """`kubectl apply` of the rendered folder in one pass. The kubernetes provider writes CustomResourceDefinitions
    to 0-crd/ (empty for us: the operators' CRDs are the cluster's) and every other object to 1-manifest/, one file
    each named `<apiVersion>-<kind>-<namespace>-<name>.yaml`; kubectl applies a folder in file-name order, in which
    the Namespace comes after most objects inside it, and refuses a folder without manifests. So: the CRDs if any,
    the Namespaces, then everything (a Namespace applied twice is unchanged the second time)."""
    crds = sorted((rendered / "0-crd").glob("*.yaml"))
    manifests = sorted((rendered / "1-manifest").glob("*.yaml"))
    namespaces = [path for path in manifests if _kind(path) == "Namespace"]
    command = ["kubectl", "apply"]
    for path in [*crds, *namespaces]:
        command += ["-f", str(path)]
    return [*command, "-f", str(rendered / "1-manifest")]


def _kind(path: Path) -> str | None:
    import yaml

    return (yaml.safe_load(path.read_text()) or {}).get("kind")


def stack_s3_config(stack: auto.Stack) -> dict:
    value = stack.get_all_config().get("airflow-platform:s3")
    return json.loads(value.value) if value is not None and value.value else {}


def pod_endpoint_notice(s3: dict, endpoint: str) -> str:
    """What the rendered pods are told about S3, and what to do when that is this machine's loopback."""
    from urllib.parse import urlsplit

    from components.settings.stack_rules import is_loopback_host

    url = s3.get("podEndpointUrl") or s3.get("endpointUrl") or endpoint
    source = "s3.podEndpointUrl" if s3.get("podEndpointUrl") else "s3.podEndpointUrl is unset, so s3.endpointUrl"
    if not is_loopback_host(urlsplit(url).hostname or ""):
        return f"Pods are told S3 is at {url} ({source}): the log connection and the database's backups."
    return f"""WARNING: pods are told S3 is at {url} ({source}): this machine's loopback, which no pod reaches.
  The bucket was provisioned there, but on a cluster the log connection and the database's backups would fail.
  Before applying {RENDERED} to a cluster, serve S3 where pods reach it and say so in Pulumi.{STACK}.yaml
  (kept by the next run), e.g.
      airflow-platform:s3:
        podEndpointUrl: http://<an address pods reach>:<port>
  then run scripts/local-up again. `pulumi up` to a cluster refuses a loopback s3.podEndpointUrl."""


def show(output: str) -> None:
    """Prints one stack output, secrets revealed (for the admin password of the embedded default)."""
    from engine import Backend, open_stack

    stack = open_stack(STACK, Backend(url=f"file://{LOCAL / 'state'}", passphrase=PASSPHRASE), create=False)
    print(stack.outputs()[output].value)


def _plain(value: str) -> auto.ConfigValue:
    from pulumi import automation as auto

    return auto.ConfigValue(value=value)


def _secret(value: str) -> auto.ConfigValue:
    from pulumi import automation as auto

    return auto.ConfigValue(value=value, secret=True)


if __name__ == "__main__":
    arguments = build_parser().parse_args()
    if arguments.show is not None:
        show(arguments.show)
        sys.exit(0)
    sys.exit(main())
