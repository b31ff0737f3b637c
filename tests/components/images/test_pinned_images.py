"""Images: every image an exact version; a floating one is refused by the policy pack and at config time."""

import pytest

from components import images
from policy import rules
from testbed.runs import dev, refused, stack

STACKS = ("dev", "prod", "team-analytics", "team-search")


@pytest.mark.parametrize("name", STACKS)
def test_every_image_is_an_exact_version(name):
    run = stack(name)
    checked = [rules.Checked(r.type, r.inputs, name, r.protect, r.name) for r in run.resources]
    assert [p for c in checked for p in rules.pinned_image_tags(c)] == []
    assert run.one("Cluster").inputs["spec"]["imageName"] == images.postgres(17)


def test_floating_images_are_refused_by_the_pack_and_at_config_time():
    cluster = rules.Checked("kubernetes:postgresql.cnpg.io/v1:Cluster", {"spec": {"imageName": "ghcr.io/cloudnative-pg/postgresql:17"}})
    assert "floating tag '17'" in rules.pinned_image_tags(cluster)[0]
    assert "postgres.image" in refused({"postgres": {"image": "ghcr.io/cloudnative-pg/postgresql:17"}})
    digest = "ghcr.io/cloudnative-pg/postgresql@sha256:" + "a" * 64
    assert stack("dev", {"postgres": {"image": digest}}).one("Cluster").inputs["spec"]["imageName"] == digest
