"""Bad input at every door: every setting of the stack config, given values outside its domain, through the
readers the program has.

The doors are `components.settings.load_settings`, which `pulumi up` runs on `pulumi.Config` (values exactly as the
engine hands them over: scalars as text, objects as JSON text), and `check_stack_file`, which
`python -m components.settings check` runs on a `Pulumi.<stack>.yaml`. For every setting and every hostile value
(wrong types; empty, huge and negative values; control characters and line breaks; path traversal; shell text;
non-URLs where a URL goes; numbers and quantities far beyond what the cluster or the service takes) exactly one
thing may happen: the value is accepted and lies within the setting's domain, or the one error is a
`ConfigError` whose problems name the setting's key path, as the user writes it in the stack file, and say what is
allowed. Any other exception is a failure; both doors must agree.

The settings and the hostile values: tests/settings/hostile_input.py.
"""

from __future__ import annotations

import pulumi
import pytest
from hypothesis import given, strategies as st

from tests.settings.hostile_input import (BASES, HYPOTHESIS, MARKER, SETTINGS, STACK, _mutations, check_one,
    example_value, hostile_value)


def test_the_walk_finds_every_setting():
    keys = {setting.key for setting in SETTINGS}
    assert {"instance", "scheduler.resources.limits.cpu", "postgres.restore.targetTime", "placement.tolerations.0.key",
            "auth.roleMapping", "cost.cpuPerCoreMonth", "airflowConnections"} <= keys
    assert len(SETTINGS) > 200


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind in ("integer", "number", "array", "map")], ids=str)
def test_every_number_and_collection_setting_has_bounds(setting):
    """What cannot be enumerated by value must say how far it goes: a number without a maximum accepts 10^18."""
    schema = setting.schema
    if setting.kind in ("integer", "number"):
        assert "minimum" in schema and "maximum" in schema, f"{setting.key}: give it ge= and le="
    else:
        bound = "maxItems" if setting.kind == "array" else "maxProperties"
        assert bound in schema, f"{setting.key}: give it max_length="


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory):
    yield tmp_path_factory.mktemp("stack") / f"Pulumi.{STACK}.yaml"
    pulumi.runtime.set_all_config({}, [])


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.key)
@HYPOTHESIS
@given(data=st.data())
def test_a_hostile_value_is_refused_by_name_or_accepted_within_its_domain(setting, data, stack_file):
    base = data.draw(st.sampled_from(list(BASES.values())), label="base")
    value = data.draw(hostile_value(setting), label="value")
    check_one(setting, base, value, stack_file)


# The worst of NASTY_TEXT, which every text setting meets for sure (the property test draws only some of it).
SURE_TEXT = ["", " ", "0", "../../../etc/passwd", "$(rm -rf /)", "--upload-pack=touch /tmp/pwned", "http://h:99999",
             "http://[::1", "1e99", "9" * 400, "-5s", "\u202eevil", "a" * 5000, "[" * 5000]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.key)
def test_the_worst_values_meet_every_setting(setting, stack_file):
    """Through `pulumi up`'s door only: the property test holds the two doors to agreeing."""
    valid = example_value(setting)
    if setting.kind in ("string", "enum", "any") or setting.secret:
        values = SURE_TEXT
        mutated = _mutations(valid) if isinstance(valid, str) and valid else []
    else:
        values, mutated = [None, True, "x", 10**400, float("nan"), ["x"], {"noSuchKey": 1}], []
    for base, more in ((BASES["defaults"], mutated), (BASES["everything on"], [])):
        for value in values + more:
            check_one(setting, base, f"{MARKER}{value}" if setting.secret else value, stack_file=None)
