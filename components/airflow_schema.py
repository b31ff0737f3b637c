"""The Airflow version the instance's database schema was last migrated by, kept in the stack's state.

Airflow's migrations only go forward by themselves: an older Airflow started on a newer schema fails, or
worse, half-works. `airflow db migrate` of an older version cannot undo a newer one (the downgrade is a
separate command, `airflow db downgrade`, run with the newer version). So a stack whose `airflowVersion`
goes back is refused at preview, before the migration Job or any pod changes, with what to do instead.

The record is a dynamic resource that the stack's Kubernetes provider depends on, so that its check runs before
any object in the cluster is touched (`pulumi up` registers a resource only once its dependencies are). It holds
the newest version a `pulumi up` went on to migrate with: when that migration failed (its Job did not complete),
the database is still at the older version, and the way back the refusal describes is only the
`pulumi state delete` of the record.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic as dynamic
from packaging.version import InvalidVersion, Version

KEY = "airflow_version"


def downgrade_problem(recorded: str | None, wanted: str) -> str | None:
    """Why going from `recorded` (None: nothing migrated yet) to `wanted` is refused, or None."""
    if recorded is None:
        return None
    try:
        older = Version(wanted) < Version(recorded)
    except InvalidVersion:
        return None  # the settings model has already refused a version that is not one
    if not older:
        return None
    return (
        f"airflowVersion: {wanted} is older than {recorded}, the version this stack's database was last migrated "
        f"by. Airflow cannot run on a newer schema, and its migrations do not go back by themselves. To go back: "
        f"run `airflow db downgrade --to-version {wanted}` with Airflow {recorded} against the database, then "
        f"forget the record with `pulumi state delete` of this stack's AirflowSchema resource, then `pulumi up` "
        f"(docs/upgrading-airflow.md). Or keep airflowVersion at {recorded} or later."
    )


class SchemaProvider(dynamic.ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        problem = downgrade_problem(olds.get(KEY), news[KEY])
        failures = [dynamic.CheckFailure(KEY, problem)] if problem else []
        return dynamic.CheckResult(news, failures)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = olds.get(KEY) != news[KEY]
        return dynamic.DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_="airflow-schema", outs={KEY: props[KEY]})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs={KEY: news[KEY]})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None  # a record in the state only: nothing outside it to remove


class AirflowSchema(dynamic.Resource, name="AirflowSchema"):
    """Type ``pulumi-python:dynamic:AirflowSchema``; the stack's Kubernetes provider depends on it."""

    airflow_version: pulumi.Output[str]

    def __init__(self, name: str, *, airflow_version: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(SchemaProvider(), name, {KEY: airflow_version}, opts)
