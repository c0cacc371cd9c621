#!/usr/bin/env python3
"""A key pending deletion in busy use, its archive out of order: CreateKey, then
ScheduleKeyDeletion, then USES Decrypt calls rejected as pending deletion (20 a second, one
role), written as 100 S3-delivered CloudTrail files whose time ranges overlap their
neighbours', so that nearly every batch of `keywatch replay` brings uses earlier than the
key's timeline has folded. Records in the shape AWS writes them; written by us.

Usage: bench/late_uses.py DIR [USES]  (default 200,000 uses)"""
import datetime
import gzip
import json
import os
import random
import sys

out = sys.argv[1]
uses_wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
random.seed(7)
ACCT = "111122223333"
KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BASE = datetime.datetime(2026, 11, 20, 10, 0, 0, tzinfo=datetime.timezone.utc)


def at(s):
    return (BASE + datetime.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(name, s, i, **extra):
    r = {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole", "principalId": "AROAEXAMPLE:app",
            "arn": f"arn:aws:sts::{ACCT}:assumed-role/app/i-1", "accountId": ACCT,
            "sessionContext": {"sessionIssuer": {
                "type": "Role", "principalId": "AROAEXAMPLE", "arn": f"arn:aws:iam::{ACCT}:role/app",
                "accountId": ACCT, "userName": "app"}},
        },
        "eventTime": at(s), "eventSource": "kms.amazonaws.com", "eventName": name,
        "awsRegion": "us-east-1", "sourceIPAddress": "10.0.0.5", "userAgent": "aws-sdk-java/2.25.6",
        "requestParameters": {"keyId": KEY, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
        "responseElements": None, "requestID": f"req-{i}",
        "eventID": "%08x-0000-4000-8000-%012x" % (random.getrandbits(32), i),
        "readOnly": True, "resources": [{"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": KEY}],
        "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": ACCT,
        "eventCategory": "Management",
    }
    r.update(extra)
    return r


lifecycle = [
    record("CreateKey", -86_400, 0, readOnly=False, responseElements={"keyMetadata": {
        "keyId": KEY.split("/")[-1], "arn": KEY, "keyState": "Enabled", "origin": "AWS_KMS"}}),
    record("ScheduleKeyDeletion", 0, 1, readOnly=False,
           requestParameters={"keyId": KEY, "pendingWindowInDays": 30},
           responseElements={"keyId": KEY, "keyState": "PendingDeletion", "pendingWindowInDays": 30,
                             "deletionDate": "2026-12-20T10:00:00Z"}),
]
seconds = uses_wanted // 20 + 1
files = [[] for _ in range(100)]
for i in range(uses_wanted):
    s = 1 + i // 20
    files[min(99, max(0, s * 100 // seconds + random.randint(-1, 1)))].append(record(
        "Decrypt", s, 10 + i, errorCode="KMSInvalidStateException",
        errorMessage=f"{KEY} is pending deletion."))
files[0] = lifecycle + files[0]
os.makedirs(out, exist_ok=True)
for n, f in enumerate(files):
    name = f"{ACCT}_CloudTrail_us-east-1_20261120T{n:04d}Z_{n:06d}.json.gz"
    with gzip.open(os.path.join(out, name), "wt") as g:
        json.dump({"Records": f}, g)
