"""Merge-request previews and deploys of the stacks a change touches.

    scripts/ci-preview --base SHA [--head SHA] [--dry-run]     preview, post ONE comment on the MR/PR
    scripts/ci-preview --base SHA --apply                      `pulumi up` the changed stacks (merge to main)
    scripts/ci-preview --stack dev --dry-run                   preview named stacks, print the comment

Which stacks: a change to `Pulumi.<stack>.yaml` touches that stack; a change to the program (`__main__.py`,
`components/`, `Pulumi.yaml`, `requirements*.txt`, `policy/`) touches every stack with a committed stack
file. Branch environments (`Pulumi.br-*.yaml`, made by `python -m envs`) are never previewed or deployed here.

Every preview runs with the policy pack (`--policy-pack policy`). The comment carries a hidden marker, so a
new pipeline edits its earlier comment instead of adding one. Before anything is printed or posted, the
output is redacted: the stack's secret config values (`pulumi config --show-secrets --json`), the values of
secret-looking environment variables, PEM private keys, passwords in URLs and long base64/hex blobs.

Posting: GitLab (`GITLAB_TOKEN`, a token with `api` scope; CI_API_V4_URL, CI_PROJECT_ID,
CI_MERGE_REQUEST_IID from the job) or GitHub (`GITHUB_TOKEN`; GITHUB_REPOSITORY and the pull request number
from the event or --pr). Exit status: 0 when every stack previewed (or deployed) cleanly, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- airflow-platform-preview -->"
PROGRAM_PATHS = ("__main__.py", "Pulumi.yaml", "components/", "policy/")
STACK_FILE = re.compile(r"^Pulumi\.([A-Za-z0-9_.-]+)\.yaml$")
BRANCH_STACK_PREFIX = "br-"
MAX_COMMENT = 60000  # GitHub refuses comments over 65536 characters; GitLab allows far more
NULL_SHA = "0" * 40

# ---------------------------------------------------------------------------------------------------------
# Which stacks a change touches


def stack_of_file(path: str) -> str | None:
    match = STACK_FILE.match(path)
    return match.group(1) if match else None


def is_program_file(path: str) -> bool:
    if path in PROGRAM_PATHS or any(path.startswith(p) for p in PROGRAM_PATHS if p.endswith("/")):
        return True
    return "/" not in path and path.startswith("requirements") and path.endswith(".txt")


def deployable(stack: str) -> bool:
    return not stack.startswith(BRANCH_STACK_PREFIX)


def committed_stacks(root: Path = ROOT) -> list[str]:
    stacks = (stack_of_file(path.name) for path in root.glob("Pulumi.*.yaml"))
    return sorted(stack for stack in stacks if stack and deployable(stack))


def changed_stacks(changed_files: Iterable[str], stacks: Iterable[str]) -> list[str]:
    """The stacks (of `stacks`, those with a stack file at head) whose inputs `changed_files` touch."""
    stacks = sorted(set(stacks))
    changed_files = list(changed_files)
    if any(is_program_file(path) for path in changed_files):
        return stacks
    touched = {stack_of_file(path) for path in changed_files}
    return [stack for stack in stacks if stack in touched]


def deploy_order(stacks: Iterable[str]) -> list[str]:
    """Production last: if anything fails first, prod is never touched."""
    return sorted(stacks, key=lambda stack: (stack == "prod" or stack.startswith("prod-"), stack))


def git_changed_files(base: str, head: str, root: Path = ROOT) -> list[str]:
    result = subprocess.run(
        ["git", "diff", "--name-only", f"{base}...{head}"], cwd=root, capture_output=True, text=True, check=True
    )
    return [line for line in result.stdout.splitlines() if line]


# ---------------------------------------------------------------------------------------------------------
# Redaction

# Environment variables whose values never appear in a comment, by name and by what a name looks like.
ENV_DENYLIST = {
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_BACKEND_URL",
    "GITLAB_TOKEN",
    "GITHUB_TOKEN",
    "CI_JOB_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AIRFLOW_PLATFORM_S3_ACCESS_KEY_ID",
    "AIRFLOW_PLATFORM_S3_SECRET_ACCESS_KEY",
    "AIRFLOW_PLATFORM_GIT_SYNC_TOKEN",
    "AIRFLOW_PLATFORM_GIT_SYNC_SSH_KEY",
}
_SECRET_ENV_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSPHRASE|PRIVATE|CREDENTIAL|ACCESS_KEY|_KEY$")
MIN_SECRET_LENGTH = 6  # shorter values ("true", "1") would blank out ordinary words; secrets are longer

REDACTED = "[redacted]"
_PEM_PRIVATE = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*\Z)", re.DOTALL
)
_URL_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.IGNORECASE)
_BASE64_BLOB = re.compile(r"(?<![A-Za-z0-9+/=])(?=[A-Za-z0-9+/]*\d)(?=[A-Za-z0-9+/]*[A-Za-z])[A-Za-z0-9+/]{40,}={0,2}")
_HEX_BLOB = re.compile(r"\b[0-9a-fA-F]{32,}\b")


def env_secret_values(env: dict[str, str]) -> list[str]:
    return [value for name, value in env.items() if name in ENV_DENYLIST or _SECRET_ENV_NAME.search(name.upper())]


def secret_config_values(config_json: str) -> list[str]:
    """The secret values in `pulumi config --show-secrets --json` output."""
    values = []
    for entry in json.loads(config_json or "{}").values():
        if isinstance(entry, dict) and entry.get("secret"):
            value = entry.get("value")
            values.append(value if isinstance(value, str) else json.dumps(value))
    return values


def _variants(value: str) -> set[str]:
    """A secret as it may be printed: as is, JSON-escaped, and each long line of a multi-line value."""
    variants = {value, json.dumps(value)[1:-1]}
    variants |= {line.strip() for line in value.splitlines()}
    return {v for v in variants if len(v) >= MIN_SECRET_LENGTH}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without any of `secrets` and without anything that looks like a credential."""
    variants: set[str] = set()
    for secret in secrets:
        if secret:
            variants |= _variants(secret)
    for variant in sorted(variants, key=len, reverse=True):
        text = text.replace(variant, REDACTED)
    text = _PEM_PRIVATE.sub("[redacted private key]", text)
    text = _URL_PASSWORD.sub(lambda match: f"{match.group(1)}{REDACTED}@", text)
    text = _BASE64_BLOB.sub("[redacted blob]", text)
    text = _HEX_BLOB.sub("[redacted blob]", text)
    return text


# ---------------------------------------------------------------------------------------------------------
# The comment


@dataclass
class StackResult:
    stack: str
    exit_code: int
    output: str  # already redacted


def _summary(output: str) -> str:
    """Pulumi's closing `Resources:` block, as one line (`+ 3 to create, ~ 1 to update, 40 unchanged`)."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == "Resources:":
            parts = []
            for item in lines[index + 1 :]:
                if not item.strip():
                    break
                parts.append(item.strip())
            return ", ".join(parts)
    return ""


def _clip(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    lines = text.splitlines()
    tail = "\n".join(lines[-40:])
    head_budget = max(0, budget - len(tail) - 100)
    head = text[:head_budget].rsplit("\n", 1)[0]
    omitted = len(lines) - head.count("\n") - 1 - min(40, len(lines))
    return f"{head}\n... {max(omitted, 0)} lines omitted (see the job log) ...\n{tail}"


def build_comment(results: list[StackResult], head: str = "", job_url: str = "", verb: str = "preview") -> str:
    status = "✅" if all(r.exit_code == 0 for r in results) else "❌"
    header = [MARKER, f"## {status} Pulumi {verb} of `airflow-platform`"]
    if head:
        header.append(f"Commit `{head[:12]}`" + (f" · [job log]({job_url})" if job_url else ""))
    if not results:
        header.append("\nThis change touches no stack.")
        return "\n".join(header) + "\n"
    budget = max(2000, (MAX_COMMENT - 2000) // len(results))
    sections = []
    for result in results:
        ok = result.exit_code == 0
        mark = "✅" if ok else f"❌ failed (exit {result.exit_code})"
        summary = _summary(result.output)
        body = _clip(result.output.strip(), budget).replace("```", "ˋˋˋ")
        sections.append(
            f"### Stack `{result.stack}` {mark}\n"
            + (f"{summary}\n" if summary else "")
            + f"\n<details{'' if ok else ' open'}><summary>{verb} output</summary>\n\n```diff\n{body}\n```\n\n</details>\n"
        )
    return "\n".join(header) + "\n\n" + "\n".join(sections)


# ---------------------------------------------------------------------------------------------------------
# Posting: one comment per merge request, updated in place


def existing_note_id(notes: Iterable[dict], marker: str = MARKER) -> int | None:
    """The id of our earlier comment (the first one carrying the marker), if any."""
    for note in notes:
        if marker in (note.get("body") or ""):
            return note["id"]
    return None


def plan_post(notes: Iterable[dict], marker: str = MARKER) -> tuple[str, int | None]:
    note_id = existing_note_id(notes, marker)
    return ("update", note_id) if note_id is not None else ("create", None)


def _request(method: str, url: str, headers: dict[str, str], body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


class GitLab:
    def __init__(self, api: str, project: str, mr: str, token: str):
        self.base = f"{api.rstrip('/')}/projects/{urllib.request.quote(project, safe='')}/merge_requests/{mr}/notes"
        self.headers = {"PRIVATE-TOKEN": token}

    def notes(self) -> list[dict]:
        found: list[dict] = []
        for page in range(1, 21):
            batch = _request("GET", f"{self.base}?per_page=100&page={page}&sort=asc", self.headers)
            found += batch
            if len(batch) < 100:
                break
        return found

    def create(self, body: str) -> None:
        _request("POST", self.base, self.headers, {"body": body})

    def update(self, note_id: int, body: str) -> None:
        _request("PUT", f"{self.base}/{note_id}", self.headers, {"body": body})


class GitHub:
    def __init__(self, api: str, repository: str, number: str, token: str):
        self.api = api.rstrip("/")
        self.repository = repository
        self.number = number
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}

    def notes(self) -> list[dict]:
        found: list[dict] = []
        for page in range(1, 21):
            url = f"{self.api}/repos/{self.repository}/issues/{self.number}/comments?per_page=100&page={page}"
            batch = _request("GET", url, self.headers)
            found += batch
            if len(batch) < 100:
                break
        return found

    def create(self, body: str) -> None:
        _request("POST", f"{self.api}/repos/{self.repository}/issues/{self.number}/comments", self.headers, {"body": body})

    def update(self, note_id: int, body: str) -> None:
        _request("PATCH", f"{self.api}/repos/{self.repository}/issues/comments/{note_id}", self.headers, {"body": body})


def forge_from_env(env: dict[str, str], pr: str | None = None):
    if env.get("GITLAB_CI") or env.get("CI_API_V4_URL"):
        missing = [n for n in ("GITLAB_TOKEN", "CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID") if not env.get(n)]
        if missing:
            raise SystemExit(f"ci-preview: cannot post to GitLab, missing {', '.join(missing)}")
        return GitLab(env["CI_API_V4_URL"], env["CI_PROJECT_ID"], env["CI_MERGE_REQUEST_IID"], env["GITLAB_TOKEN"])
    if env.get("GITHUB_ACTIONS") or env.get("GITHUB_REPOSITORY"):
        number = pr
        if not number and env.get("GITHUB_EVENT_PATH") and Path(env["GITHUB_EVENT_PATH"]).exists():
            event = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())
            number = str((event.get("pull_request") or {}).get("number") or "")
        missing = [n for n in ("GITHUB_TOKEN", "GITHUB_REPOSITORY") if not env.get(n)] + ([] if number else ["--pr"])
        if missing:
            raise SystemExit(f"ci-preview: cannot post to GitHub, missing {', '.join(missing)}")
        return GitHub(env.get("GITHUB_API_URL", "https://api.github.com"), env["GITHUB_REPOSITORY"], number, env["GITHUB_TOKEN"])
    raise SystemExit("ci-preview: not in GitLab CI or GitHub Actions; use --dry-run")


def post(forge, body: str, out: Callable[[str], None] = print) -> str:
    action, note_id = plan_post(forge.notes())
    if action == "update":
        forge.update(note_id, body)
    else:
        forge.create(body)
    out(f"ci-preview: {action}d the preview comment")
    return action


# ---------------------------------------------------------------------------------------------------------
# Running pulumi


def pulumi_command() -> str:
    found = shutil.which("pulumi")
    if found:
        return found
    result = subprocess.run([str(ROOT / "scripts/install-pulumi"), "--print-bin"], capture_output=True, text=True)
    if result.returncode == 0 and (Path(result.stdout.strip()) / "pulumi").exists():
        return str(Path(result.stdout.strip()) / "pulumi")
    raise SystemExit("ci-preview: no pulumi on PATH; run scripts/install-pulumi and put its bin first on PATH")


def pulumi_args(mode: str, stack: str) -> list[str]:
    common = ["--non-interactive", "--color", "never", "--policy-pack", "policy", "--suppress-outputs", "--diff",
              "--stack", stack]
    if mode == "apply":
        return ["up", "--yes", "--skip-preview", *common]
    return ["preview", *common]


def run_stack(pulumi: str, mode: str, stack: str, env: dict[str, str]) -> StackResult:
    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([pulumi, *args], cwd=ROOT, capture_output=True, text=True, env={**env, "PULUMI_SKIP_UPDATE_CHECK": "true"})

    # A stack file committed in this change may name a stack the backend has not seen yet.
    selected = call("stack", "select", "--create", "--non-interactive", stack)
    secrets = env_secret_values(env)
    shown = call("config", "--show-secrets", "--json", "--stack", stack)
    if shown.returncode == 0:
        secrets += secret_config_values(shown.stdout)
    if selected.returncode != 0:
        return StackResult(stack, selected.returncode, redact(selected.stdout + selected.stderr, secrets))
    result = call(*pulumi_args(mode, stack))
    return StackResult(stack, result.returncode, redact(result.stdout + result.stderr, secrets))


# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci-preview", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="the merge request's base commit (default: all stacks)")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--stack", action="append", default=[], help="these stacks instead of the changed ones")
    parser.add_argument("--apply", action="store_true", help="pulumi up instead of preview (merge to main)")
    parser.add_argument("--dry-run", action="store_true", help="print the comment instead of posting it")
    parser.add_argument("--pr", help="GitHub pull request number (default: from the event)")
    args = parser.parse_args(argv)
    env = dict(os.environ)

    if args.stack:
        stacks = args.stack
    elif args.base and args.base != NULL_SHA:
        stacks = changed_stacks(git_changed_files(args.base, args.head), committed_stacks())
    else:
        stacks = committed_stacks()
    mode = "apply" if args.apply else "preview"
    print(f"ci-preview: {mode} of {', '.join(stacks) or 'no stack'}", file=sys.stderr)

    results = []
    if stacks:
        pulumi = pulumi_command()
        for stack in deploy_order(stacks) if args.apply else stacks:
            result = run_stack(pulumi, mode, stack, env)
            results.append(result)
            print(f"--- {stack}: exit {result.exit_code}\n{result.output}", file=sys.stderr)
            if args.apply and result.exit_code != 0:
                print(f"ci-preview: {stack} failed; the remaining stacks are not deployed", file=sys.stderr)
                break

    failed = any(result.exit_code != 0 for result in results)
    if args.apply:
        return 1 if failed else 0
    job_url = env.get("CI_JOB_URL") or (
        f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        if env.get("GITHUB_RUN_ID") and env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY")
        else ""
    )
    body = build_comment(results, head=env.get("CI_COMMIT_SHA") or env.get("GITHUB_SHA") or "", job_url=job_url)
    if args.dry_run:
        print(body)
    else:
        post(forge_from_env(env, args.pr), body)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
