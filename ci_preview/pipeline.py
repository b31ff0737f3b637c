"""GitLab: one deploy job per stack, generated as a child pipeline."""

from __future__ import annotations

from typing import Any, Iterable

from ci_preview.changes import deploy_order, is_prod


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
