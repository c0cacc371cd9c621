#!/usr/bin/env python3
"""Generates a CloudTrail corpus in the S3-delivered format for `make bench`.

usage: gen.py OUT_DIR RECORDS  (about 2,500 records a file, gzip; half KMS usage on 200 keys
by 50 roles, some keys scheduled for deletion and used after; the rest noise from S3, EC2,
STS, IAM, Lambda). Deterministic (seeded)."""
import gzip, json, os, random, sys, uuid

out, total = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
ACCOUNT, REGION = "111122223333", "us-east-1"
keys = [f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{uuid.UUID(int=rng.getrandbits(128))}" for _ in range(200)]
roles = [f"arn:aws:iam::{ACCOUNT}:role/service-{i}" for i in range(50)]
ops = ["Decrypt", "Decrypt", "Decrypt", "GenerateDataKey", "Encrypt", "Sign"]
noise = [("s3.amazonaws.com", "GetObject"), ("s3.amazonaws.com", "PutObject"), ("ec2.amazonaws.com", "DescribeInstances"),
         ("sts.amazonaws.com", "AssumeRole"), ("iam.amazonaws.com", "GetRole"), ("lambda.amazonaws.com", "Invoke")]
start = 1_790_000_000  # 2026-09-21
span = 60 * 86400
scheduled = {k: start + span // 2 for k in keys[:20]}


def ident(role):
    name = role.rsplit("/", 1)[1]
    return {"type": "AssumedRole", "principalId": f"AROAEXAMPLE:{name}", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/s",
            "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "arn": role, "accountId": ACCOUNT, "userName": name},
                               "attributes": {"creationDate": "2026-09-21T00:00:00Z", "mfaAuthenticated": "false"}}}


def iso(t):
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def record(i, t):
    eid = str(uuid.UUID(int=rng.getrandbits(128)))
    role = roles[rng.randrange(len(roles))]
    base = {"eventVersion": "1.08", "userIdentity": ident(role), "eventTime": iso(t), "awsRegion": REGION,
            "sourceIPAddress": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}", "userAgent": "aws-sdk-java/2.25.6",
            "requestID": eid, "eventID": eid, "eventType": "AwsApiCall", "managementEvent": True,
            "recipientAccountId": ACCOUNT, "eventCategory": "Management"}
    if i % 2 == 0:
        key = keys[rng.randrange(len(keys))]
        base.update({"eventSource": "kms.amazonaws.com", "eventName": ops[rng.randrange(len(ops))], "readOnly": True,
                     "requestParameters": {"keyId": key, "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                                           "encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::bucket-{rng.randrange(100)}/object"}},
                     "responseElements": None,
                     "resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key}]})
        if key in scheduled and t > scheduled[key]:
            base.update({"errorCode": "KMSInvalidStateException", "errorMessage": f"{key} is pending deletion."})
        return base
    if i % 50_001 == 1 and scheduled:
        key, when = scheduled.popitem()
        base.update({"eventSource": "kms.amazonaws.com", "eventName": "ScheduleKeyDeletion", "eventTime": iso(when),
                     "requestParameters": {"keyId": key, "pendingWindowInDays": 30},
                     "responseElements": {"keyId": key, "keyState": "PendingDeletion", "deletionDate": "Dec 20, 2026, 12:00:00 AM"},
                     "resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key}], "readOnly": False})
        return base
    src, name = noise[rng.randrange(len(noise))]
    base.update({"eventSource": src, "eventName": name, "readOnly": True,
                 "requestParameters": {"bucketName": f"bucket-{rng.randrange(100)}", "key": f"data/{rng.randrange(10**6)}.parquet"},
                 "responseElements": None,
                 "resources": [{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::bucket-{rng.randrange(100)}/data"}]})
    return base


os.makedirs(out, exist_ok=True)
per_file, n, f = 2500, 0, 0
while n < total:
    t0 = start + (span * n) // total
    recs = [record(n + j, t0 + j // 10) for j in range(min(per_file, total - n))]
    name = f"{ACCOUNT}_CloudTrail_{REGION}_{iso(t0).replace('-', '').replace(':', '')}_{f:06d}.json.gz"
    with gzip.open(os.path.join(out, name), "wb", compresslevel=6) as fh:
        fh.write(json.dumps({"Records": recs}).encode())
    n += len(recs)
    f += 1
print(f"{n} records in {f} files under {out}")
