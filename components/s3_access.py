"""What each S3 credential may do, as policy documents: one credential per job.

* provisioning (`s3AccessKeyId`): creates the bucket and sets lifecycle, encryption, public-access block,
  tags and this bucket policy; `pulumi up` alone uses it.
* log (`s3LogAccessKeyId`): reads and writes objects under the log prefix, lists that prefix. Airflow and
  every task pod hold it (it is in the connections file), so it must reach nothing else.
* backup (`s3BackupAccessKeyId`): reads, writes and deletes (Barman's retention) under the backup prefix.

`identity_policies` are what the platform team attaches to each user (AWS IAM, Ceph RGW user policies,
MinIO `mc admin policy create`). `bucket_policy` is enforced by the bucket itself when the stack names the
log and backup users' ARNs (`s3.logPrincipal`, `s3.backupPrincipal`): deny statements, so a credential whose
own policy is too generous is still held to its prefix. AWS and Ceph RGW honour principal-scoped bucket
policies (RGW principals look like `arn:aws:iam:::user/<uid>`); MinIO does not (its bucket policies only
address anonymous access), so on MinIO the identity policies are the only enforcement.

    python -m components.s3_access <bucket> [log-prefix] [backup-prefix]   # prints the three policies
"""

from __future__ import annotations

import json

LOG_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
BACKUP_OBJECT_ACTIONS = [*LOG_OBJECT_ACTIONS, "s3:DeleteObject"]
BUCKET_READ_ACTIONS = ["s3:ListBucket", "s3:GetBucketLocation"]
PROVISIONING_ACTIONS = [
    "s3:CreateBucket", "s3:DeleteBucket", "s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation",
    "s3:PutLifecycleConfiguration", "s3:GetLifecycleConfiguration", "s3:PutEncryptionConfiguration",
    "s3:PutBucketPublicAccessBlock", "s3:PutBucketTagging", "s3:GetBucketTagging", "s3:PutBucketPolicy",
    "s3:GetBucketPolicy",
]


def _arns(bucket: str, prefix: str | None = None) -> tuple[str, str]:
    return f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"


def _prefix_only(bucket: str, prefix: str, objects: list[str]) -> list[dict]:
    bucket_arn, objects_arn = _arns(bucket, prefix)
    return [
        {"Effect": "Allow", "Action": objects, "Resource": objects_arn},
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}},
        },
        {"Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": bucket_arn},
    ]


def identity_policies(bucket: str, log_prefix: str = "logs", backup_prefix: str = "postgres") -> dict[str, dict]:
    """The user policy for each of the three credentials."""
    bucket_arn, all_objects = _arns(bucket)
    return {
        "provisioning": {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": PROVISIONING_ACTIONS, "Resource": bucket_arn},
                # Only for `pulumi destroy` with s3.forceDestroy: emptying a disposable stack's bucket.
                {"Effect": "Allow", "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": all_objects},
            ],
        },
        "log": {"Version": "2012-10-17", "Statement": _prefix_only(bucket, log_prefix, LOG_OBJECT_ACTIONS)},
        "backup": {"Version": "2012-10-17", "Statement": _prefix_only(bucket, backup_prefix, BACKUP_OBJECT_ACTIONS)},
    }


def _confine(sid: str, principal: str, bucket: str, prefix: str, objects: list[str]) -> list[dict]:
    bucket_arn, prefix_objects = _arns(bucket, prefix)
    _, all_objects = _arns(bucket)
    who = {"AWS": [principal]}
    return [
        # Nothing but reading and writing objects and listing: no bucket settings, no policy, no delete.
        {"Sid": f"{sid}OnlyObjects", "Effect": "Deny", "Principal": who,
         "NotAction": [*objects, *BUCKET_READ_ACTIONS], "Resource": [bucket_arn, all_objects]},
        # ...and those objects only under its own prefix.
        {"Sid": f"{sid}OnlyItsPrefix", "Effect": "Deny", "Principal": who,
         "Action": BACKUP_OBJECT_ACTIONS, "NotResource": prefix_objects},
        {"Sid": f"{sid}ListsOnlyItsPrefix", "Effect": "Deny", "Principal": who, "Action": "s3:ListBucket",
         "Resource": bucket_arn, "Condition": {"StringNotLike": {"s3:prefix": [f"{prefix}/*", prefix]}}},
    ]


def bucket_policy(
    bucket: str, log_prefix: str, backup_prefix: str, log_principal: str | None, backup_principal: str | None
) -> dict | None:
    """The bucket's own policy holding the log and backup users to their prefixes (None: no principal known)."""
    statements = []
    if log_principal:
        statements += _confine("LogCredential", log_principal, bucket, log_prefix, LOG_OBJECT_ACTIONS)
    if backup_principal:
        statements += _confine("BackupCredential", backup_principal, bucket, backup_prefix, BACKUP_OBJECT_ACTIONS)
    return {"Version": "2012-10-17", "Statement": statements} if statements else None


def main(argv: list[str] | None = None) -> int:
    """`python -m components.s3_access BUCKET [LOG_PREFIX] [BACKUP_PREFIX]`: print the three identity policies."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m components.s3_access",
        description="Print the identity policy of each S3 credential (provisioning, log, backup) as JSON.",
    )
    parser.add_argument("bucket")
    parser.add_argument("log_prefix", nargs="?", default="logs", help="default: logs")
    parser.add_argument("backup_prefix", nargs="?", default="postgres", help="default: postgres")
    arguments = parser.parse_args(argv)
    print(json.dumps(identity_policies(arguments.bucket, arguments.log_prefix, arguments.backup_prefix), indent=2))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
