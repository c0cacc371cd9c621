#!/usr/bin/env python3
"""Writes keywatch's own sample CloudTrail data (our fixtures, in the shapes AWS writes).

A small organisation's week around several KMS key deletions, as of 2026-11-23:
  orders   - scheduled for deletion while the orders service still uses it (pages)
  legacy   - unused for months, scheduled and deleted (medium, then info)
  hsm      - CloudHSM key deleted while its key store was disconnected (orphaned material)
  xks      - external key store key deleted (its external key is untouched)
  reports  - scheduled, then cancelled and re-enabled
  archive  - scheduled in October, deletion never seen (overdue)
  payroll  - last used in June, disabled on 5 November to see what breaks; the nightly batch
             still tries it (DisabledException), so preflight says it is in use
The orders key's calls carry the encryption contexts of the services that make them (S3
objects in two buckets, a DynamoDB table, a Secrets Manager secret, an EBS volume's grant),
so keywatch can say what the key protects.
Output: s3/ (an S3-delivered .json.gz log file) and eventbridge.jsonl (EventBridge envelopes).
Run: python3 scripts/make_samples.py   (deterministic; the outputs are committed)
"""
import gzip, json, os, uuid

ACCOUNT, REGION = "111122223333", "us-east-1"
HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples")
KEYS = {
    "orders": "1111aaaa-11aa-11aa-11aa-111111111111",
    "legacy": "2222bbbb-22bb-22bb-22bb-222222222222",
    "hsm": "3333cccc-33cc-33cc-33cc-333333333333",
    "xks": "4444dddd-44dd-44dd-44dd-444444444444",
    "reports": "5555eeee-55ee-55ee-55ee-555555555555",
    "archive": "6666ffff-66ff-66ff-66ff-666666666666",
    "payroll": "7777abcd-77ab-77cd-77ef-777777777777",
}
ARN = {k: f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{v}" for k, v in KEYS.items()}
ORDERS_ROLE = f"arn:aws:iam::{ACCOUNT}:role/orders-service"
BATCH_ROLE = f"arn:aws:iam::{ACCOUNT}:role/nightly-batch"
_n = [0]


def eid():
    _n[0] += 1
    return str(uuid.UUID(int=_n[0] * 7919 + 0x5EED))


def user(name):
    return {"type": "IAMUser", "principalId": "AIDAEXAMPLE" + name.upper(), "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
            "accountId": ACCOUNT, "accessKeyId": "AKIAEXAMPLE", "userName": name}


def role(arn, invoked_by=None):
    name = arn.rsplit("/", 1)[1]
    ident = {"type": "AssumedRole", "principalId": f"AROAEXAMPLE:{name}-session",
             "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{name}-session", "accountId": ACCOUNT,
             "accessKeyId": "ASIAEXAMPLE",
             "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "arn": arn,
                                                  "accountId": ACCOUNT, "userName": name},
                                "attributes": {"creationDate": "2026-11-01T00:00:00Z", "mfaAuthenticated": "false"}}}
    if invoked_by:
        ident["invokedBy"] = invoked_by
    return ident


def kms(name, time, key, ident, req=None, resp=None, extra=None, ip="10.0.12.7", agent="aws-sdk-java/2.25.6"):
    r = {"eventVersion": "1.08", "userIdentity": ident, "eventTime": time, "eventSource": "kms.amazonaws.com",
         "eventName": name, "awsRegion": REGION, "sourceIPAddress": ip, "userAgent": agent,
         "requestParameters": req if req is not None else {"keyId": ARN[key]}, "responseElements": resp,
         "requestID": eid(), "eventID": eid(), "readOnly": name in ("Decrypt", "Encrypt", "GenerateDataKey"),
         "resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": ARN[key]}],
         "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": ACCOUNT,
         "eventCategory": "Management"}
    r.update(extra or {})
    return r


def rejected(name, time, key, ident, req=None, **kw):
    return kms(name, time, key, ident, req=req, extra={"errorCode": "KMSInvalidStateException",
                                                       "errorMessage": f"{ARN[key]} is pending deletion."}, **kw)


def context(key, ctx):
    """requestParameters of a call whose encryption context names what it protects."""
    return {"keyId": ARN[key], "encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": ctx}


def s3_object(bucket, path):
    return {"aws:s3:arn": f"arn:aws:s3:::{bucket}/{path}"}


ORDERS_TABLE = {"aws:dynamodb:tableName": "orders", "aws:dynamodb:subscriberId": ACCOUNT}
ORDERS_SECRET = {"SecretARN": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:orders/db-password-Ab12Cd",
                 "SecretVersionId": "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"}


def create(time, key, origin="AWS_KMS", store=None, cluster=None, xks=None):
    meta = {"AWSAccountId": ACCOUNT, "keyId": KEYS[key], "arn": ARN[key], "creationDate": "Jan 10, 2026, 9:00:00 AM",
            "enabled": True, "keyUsage": "ENCRYPT_DECRYPT", "keyState": "Enabled", "origin": origin,
            "keyManager": "CUSTOMER", "keySpec": "SYMMETRIC_DEFAULT", "multiRegion": False}
    req = {"keyUsage": "ENCRYPT_DECRYPT", "origin": origin, "keySpec": "SYMMETRIC_DEFAULT", "description": key}
    if store:
        meta["customKeyStoreId"] = req["customKeyStoreId"] = store
    if cluster:
        meta["cloudHsmClusterId"] = cluster
    if xks:
        meta["xksKeyConfiguration"] = {"id": xks}
        req["xksKeyId"] = xks
    return kms("CreateKey", time, key, user("platform-admin"), req=req, resp={"keyMetadata": meta})


def schedule(time, key, days, deletion_date, who="alice", extra=None):
    resp = {"keyId": ARN[key], "keyState": "PendingDeletion", "pendingWindowInDays": days}
    if deletion_date:
        resp["deletionDate"] = deletion_date
    return kms("ScheduleKeyDeletion", time, key, user(who), req={"keyId": KEYS[key], "pendingWindowInDays": days},
               resp=resp, extra=extra)


def delete(time, key, additional=None):
    r = {"eventVersion": "1.08", "userIdentity": {"accountId": ACCOUNT, "invokedBy": "AWS Internal"},
         "eventTime": time, "eventSource": "kms.amazonaws.com", "eventName": "DeleteKey", "awsRegion": REGION,
         "sourceIPAddress": "AWS Internal", "userAgent": "AWS Internal", "requestParameters": None,
         "responseElements": None, "eventID": eid(), "readOnly": False,
         "resources": [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": ARN[key]}],
         "eventType": "AwsServiceEvent", "recipientAccountId": ACCOUNT, "managementEvent": True,
         "eventCategory": "Management"}
    if additional:
        r["additionalEventData"] = additional
    return r


def key_store(name, time, store):
    return {"eventVersion": "1.08", "userIdentity": user("platform-admin"), "eventTime": time,
            "eventSource": "kms.amazonaws.com", "eventName": name, "awsRegion": REGION,
            "sourceIPAddress": "10.0.0.5", "userAgent": "aws-cli/2.15.0", "requestParameters": {"customKeyStoreId": store},
            "responseElements": None, "additionalEventData": {"customKeyStoreName": "payments-hsm", "clusterId": "cluster-1a23b4cdefg"},
            "requestID": eid(), "eventID": eid(), "readOnly": False, "eventType": "AwsApiCall",
            "managementEvent": True, "recipientAccountId": ACCOUNT}


def noise(time, source, name):
    return {"eventVersion": "1.08", "userIdentity": role(BATCH_ROLE), "eventTime": time, "eventSource": source,
            "eventName": name, "awsRegion": REGION, "sourceIPAddress": "10.0.40.2", "userAgent": "aws-cli/2.15.0",
            "requestParameters": {"bucketName": "orders-archive"} if source.startswith("s3") else {},
            "responseElements": None, "requestID": eid(), "eventID": eid(), "readOnly": True,
            "eventType": "AwsApiCall", "managementEvent": source != "s3.amazonaws.com", "recipientAccountId": ACCOUNT}


records = [
    create("2026-01-10T09:00:00Z", "orders"),
    create("2026-01-10T09:01:00Z", "legacy"),
    create("2026-01-10T09:02:00Z", "hsm", "AWS_CLOUDHSM", "cks-1a2b3c4d5e6f7a8b9", "cluster-1a23b4cdefg"),
    create("2026-01-10T09:03:00Z", "xks", "EXTERNAL_KEY_STORE", "cks-9f8e7d6c5b4a39281", xks="bb8562717f809024"),
    create("2026-01-10T09:04:00Z", "reports"),
    create("2026-01-10T09:05:00Z", "archive"),
    key_store("ConnectCustomKeyStore", "2026-01-10T08:00:00Z", "cks-1a2b3c4d5e6f7a8b9"),
    kms("Decrypt", "2026-08-01T10:00:00Z", "legacy", role(BATCH_ROLE)),
]
records.append(kms("CreateGrant", "2026-11-01T07:00:00Z", "orders", role(ORDERS_ROLE, "ec2.amazonaws.com"),
                   req={"keyId": ARN["orders"], "granteePrincipal": f"{ACCOUNT}:aws:ec2-infrastructure:i-0a1b2c3d4e5f60718",
                        "constraints": {"encryptionContextSubset": {"aws:ebs:id": "vol-0a1b2c3d4e5f60718"}},
                        "operations": ["Decrypt"]}, ip="ec2.amazonaws.com", agent="ec2.amazonaws.com"))
for day in range(1, 17):
    records.append(kms("Decrypt", f"2026-11-{day:02d}T08:15:00Z", "orders", role(ORDERS_ROLE, "s3.amazonaws.com"),
                       req=context("orders", s3_object("orders-prod", f"2026/11/{day:02d}/orders.json")),
                       ip="s3.amazonaws.com", agent="s3.amazonaws.com"))
    table_or_secret = ORDERS_TABLE if day % 2 else ORDERS_SECRET
    records.append(kms("GenerateDataKey", f"2026-11-{day:02d}T08:16:00Z", "orders", role(ORDERS_ROLE),
                       req=dict(context("orders", table_or_secret), keySpec="AES_256")))
    records.append(noise(f"2026-11-{day:02d}T08:17:00Z", "s3.amazonaws.com", "GetObject"))
    records.append(noise(f"2026-11-{day:02d}T08:18:00Z", "ec2.amazonaws.com", "DescribeInstances"))
records += [
    schedule("2026-11-17T09:00:00Z", "orders", 7, "Nov 24, 2026, 9:00:00 AM"),
    kms("GenerateDataKey", "2026-11-17T09:00:20Z", "orders", role(ORDERS_ROLE),
        req=dict(context("orders", ORDERS_TABLE), keySpec="AES_256")),
    rejected("Decrypt", "2026-11-17T10:05:11Z", "orders", role(ORDERS_ROLE),
             req=context("orders", s3_object("orders-prod", "2026/11/17/orders.json"))),
    rejected("Decrypt", "2026-11-17T10:06:40Z", "orders", role(ORDERS_ROLE)),
    rejected("Decrypt", "2026-11-17T10:31:02Z", "orders", role(ORDERS_ROLE)),
    rejected("Decrypt", "2026-11-17T13:15:45Z", "orders", role(ORDERS_ROLE)),
    rejected("Decrypt", "2026-11-18T02:00:09Z", "orders", role(BATCH_ROLE, "s3.amazonaws.com"),
             req=context("orders", s3_object("orders-archive", "2026/11/17/orders.json.gz")),
             ip="s3.amazonaws.com", agent="s3.amazonaws.com"),
    schedule("2026-11-02T15:00:00Z", "legacy", 7, "Nov 9, 2026, 3:00:00 PM", who="bob"),
    delete("2026-11-09T15:00:00Z", "legacy"),
    schedule("2026-11-01T12:00:00Z", "hsm", 7, "Nov 8, 2026, 12:00:00 PM",
             extra={"additionalEventData": {"customKeyStoreId": "cks-1a2b3c4d5e6f7a8b9", "clusterId": "cluster-1a23b4cdefg",
                                            "backingKeys": "[{\"keyHandle\":\"07\",\"backingKeyId\":\"backing-key-id\"}]"}}),
    key_store("DisconnectCustomKeyStore", "2026-11-07T18:00:00Z", "cks-1a2b3c4d5e6f7a8b9"),
    delete("2026-11-08T12:00:00Z", "hsm", {"customKeyStoreId": "cks-1a2b3c4d5e6f7a8b9", "clusterId": "cluster-1a23b4cdefg",
                                          "backingKeys": "[{\"keyHandle\":\"07\",\"backingKeyId\":\"backing-key-id\"}]"}),
    schedule("2026-11-03T11:00:00Z", "xks", 7, "Nov 10, 2026, 11:00:00 AM"),
    delete("2026-11-10T11:00:00Z", "xks", {"customKeyStoreId": "cks-9f8e7d6c5b4a39281"}),
    schedule("2026-11-10T16:00:00Z", "reports", 30, "Dec 10, 2026, 4:00:00 PM"),
    kms("CancelKeyDeletion", "2026-11-11T09:30:00Z", "reports", user("bob"), resp={"keyId": ARN["reports"]}),
    kms("EnableKey", "2026-11-11T09:31:00Z", "reports", user("bob")),
    schedule("2026-10-01T10:00:00Z", "archive", 7, None),
    create("2026-01-10T09:06:00Z", "payroll"),
    kms("Decrypt", "2026-06-30T02:00:00Z", "payroll", role(BATCH_ROLE)),
    kms("DisableKey", "2026-11-05T10:00:00Z", "payroll", user("alice")),
    kms("Decrypt", "2026-11-20T02:00:00Z", "payroll", role(BATCH_ROLE),
        extra={"errorCode": "DisabledException", "errorMessage": f"{ARN['payroll']} is disabled."}),
]

def envelope(r):
    detail_type = "AWS Service Event via CloudTrail" if r["eventType"] == "AwsServiceEvent" else "AWS API Call via CloudTrail"
    return {"version": "0", "id": eid(), "detail-type": detail_type, "source": "aws.kms", "account": ACCOUNT,
            "time": r["eventTime"], "region": REGION, "resources": [], "detail": r}

# The S3 file holds everything up to the 17th; EventBridge carries the lifecycle records of the
# last weeks and, as EventBridge does, delivers one of them twice.
s3 = [r for r in records if r["eventTime"] < "2026-11-17"]
eb = [r for r in records if r["eventSource"] == "kms.amazonaws.com" and r["eventTime"] >= "2026-11-01"]
eb.append(eb[0])
os.makedirs(os.path.join(HERE, "s3"), exist_ok=True)
path = os.path.join(HERE, "s3", f"{ACCOUNT}_CloudTrail_{REGION}_20261117T0000Z_keywatchDemo01.json.gz")
with open(path, "wb") as raw:
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(json.dumps({"Records": s3}).encode())
with open(os.path.join(HERE, "eventbridge.jsonl"), "w") as f:
    for r in eb:
        f.write(json.dumps(envelope(r)) + "\n")
