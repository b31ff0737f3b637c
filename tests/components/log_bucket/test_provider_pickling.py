"""The LogBucket dynamic provider as Pulumi pickles it: by reference, with no credentials inside, and a change of
the provider's code shown in preview as an in-place update."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import dill
from pulumi.dynamic.dynamic import serialize_provider

from components import log_bucket_provider
from components.log_bucket_provider import BucketProvider
from testbed.harness import run_stack
from tests.components.log_bucket.provider_calls import ACCESS_KEY, SECRET_KEY, create, make_props, outs_for


def test_provider_pickles_by_reference_and_holds_no_credentials(provider: BucketProvider, endpoint: str) -> None:
    props = make_props(endpoint, force_destroy=True)
    outs = create(provider, props)
    provider.delete(props["bucket"], outs)

    assert vars(provider) == {}
    for blob in (pickle.dumps(provider), dill.dumps(provider, recurse=True)):
        assert SECRET_KEY.encode() not in blob
        assert ACCESS_KEY.encode() not in blob
        assert b"components.log_bucket_provider" in blob  # by reference: the provider process imports the module
        assert isinstance(pickle.loads(blob), BucketProvider)

    # What Pulumi itself stores in `__provider`: deterministic, so it never shows up as a spurious diff.
    first, second = serialize_provider(provider), serialize_provider(BucketProvider())
    assert first == second
    assert len(first) < 1000
    assert isinstance(dill.loads(__import__("base64").b64decode(first)), BucketProvider)


def _provider_version_of(source: bytes, tmp_path: Path) -> str:
    """`provider_version()` as a copy of the provider module with `source` computes it."""
    path = tmp_path / "log_bucket_copy.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("log_bucket_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.provider_version()


def test_a_change_of_the_provider_code_shows_in_preview_as_an_in_place_update(
    provider: BucketProvider, tmp_path: Path
) -> None:
    shipped = log_bucket_provider.provider_version()
    source = Path(log_bucket_provider.__file__).read_bytes()
    # The same code gives the same version (no spurious diff on every preview); any edit gives another.
    assert _provider_version_of(source, tmp_path) == shipped
    edited = _provider_version_of(source + b"\n# a fix of the provider\n", tmp_path)
    assert edited != shipped
    # The program hands the version to the engine as an input, and the provider diffs on it.
    assert run_stack({}, stack="dev").one("S3Bucket").inputs["provider_version"] == shipped
    props = make_props("http://s3.local", provider_version=shipped)
    diff = provider.diff(props["bucket"], outs_for(props), dict(props, provider_version=edited))
    assert (diff.changes, diff.replaces) == (True, [])
