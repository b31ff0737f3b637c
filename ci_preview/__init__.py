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

By concern: ci_preview/changes.py (which stacks a change touches, and the order they deploy in),
ci_preview/automation.py (running the program inline through engine.py), ci_preview/redaction.py,
ci_preview/comment.py (its text), ci_preview/forges.py (posting it to GitLab or GitHub) and ci_preview/pipeline.py
(GitLab's deploy child pipeline); the command line is ci_preview/cli.py, which scripts/ci-preview runs as
`python -m ci_preview`.
"""
