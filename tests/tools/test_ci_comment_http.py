"""The preview comment through the real forge clients (python-gitlab, PyGithub) against a local HTTP server
that speaks the few endpoints they use and records every request: one comment, created once and then updated
in place, never a secret in what is sent."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pulumi import automation as auto

from ci_preview import cli
from ci_preview.comment import MARKER
from tests.tools.test_ci_preview import PREVIEW

SECRET_CONFIG = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"
TOKEN = "glpat-forge-token-123456"


class Forge:
    """A merge request (GitLab) or pull request (GitHub) with its comments, on 127.0.0.1."""

    def __init__(self, kind: str, notes: list[dict]):
        self.kind, self.notes, self.requests, self.next_id = kind, list(notes), [], 100
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def _reply(self, status: int, payload) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                forge.requests.append({"method": self.command, "path": self.path, "body": body,
                                       "headers": {k.lower(): v for k, v in self.headers.items()}})
                status, payload = forge.route(self.command, self.path.split("?")[0], json.loads(body) if body else {})
                self._reply(status, payload)

            do_GET = do_POST = do_PUT = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _note(self, note: dict) -> dict:
        if self.kind == "github":  # PyGithub edits a comment at the URL the listing gave
            return {**note, "url": f"{self.url}/repos/o/r/issues/comments/{note['id']}"}
        return {**note, "noteable_type": "MergeRequest"}

    def route(self, method: str, path: str, data: dict):
        notes_path = ("/api/v4/projects/42/merge_requests/7/notes" if self.kind == "gitlab"
                      else "/repos/o/r/issues/5/comments")
        one = re.fullmatch(r"/api/v4/projects/42/merge_requests/7/notes/(\d+)" if self.kind == "gitlab"
                           else r"/repos/o/r/issues/comments/(\d+)", path)
        if path == notes_path and method == "GET":
            return 200, [self._note(note) for note in self.notes]
        if path == notes_path and method == "POST":
            self.next_id += 1
            self.notes.append({"id": self.next_id, "body": data["body"]})
            return 201, self._note(self.notes[-1])
        if one and method in ("PUT", "PATCH"):
            note = next(note for note in self.notes if note["id"] == int(one.group(1)))
            note["body"] = data["body"]
            return 200, self._note(note)
        return 404, {"message": f"{method} {path} is not an endpoint of this fake"}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class FakeStack:
    def __init__(self, output: str):
        self.output = output

    def get_all_config(self):
        return {"airflow-platform:s3SecretAccessKey": auto.ConfigValue(value=SECRET_CONFIG, secret=True)}

    def preview(self, **kwargs):
        return auto.PreviewResult(stdout=self.output, stderr="", change_summary={})


def _run(monkeypatch, env: dict, output: str, argv: list[str]) -> int:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cli.main(["--stack", "dev", *argv], open_stack=lambda name: FakeStack(output))


def _assert_one_comment_updated_in_place(forge: Forge, token_header: str) -> None:
    ours = [note for note in forge.notes if MARKER in note["body"]]
    assert len(ours) == 1 and len(forge.notes) == 2, forge.notes
    assert "second run" in ours[0]["body"] and "first run" not in ours[0]["body"]
    writes = [(r["method"], r["path"].split("?")[0]) for r in forge.requests if r["method"] != "GET"]
    assert [method for method, _ in writes] == ["POST", "PUT" if forge.kind == "gitlab" else "PATCH"], writes
    assert writes[1][1].endswith(f"/{ours[0]['id']}")  # the note the first run created, edited in place
    sent = json.dumps([r["body"] for r in forge.requests])
    for leaked in (SECRET_CONFIG, "hunter2-db-pass", "ghp-token-from-the-environment", TOKEN, "MIIEowIBAAKCAQEA"):
        assert leaked not in sent, leaked
    assert all(TOKEN in r["headers"].get(token_header, "") for r in forge.requests)


def test_gitlab_note_is_created_once_then_updated_in_place_and_redacted(monkeypatch):
    with Forge("gitlab", [{"id": 1, "body": "LGTM"}]) as forge:
        env = {"GITLAB_CI": "true", "GITLAB_TOKEN": TOKEN, "CI_SERVER_URL": forge.url, "CI_PROJECT_ID": "42",
               "CI_MERGE_REQUEST_IID": "7", "GITHUB_TOKEN": "ghp-token-from-the-environment"}
        assert _run(monkeypatch, env, "first run\n" + PREVIEW, []) == 0
        assert _run(monkeypatch, env, "second run\n" + PREVIEW, []) == 0
    _assert_one_comment_updated_in_place(forge, "private-token")


def test_github_comment_is_created_once_then_updated_in_place_and_redacted(monkeypatch):
    monkeypatch.delenv("GITLAB_CI", raising=False)
    with Forge("github", [{"id": 1, "body": "LGTM"}]) as forge:
        env = {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": forge.url,
               "GITHUB_REPOSITORY": "o/r", "AIRFLOW_PLATFORM_GIT_SYNC_TOKEN": "ghp-token-from-the-environment"}
        assert _run(monkeypatch, env, "first run\n" + PREVIEW, ["--pr", "5"]) == 0
        assert _run(monkeypatch, env, "second run\n" + PREVIEW, ["--pr", "5"]) == 0
    _assert_one_comment_updated_in_place(forge, "authorization")


def test_a_forge_error_fails_the_job(monkeypatch):
    with Forge("gitlab", []) as forge:
        env = {"GITLAB_CI": "true", "GITLAB_TOKEN": TOKEN, "CI_SERVER_URL": forge.url, "CI_PROJECT_ID": "999",
               "CI_MERGE_REQUEST_IID": "7"}
        with pytest.raises(Exception, match="404"):
            _run(monkeypatch, env, PREVIEW, [])
