"""A pending create of the log bucket, settled by asking the S3 store: an empty bucket this create made is taken over
(its settings applied again), one that is absent or not ours is dropped from the state."""

from __future__ import annotations

from typing import Any


def _revealed(value: Any) -> Any:
    import engine

    return engine.revealed(value)


def settle_bucket(resource: dict) -> tuple[dict | None, str]:
    """(the state entry recording the bucket, what was done) for a pending create of the log bucket."""
    from components import log_bucket_provider as provider
    from components.log_bucket_props import SECRET_KEYS, outputs, settings_from

    inputs = resource.get("inputs") or {}
    settings = settings_from(_revealed(inputs))
    bucket = settings["bucket"]
    try:
        with provider._s3_client(settings) as s3, provider._endpoint_errors(settings, "checking"):
            state = provider._bucket_state(s3, bucket)
            if state == "absent":
                return None, f"bucket '{bucket}' was never created: dropped from the state (the next up creates it)"
            if state == "elsewhere" or (refusal := provider.adoption_refusal(s3, settings)):
                why = "it belongs to another account or region" if state == "elsewhere" else refusal
                return None, (f"bucket '{bucket}' exists but is not this create's ({why}): dropped from the state; "
                              "the next up refuses it, as for any bucket already there")
            outs = outputs(settings, provider._apply_settings(s3, settings))
    except Exception as error:  # noqa: BLE001 - the store's answer decides; without one, the next up does
        return None, (f"bucket '{bucket}' could not be checked ({error}): dropped from the state; the next up "
                      "creates it, or takes it over if this create made it (it is then empty)")
    for key in (*SECRET_KEYS, "__provider"):
        if key in inputs:
            outs[key] = inputs[key]  # the exported (secret) form, which `stack import` encrypts again
    return {**resource, "id": bucket, "outputs": outs}, f"bucket '{bucket}' exists and is empty: recorded as created"

