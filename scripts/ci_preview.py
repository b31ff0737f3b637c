"""Merge-request previews and deploys of the stacks a change touches.

    scripts/ci-preview --base SHA [--head SHA] [--dry-run]     preview, post ONE comment on the MR/PR
    scripts/ci-preview --base SHA --apply                      `pulumi up` the changed stacks (merge to main)
    scripts/ci-preview --base SHA --gitlab-pipeline FILE       write a GitLab child pipeline: one deploy job per
                                                               changed stack, each in its own resource_group
    scripts/ci-preview --stack dev --dry-run                   preview named stacks, print the comment

Which stacks: a change to `Pulumi.<stack>.yaml` touches that stack; a change to the program (`__main__.py`,
`components/`, `Pulumi.yaml`, `requirements*.txt`, `policy/`) touches every stack with a committed stack
file. Branch environments (`Pulumi.br-*.yaml`, made by `python -m envs`) are never previewed or deployed here.

The program runs inline through `engine.py` (the Automation API), like every other tool of ours, and every
preview runs with the policy pack. The comment carries a hidden marker, so a new pipeline edits its earlier
comment instead of adding one. Before anything is printed or posted, the output is redacted: the stack's
secret config values, the values of secret-looking environment variables, PEM private keys, passwords in URLs
and long base64/hex blobs.

Posting, through the forges' own client libraries: GitLab with python-gitlab (`GITLAB_TOKEN`, a token with
`api` scope; CI_SERVER_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID from the job) or GitHub with PyGithub
(`GITHUB_TOKEN`; GITHUB_REPOSITORY and the pull request number from the event or --pr). Exit status: 0 when
every stack previewed (or deployed) cleanly, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Run as `scripts/ci_preview.py`, the repository itself is not on the path.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from policy.rules import BRANCH_STACK_PREFIX  # noqa: E402  (one definition, which the policy pack reads too)

MARKER = "<!-- airflow-platform-preview -->"
PROGRAM_PATHS = ("__main__.py", "Pulumi.yaml", "components/", "policy/")
STACK_FILE = re.compile(r"^Pulumi\.([A-Za-z0-9_.-]+)\.yaml$")
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
    return sorted(stacks, key=lambda stack: (is_prod(stack), stack))


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


class GitLab:
    """A merge request's notes, through python-gitlab (pagination, retries and errors are its business)."""

    def __init__(self, url: str, project: str, mr: str, token: str):
        import gitlab  # imported here: a dry run or a deploy never posts, and need not load it

        self.client = gitlab.Gitlab(url, private_token=token, timeout=30, retry_transient_errors=True)
        self.mr = self.client.projects.get(project, lazy=True).mergerequests.get(mr, lazy=True)

    def notes(self) -> list[dict]:
        found = self.mr.notes.list(iterator=True, per_page=100, sort="asc", order_by="created_at")
        return [{"id": note.id, "body": note.body} for note in found]

    def create(self, body: str) -> None:
        self.mr.notes.create({"body": body})

    def update(self, note_id: int, body: str) -> None:
        note = self.mr.notes.get(note_id, lazy=True)  # lazy: one PUT, no GET of the note first
        note.body = body
        note.save()


class GitHub:
    """A pull request's conversation comments, through PyGithub."""

    def __init__(self, api: str, repository: str, number: str, token: str):
        from github import Auth, Github

        # lazy: no request until the comments are listed
        self.client = Github(auth=Auth.Token(token), base_url=api.rstrip("/"), timeout=30, per_page=100, lazy=True)
        self.issue = self.client.get_repo(repository).get_issue(int(number))
        self._comments: dict[int, Any] = {}

    def notes(self) -> list[dict]:
        self._comments = {comment.id: comment for comment in self.issue.get_comments()}
        return [{"id": comment.id, "body": comment.body} for comment in self._comments.values()]

    def create(self, body: str) -> None:
        self.issue.create_comment(body)

    def update(self, note_id: int, body: str) -> None:
        self._comments[note_id].edit(body)


def forge_from_env(env: dict[str, str], pr: str | None = None):
    if env.get("GITLAB_CI"):
        server = env.get("CI_SERVER_URL") or env.get("CI_API_V4_URL", "").removesuffix("/").removesuffix("/api/v4")
        needed = {"GITLAB_TOKEN": env.get("GITLAB_TOKEN"), "CI_SERVER_URL": server, "CI_PROJECT_ID": env.get("CI_PROJECT_ID"),
                  "CI_MERGE_REQUEST_IID": env.get("CI_MERGE_REQUEST_IID")}
        missing = [name for name, value in needed.items() if not value]
        if missing:
            raise SystemExit(f"ci-preview: cannot post to GitLab, missing {', '.join(missing)}")
        return GitLab(server, env["CI_PROJECT_ID"], env["CI_MERGE_REQUEST_IID"], env["GITLAB_TOKEN"])
    if env.get("GITHUB_ACTIONS"):
        number = pr
        if not number and env.get("GITHUB_EVENT_PATH"):
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
# Running the program: inline, through engine.py


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


# ---------------------------------------------------------------------------------------------------------
# GitLab: one deploy job per stack, generated as a child pipeline


def is_prod(stack: str) -> bool:
    return stack == "prod" or stack.startswith("prod-")


def gitlab_deploy_pipeline(stacks: Iterable[str], job: str = ".airflow-platform") -> dict:
    """A child pipeline with one deploy job per stack. Each job has its stack's own resource_group: deploys of
    different stacks do not wait on each other, two of one stack never overlap (GitLab queues them, in
    order, never cancelling). Production stacks deploy in a later stage, only after the others succeeded."""
    stacks = deploy_order(stacks)
    if not stacks:
        return {"nothing-to-deploy": {"variables": {"GIT_STRATEGY": "none"},
                                      "script": ["echo 'This change touches no stack.'"]}}
    pipeline: dict[str, Any] = {"stages": ["deploy", "deploy-prod"]}
    for stack in stacks:
        pipeline[f"deploy:{stack}"] = {
            "extends": job,
            "stage": "deploy-prod" if is_prod(stack) else "deploy",
            "resource_group": f"airflow-platform/{stack}",
            # A GitLab environment per stack: deployment history, and protected environments for approvals.
            "environment": {"name": f"stacks/{stack}"},
            "script": [f"scripts/ci-preview --apply --stack {stack}"],
        }
    return pipeline

# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None, open_stack: Callable[[str], Any] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci-preview", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="the merge request's base commit (default: all stacks)")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--stack", action="append", default=[], help="these stacks instead of the changed ones")
    parser.add_argument("--apply", action="store_true", help="pulumi up instead of preview (merge to main)")
    parser.add_argument("--gitlab-pipeline", metavar="FILE",
                        help="write a GitLab child pipeline deploying the changed stacks, one job each; run nothing")
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
    if args.gitlab_pipeline:
        Path(args.gitlab_pipeline).write_text(
            "# Generated by scripts/ci-preview --gitlab-pipeline: the deploy jobs of this change's stacks.\n"
            + yaml.safe_dump(gitlab_deploy_pipeline(stacks), sort_keys=False)
        )
        print(f"ci-preview: deploy jobs for {', '.join(deploy_order(stacks)) or 'no stack'}", file=sys.stderr)
        return 0
    mode = "apply" if args.apply else "preview"
    print(f"ci-preview: {mode} of {', '.join(stacks) or 'no stack'}", file=sys.stderr)

    results = []
    for stack in deploy_order(stacks) if args.apply else stacks:
        result = run_stack(mode, stack, env, open_stack)
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
