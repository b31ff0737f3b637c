"""Posting: one comment per merge request, updated in place, through the forges' own client libraries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable

from ci_preview.comment import MARKER


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
