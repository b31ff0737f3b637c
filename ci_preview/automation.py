"""Running the program: inline, through engine.py (the Automation API), with the policy pack."""

from __future__ import annotations

import re
from typing import Any, Callable

from ci_preview.changes import ROOT
from ci_preview.comment import StackResult
from ci_preview.redaction import env_secret_values, redact


def open_engine_stack(stack: str):
    """Stack `stack` of the repository, selected or created (a stack file committed in this change may name a
    stack the backend has not seen yet), with our program inline and the backend the environment names."""
    import engine

    try:
        return engine.open_stack(stack, engine.Backend())
    except engine.ToolchainMissing as missing:
        raise SystemExit(f"ci-preview: {missing}") from None


def _policy_pack() -> str:
    return str(ROOT / "policy")


def execute(handle, mode: str) -> str:
    """Preview (with the policy pack, as engine.preview does for every tool) or update one stack; its output."""
    if mode == "apply":
        import recovery

        # Not on a stack an interrupted deploy left, nor beside another deploy of it; a failure says what failed
        # (recovery.DeployFailed, reported as this stack's result). show_secrets=False: the SDK would otherwise
        # fetch the outputs in plain text after the update.
        result = recovery.up(handle, color="never", diff=True, suppress_outputs=True, policy_packs=[_policy_pack()],
                             show_secrets=False)
    else:
        import engine

        result = engine.preview(handle, diff=True, suppress_outputs=True)
    return result.stdout + result.stderr


_EXIT_CODE = re.compile(r"^\s*code: (-?\d+)", re.MULTILINE)


def run_stack(mode: str, stack: str, env: dict[str, str], open_stack: Callable[[str], Any] | None = None) -> StackResult:
    """Preview (`mode` "preview") or deploy ("apply") `stack`; its result with the output already redacted.

    `open_stack(name)` returns an Automation API stack (default: `open_engine_stack`, the repository's stacks on
    the backend the environment names); an engine error is a failed result, never an exception."""
    open_stack = open_stack or open_engine_stack
    secrets = env_secret_values(env)
    try:
        handle = open_stack(stack)
        # The decrypted values of the stack's secret config (what `pulumi config --show-secrets` prints).
        secrets += [str(value.value) for value in handle.get_all_config().values() if value.secret]
        return StackResult(stack, 0, redact(execute(handle, mode), secrets))
    except Exception as error:  # noqa: BLE001 - the Automation API raises CommandError and its subclasses
        match = _EXIT_CODE.search(str(error))
        code = int(match.group(1)) if match and match.group(1) != "0" else 1
        return StackResult(stack, code, redact(f"{type(error).__name__}: {error}", secrets))
