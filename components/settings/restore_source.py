"""Where `postgres.restore` reads from: this instance's own backups (rebuilding after loss), or the backups of
another stack of the project (cloning prod into a branch), found from that stack's file.

What can be known before anything runs is checked here, so that `pulumi up` refuses it with the setting's
name: a source stack that does not exist, one without backups or without a CloudNativePG database, and a
restored cluster that would archive into the very archive it restores from (CloudNativePG refuses to archive
into a non-empty one, and mixing two timelines' WAL under one name would spoil both). Whether a target time
lies after the first backup is not knowable without reading the bucket; the operator reports that one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from components import kube
from components.settings.fields import SettingsFields
from components.settings.sections import PostgresSettings, S3Settings
from components.settings.stack_files import read_stack_file

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RestoreSource:
    bucket: str
    prefix: str
    server_name: str
    endpoint_url: str | None
    target_time: str | None


def resolve(settings: SettingsFields, root: Path = ROOT) -> tuple[RestoreSource | None, list[str]]:
    restore, backups = settings.postgres.restore, settings.postgres.backups
    problems: list[str] = []
    if settings.postgres.mode == "external":
        problems.append("postgres.mode is external: there is no CloudNativePG cluster to restore into")
    endpoint = settings.s3.pod_endpoint  # CloudNativePG's pods read the archive
    if restore.source == settings.instance:
        if not backups.enabled:
            problems.append(f"source '{restore.source}' is this stack, and postgres.backups.enabled is false: no backups to restore")
        bucket, prefix = restore.bucket or settings.bucket_name, restore.prefix or backups.prefix
        server = restore.server_name or kube.resource_name(settings.instance, "pg")
        archive = backups.server_name or kube.resource_name(settings.instance, "pg")
        if backups.enabled and (bucket, prefix, server) == (settings.bucket_name, backups.prefix, archive):
            problems.append(
                f"the restored cluster would archive as '{archive}', the archive it restores from: set "
                f"postgres.backups.serverName to a new name, e.g. '{archive}-2'"
            )
    elif restore.bucket is not None:
        bucket, prefix = restore.bucket, restore.prefix or "postgres"
        server = restore.server_name or kube.resource_name(restore.source, "pg")
    else:
        path = root / f"Pulumi.{restore.source}.yaml"
        if not path.exists():
            problems.append(
                f"no stack '{restore.source}' in this project (no {path.name}): name one, or set postgres.restore.bucket "
                "(and prefix, serverName) for backups kept elsewhere"
            )
            return None, problems
        raw, _ = read_stack_file(path)
        try:
            postgres = PostgresSettings.model_validate(raw.get("postgres") or {})
            s3 = S3Settings.model_validate(raw.get("s3") or {})
        except ValidationError as error:
            return None, problems + [f"{path.name} has invalid postgres or s3 settings: {error.errors()[0]['msg']}"]
        if postgres.mode == "external":
            problems.append(f"stack '{restore.source}' keeps its database outside (postgres.mode external): no backups of ours")
        elif not postgres.backups.enabled:
            problems.append(f"stack '{restore.source}' has postgres.backups.enabled false: it has no backups to restore")
        instance = raw.get("instance") or restore.source
        bucket = s3.bucket or f"{raw.get('namespace') or f'airflow-{instance}'}-airflow-logs"
        prefix = restore.prefix or postgres.backups.prefix
        server = restore.server_name or postgres.backups.server_name or kube.resource_name(instance, "pg")
        endpoint = s3.pod_endpoint
    target = restore.target_time.isoformat() if restore.target_time else None
    return RestoreSource(bucket, prefix, server, endpoint, target), problems


def restore_problems(settings: SettingsFields) -> list[str]:
    return resolve(settings)[1]
