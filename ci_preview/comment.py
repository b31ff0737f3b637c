"""The one merge-request comment: a section per stack, its summary line and its (clipped) output."""

from __future__ import annotations

from dataclasses import dataclass

MARKER = "<!-- airflow-platform-preview -->"
MAX_COMMENT = 60000  # GitHub refuses comments over 65536 characters; GitLab allows far more


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
