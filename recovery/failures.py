"""A failed update explained: the resource errors of the engine's output, grouped by what went wrong, naming the
service and its endpoint when it was one that did not answer."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    type: str
    name: str
    message: str

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


_DIAGNOSTIC_HEADER = re.compile(r"^  (?P<type>[\w./-]+:[\w./-]*:[\w./-]+) \((?P<name>[^)]*)\):\s*$")
_K8S_UNREACHED = re.compile(r'(?:Get|Post|Patch|Put|Delete|Head) "(?P<base>https?://[^/"]+)[^"]*": (?P<cause>.+)$')
_S3_UNREACHED = re.compile(r"the S3 endpoint (?P<base>\S+) could not be reached while (?P<action>\w+) bucket '(?P<bucket>[^']+)' \((?P<cause>.*?)\)\.")
_GENERIC_ENGINE_ERRORS = {"update failed", "preview failed", "refresh failed", "destroy failed"}


def failures_in(output: str) -> list[Failure]:
    """The resource errors of the engine's `Diagnostics:` section."""
    section = output.split("\nDiagnostics:\n", 1)[-1] if "\nDiagnostics:\n" in output else ""
    failures, current = [], None
    for line in section.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            break  # the next section (Outputs:, Resources:)
        if header := _DIAGNOSTIC_HEADER.match(line):
            current = header
            continue
        text = line.strip()
        if current is not None and text.startswith("error: "):
            message = text.removeprefix("error: ").removeprefix("Exception calling application: ")
            if message not in _GENERIC_ENGINE_ERRORS:
                failures.append(Failure(current["type"], current["name"], message))
    return failures


def cause_of(failure: Failure) -> str:
    """What went wrong, in words that name the service and its endpoint when it was one not answering."""
    if failure.type.startswith("kubernetes:") and (match := _K8S_UNREACHED.search(failure.message)):
        cause = match["cause"].rsplit(": ", 1)[-1] if "dial tcp" in match["cause"] else match["cause"]
        return f"the Kubernetes API server {match['base']} did not answer ({cause})"
    if match := _S3_UNREACHED.search(failure.message):
        return f"the S3 endpoint {match['base']} did not answer while {match['action']} bucket '{match['bucket']}' ({match['cause']})"
    return failure.message


def explain_failure(output: str, stack: str) -> str:
    failures = failures_in(output)
    if not failures:
        errors = [line.strip() for line in output.splitlines() if line.strip().startswith("error:")]
        detail = "\n".join(f"  {line}" for line in errors[-5:]) or "  (the engine gave no error message; its output is above)"
        return f"`pulumi up` of stack {stack} failed:\n{detail}"
    by_cause: dict[str, list[Failure]] = {}
    for failure in failures:
        by_cause.setdefault(cause_of(failure), []).append(failure)
    lines = [f"`pulumi up` of stack {stack} failed: {len(failures)} resource(s) not created or changed."]
    for cause, items in by_cause.items():
        names = ", ".join(f"{item.kind} {item.name}" for item in items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")
        lines.append(f"  - {cause}: {names}")
    lines.append("What was done before the failure is recorded in the state. Once the service is back, run the same "
                 "command again: it continues from there.")
    return "\n".join(lines)

