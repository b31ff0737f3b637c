"""What every component of the instance does alike: the type token it registers under, and how it hands the
retention it was given (`retain_on_delete`) to the children that hold what cannot be recreated.
"""

from __future__ import annotations

import pulumi

from components import kube


def type_token(kind: str) -> str:
    """`airflow-platform:index:<kind>`. Part of every child's URN: changing it replaces the whole instance."""
    return f"{kube.PROJECT}:index:{kind}"


def kept_child(parent: pulumi.Resource, opts: pulumi.ResourceOptions | None, **extra) -> pulumi.ResourceOptions:
    """Options for a child of `parent` (created with `opts`) that must outlive a `destroy` whenever its component
    would. Pulumi hands `protect` from a component to its children; for `retain_on_delete` the engine, Pulumi's
    docs and its mocks disagree (pulumi/pulumi#19654), so the components pass it on themselves."""
    return pulumi.ResourceOptions(parent=parent, retain_on_delete=bool(opts and opts.retain_on_delete), **extra)
