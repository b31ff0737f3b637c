"""Runs the real `__main__.py` under Pulumi's mocks and records what it asks for.

Mocks are process-global, so every run resets the runtime, sets fresh mocks and config, and runs the
program to completion: tests share nothing and their order does not matter. A run of `__main__.py` depends
on its config and stack alone, so a repeated one is answered with a copy of the first (half of the quick
loop's runs are repeats).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "airflow-platform"
SECRET_SIGNATURE = rpc._special_secret_sig


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict
    secret_paths: set[str]
    parent: str | None = None
    protect: bool = False
    retain_on_delete: bool = False
    dependencies: tuple[str, ...] = ()
    urn: str = ""

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    @property
    def metadata(self) -> dict:
        return self.inputs.get("metadata", {})

    @property
    def k8s_name(self) -> str | None:
        return self.metadata.get("name")


@dataclass
class StackRun:
    resources: list[Resource] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    secret_exports: set[str] = field(default_factory=set)

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind]

    def one(self, kind: str, name_suffix: str | None = None) -> Resource:
        found = [r for r in self.of_kind(kind) if name_suffix is None or (r.k8s_name or "").endswith(name_suffix)]
        assert len(found) == 1, f"expected one {kind} ending {name_suffix!r}, found {[r.k8s_name for r in found]}"
        return found[0]

    def by_pulumi_name(self, kind: str, name: str) -> Resource:
        found = [r for r in self.of_kind(kind) if r.name == name]
        assert len(found) == 1, f"expected one {kind} called {name}, found {len(found)}"
        return found[0]

    def named(self, name: str) -> Resource:
        found = [r for r in self.resources if r.k8s_name == name]
        assert len(found) == 1, f"expected one object named {name}, found {len(found)}"
        return found[0]


def _secret_paths(value: Any, path: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == SECRET_SIGNATURE:
            return {path or "."}
        for key, item in value.items():
            found |= _secret_paths(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found |= _secret_paths(item, f"{path}[{index}]")
    return found


def _unwrap_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == SECRET_SIGNATURE:
            return _unwrap_secrets(value.get("value"))
        return {key: _unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(item) for item in value]
    return value


def fake_random_value(typ: str, name: str, inputs: dict) -> dict:
    """Deterministic stand-ins for pulumi_random's results, distinctive so that a leak is easy to spot."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    if typ == "random:index/randomPassword:RandomPassword":
        return {"result": ("Pw" + digest)[: int(inputs.get("length", 32))]}
    if typ == "random:index/randomBytes:RandomBytes":
        raw = hashlib.sha256(("bytes" + name).encode()).digest()[: int(inputs.get("length", 32))]
        return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}
    if typ == "random:index/randomId:RandomId":
        raw = hashlib.sha256(name.encode()).digest()[: int(inputs.get("byteLength", 8))]
        return {"hex": raw.hex(), "b64Url": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return {}


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, run: StackRun):
        self.run = run

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        state.update(fake_random_value(args.typ, args.name, args.inputs))
        if args.typ.startswith("kubernetes:") and isinstance(state.get("metadata"), dict):
            state["metadata"] = {"name": args.name, **state["metadata"]}
        if args.typ.startswith("pulumi-python:dynamic:"):
            # What BucketProvider.create returns, derived the same way.
            state["logs_url"] = f"s3://{args.inputs.get('bucket')}/{args.inputs.get('log_prefix')}"
        return [f"{args.name}-id", state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps the raw request so tests can see which inputs travel as secrets (the mocks strip that)."""

    def __init__(self, mocks: RecordingMocks, run: StackRun, project: str, stack: str):
        super().__init__(mocks)
        self.run = run
        self.project, self.stack = project, stack

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The SDK's mock builds URNs from settings it reads on an executor thread, where they are the defaults
        # ("stack", "project") or whatever an inline program run earlier in this process left there; the policy
        # pack reads the stack from the URN.
        rest = super().make_urn(parent, type_, name).split("::", 2)[2]
        return f"urn:pulumi:{self.stack}::{self.project}::{rest}"

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object)
            inputs = _unwrap_secrets(rpc.deserialize_properties(request.object))
            resource = Resource(
                request.type,
                request.name,
                inputs,
                _secret_paths(raw),
                request.parent or None,
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                dependencies=tuple(request.dependencies),
                urn=response.urn,
            )
            extra = fake_random_value(request.type, request.name, inputs)
            if "result" in extra:
                resource.outputs_secret = extra["result"]
            elif "base64" in extra:
                resource.outputs_secret = extra["base64"]
            self.run.resources.append(resource)
        return response


def stack_config(values: dict[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to a program: structured values as JSON text, scalars as strings."""
    from components.settings.stack_files import config_text

    return {f"{PROJECT}:{key}": config_text(value) for key, value in values.items()}


_finished_runs: dict[str, StackRun] = {}


def run_stack(
    config: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    stack: str = "dev",
    program: Callable[[], Any] | None = None,
    preview: bool = False,
    run: StackRun | None = None,
) -> StackRun:
    """Run `__main__.py` (or `program`) under mocks with `config` plain and `secrets` as secret config.
    Pass `run` to keep what was registered even when the program raises."""
    if program is not None or run is not None:
        return _run_stack(config, secrets, stack, program, preview, run or StackRun())
    key = json.dumps([config, secrets, stack, preview], sort_keys=True, default=str)
    if key not in _finished_runs:
        # Only a run that finished is kept: one that raises raises again for the next caller.
        _finished_runs[key] = _run_stack(config, secrets, stack, None, preview, StackRun())
    return copy.deepcopy(_finished_runs[key])


def _run_stack(
    config: dict[str, Any] | None,
    secrets: dict[str, Any] | None,
    stack: str,
    program: Callable[[], Any] | None,
    preview: bool,
    run: StackRun,
) -> StackRun:
    config = dict(config or {})
    secrets = dict(secrets or {})
    pulumi.runtime.reset_options(project=PROJECT, stack=stack, preview=preview)
    mocks = RecordingMocks(run)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=RecordingMonitor(mocks, run, PROJECT, stack))
    pulumi.runtime.set_all_config(
        stack_config({**config, **secrets}), [f"{PROJECT}:{key}" for key in secrets]
    )

    exported: dict[str, pulumi.Output] = {}

    def export(name: str, value: Any) -> None:
        exported[name] = pulumi.Output.from_input(value)

    def main() -> None:
        original_export = pulumi.export
        pulumi.export = export
        try:
            if program is not None:
                program()
            else:
                runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        finally:
            pulumi.export = original_export

    _sync_await(run_pulumi_func(main))
    for name, output in exported.items():
        run.exports[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            run.secret_exports.add(name)
    return run
