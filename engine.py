"""The Pulumi engine, driving our program inline through the Automation API.

Every tool of ours that runs the program (`scripts/local-up`, `python -m envs`, `scripts/ci-preview`, the
end-to-end tests) goes through `open_stack`: the Python SDK serves the language runtime in this process and the
CLI connects to it, so no Python language host is needed. `__main__.py` runs the same `airflow_instance()`
for `pulumi up` with an official CLI.

The engine's helpers that are not Go binaries (the dynamic-provider launcher that runs LogBucket's boto3
provider, the policy-pack launcher) run Python: they get this interpreter, and `PYTHONPATH` names the
project so that the pickled provider finds `components`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pulumi import automation as auto
from pulumi.runtime import rpc

from components.instance import airflow_instance
from components.log_bucket_provider import delete_refusal

ROOT = Path(__file__).resolve().parent
POLICY_PACK = ROOT / "policy"

# Offline machines: no update checks, no version probe, and never a download of a plugin we built.
OFFLINE = {
    "PULUMI_SKIP_UPDATE_CHECK": "true",
    "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
}


class ToolchainMissing(RuntimeError):
    """No usable Pulumi CLI: neither on PATH at the pinned version nor built by scripts/install-pulumi."""


def pulumi_bin() -> Path:
    """The directory of the pinned `pulumi` and its plugins, as scripts/install-pulumi reports it."""
    found = subprocess.run([str(ROOT / "scripts/install-pulumi"), "--print-bin"], capture_output=True, text=True)
    directory = Path(found.stdout.strip()) if found.returncode == 0 else None
    if directory is None or not (directory / "pulumi").exists():
        raise ToolchainMissing(
            "no Pulumi CLI at the pinned version: install Pulumi (https://www.pulumi.com/docs/install/) or run "
            "scripts/install-pulumi to build it from Go modules"
        )
    return directory


@dataclass
class Backend:
    """Where state lives and how its secrets are encrypted; None keeps what the environment says."""

    url: str | None = None
    passphrase: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, bin_dir: Path) -> dict[str, str]:
        env = {
            **OFFLINE,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            # The dynamic-provider and policy launchers run this interpreter, which has our requirements.
            "PULUMI_PYTHON_CMD": sys.executable,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        if self.url:
            env["PULUMI_BACKEND_URL"] = self.url
        if self.passphrase is not None:
            env["PULUMI_CONFIG_PASSPHRASE"] = self.passphrase
        return {**env, **self.extra_env}


def workspace(
    backend: Backend | None = None, *, work_dir: Path = ROOT, program: Callable[[], None] = airflow_instance
) -> auto.LocalWorkspace:
    """The project in `work_dir` (its `Pulumi.yaml` and `Pulumi.<stack>.yaml` files), its program run inline."""
    bin_dir = pulumi_bin()
    return auto.LocalWorkspace(
        work_dir=str(work_dir),
        program=program,
        pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent), skip_version_check=True),
        env_vars=(backend or Backend()).env(bin_dir),
    )


def open_stack(
    name: str,
    backend: Backend | None = None,
    *,
    work_dir: Path = ROOT,
    create: bool = True,
    program: Callable[[], None] = airflow_instance,
) -> auto.Stack:
    """Select (or create) stack `name`. `work_dir` is the repository for committed stacks and a scratch copy
    of `Pulumi.yaml` for throw-away ones (tests)."""
    ws = workspace(backend, work_dir=work_dir, program=program)
    return auto.Stack.create_or_select(name, ws) if create else auto.Stack.select(name, ws)


def preview(stack: auto.Stack, *, policy: bool = True, **kwargs) -> auto.PreviewResult:
    """A preview that, like every merge-request preview, runs the policy pack."""
    if policy:
        kwargs.setdefault("policy_packs", [str(POLICY_PACK)])
    return stack.preview(color="never", **kwargs)


class DestroyRefused(RuntimeError):
    """Destroying the stack would stop part-way: nothing has been deleted."""


BUCKET_TYPE = "pulumi-python:dynamic:S3Bucket"


def revealed(value):
    """A value from `stack export --show-secrets`, with secrets as their plain values."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return json.loads(value["plaintext"]) if "plaintext" in value else value.get("value")
        return {key: revealed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [revealed(item) for item in value]
    return value


def destroy_blockers(stack: auto.Stack) -> list[str]:
    """What would make `destroy` fail, found before it deletes anything: the engine deletes every dependent
    of the bucket before the bucket, so a bucket refused at the end would leave a half-removed instance."""
    resources = (stack.export_stack().deployment or {}).get("resources") or []
    blockers = []
    for resource in resources:
        if resource.get("protect"):
            blockers.append(f"{resource['urn']} is protected: set protect false and `up` first (prod keeps data on purpose)")
        elif resource.get("type") == BUCKET_TYPE and not resource.get("retainOnDelete"):
            if refusal := delete_refusal(revealed(resource.get("outputs") or {})):
                blockers.append(refusal)
    return blockers


def destroy(stack: auto.Stack, **kwargs) -> auto.DestroyResult:
    """`destroy` that refuses up front, with every reason, when the engine would refuse part-way."""
    if blockers := destroy_blockers(stack):
        raise DestroyRefused(
            f"not destroying stack '{stack.name}'; nothing was deleted:\n" + "\n".join(f"  - {b}" for b in blockers)
        )
    return stack.destroy(color="never", **kwargs)
