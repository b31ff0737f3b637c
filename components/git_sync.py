"""git-sync: how DAG code reaches the dag-processor, the triggerer and every task pod.

DAG code runs with the instance's rights, so its source is verified: over SSH git-sync checks the host key
against `gitSync.knownHosts` (the settings refuse an SSH key without them, and an SSH URL without a key);
over HTTPS the system CAs verify the host. The sidecars answer probes on git-sync's own HTTP endpoint, which
is healthy once the repository has synced; the task pods' one-time init container needs none.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.settings import Settings, secret_output

SECRET_DIR = "/etc/git-secret"
ROOT = "/git"
LINK = "repo"


def secret_data(s: Settings) -> dict[str, pulumi.Input[str]] | None:
    """What the `<instance>-git-sync` Secret holds: the SSH key and its known hosts, or the HTTPS token."""
    if not s.git_sync.enabled:
        return None
    if s.git_sync_ssh_key is not None:
        return {"ssh": secret_output(s.git_sync_ssh_key), "known_hosts": s.git_sync.known_hosts or ""}
    if s.git_sync_token is not None:
        return {"token": secret_output(s.git_sync_token)}
    return None


def container(s: Settings, one_time: bool, with_secret: bool) -> k8s.core.v1.ContainerArgs:
    git = s.git_sync
    args = [
        f"--repo={git.repo}",
        f"--ref={git.ref}",
        f"--depth={git.depth}",
        f"--period={git.period_seconds}s",
        f"--root={ROOT}",
        f"--link={LINK}",
    ]
    if one_time:
        args.append("--one-time")
    else:
        args.append(f"--http-bind=:{kube.GIT_SYNC_HTTP_PORT}")
    if s.git_sync_ssh_key is not None:
        args += [
            f"--ssh-key-file={SECRET_DIR}/ssh",
            "--ssh-known-hosts=true",
            f"--ssh-known-hosts-file={SECRET_DIR}/known_hosts",
        ]
    elif s.git_sync_token is not None:
        args += [f"--username={git.username or 'git'}", f"--password-file={SECRET_DIR}/token"]
    mounts = [
        k8s.core.v1.VolumeMountArgs(name="dags", mount_path=ROOT),
        k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
    ]
    if with_secret:
        mounts.append(k8s.core.v1.VolumeMountArgs(name="git-secret", mount_path=SECRET_DIR, read_only=True))
    probes = {} if one_time else _probes(git.period_seconds)
    return k8s.core.v1.ContainerArgs(
        name="git-sync",
        image=git.image,
        args=args,
        volume_mounts=mounts,
        ports=None if one_time else [k8s.core.v1.ContainerPortArgs(name="git-sync", container_port=kube.GIT_SYNC_HTTP_PORT)],
        resources=kube.resource_requirements(kube.GIT_SYNC_RESOURCES, kube.GIT_SYNC_EPHEMERAL_STORAGE),
        security_context=kube.restricted_container_security_context(),
        **probes,
    )


def _probes(period_seconds: int) -> dict:
    health = k8s.core.v1.HTTPGetActionArgs(path="/", port=kube.GIT_SYNC_HTTP_PORT)
    return {
        # A first clone of a big repository takes a while; the pod is useless until it is there.
        "startup_probe": k8s.core.v1.ProbeArgs(http_get=health, period_seconds=10, failure_threshold=60),
        "readiness_probe": k8s.core.v1.ProbeArgs(http_get=health, period_seconds=10),
        # A hung git-sync stops answering; one that cannot reach the server keeps serving the last good sync.
        "liveness_probe": k8s.core.v1.ProbeArgs(
            http_get=health, period_seconds=max(30, period_seconds), timeout_seconds=10, failure_threshold=5
        ),
    }


def volumes(s: Settings, with_secret: bool) -> list[k8s.core.v1.VolumeArgs]:
    found = [
        k8s.core.v1.VolumeArgs(name="dags", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=kube.DAGS_VOLUME_LIMIT))
    ]
    if with_secret:
        found.append(
            k8s.core.v1.VolumeArgs(
                name="git-secret",
                secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=s.name("git-sync"), default_mode=0o440),
            )
        )
    return found
