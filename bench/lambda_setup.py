"""Creates what the functions need in moto (table, topic) and writes the events to invoke:
an EventBridge envelope, a scheduled event, a KafkaEvent of 10,000 KMS records, and 20,000
KMS records one per line."""
import base64, gzip, json, os, subprocess, sys, urllib.request, uuid, random
port, run = sys.argv[1], sys.argv[2]
def aws(target, service, body, version=None):
    # Minimal JSON-protocol calls to moto (it does not check signatures).
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target,
                 "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20261123/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=x"})
    return urllib.request.urlopen(req).read()
aws("DynamoDB_20120810.CreateTable", "dynamodb", {"TableName": "keywatch-bench", "BillingMode": "PAY_PER_REQUEST",
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]})
urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/?Action=CreateTopic&Name=keywatch-bench", method="POST",
    headers={"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261123/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=x"})).read()
def kms_records(n):
    """The KMS records of a generated corpus of n records (gen.py: half of them KMS)."""
    corpus = f"bench/corpus/lambda-{n}"
    if not os.path.isdir(corpus):
        subprocess.run([sys.executable, "bench/gen.py", corpus, str(n)], check=True, stdout=subprocess.DEVNULL)
    out = []
    for f in sorted(os.listdir(corpus)):
        out += [r for r in json.load(gzip.open(os.path.join(corpus, f)))["Records"] if r["eventSource"] == "kms.amazonaws.com"]
    return out
# 20,000 KMS records one per line, for the CPU measure (batch_cpu: two batches of 10,000).
with open(f"{run}/records.jsonl", "w") as out:
    out.writelines(json.dumps(r) + "\n" for r in kms_records(40000)[:20000])
# The projector's KafkaEvent: 10,000 KMS records of a 20,000-record corpus, as in every earlier
# measure (the generator spreads a corpus over the same weeks whatever its size, so the first
# 10,000 of a larger one hold fewer of the keys' deletions).
records = kms_records(20000)[:10000]
b64 = lambda s: base64.b64encode(s.encode()).decode()
kafka = {"eventSource": "SelfManagedKafka", "bootstrapServers": "127.0.0.1:9092", "records": {"keywatch-bench-0": [
    {"topic": "keywatch-bench", "partition": 0, "offset": i, "timestamp": 0, "timestampType": "CREATE_TIME",
     "key": b64(r["resources"][0]["ARN"]), "value": b64(json.dumps(r)), "headers": []} for i, r in enumerate(records)]}}
json.dump(kafka, open(f"{run}/kafka.json", "w"))
envelope = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS API Call via CloudTrail", "source": "aws.kms",
            "account": "111122223333", "time": records[0]["eventTime"], "region": "us-east-1", "resources": [], "detail": records[0]}
json.dump(envelope, open(f"{run}/eventbridge.json", "w"))
json.dump({"version": "0", "id": "s", "detail-type": "Scheduled Event", "source": "aws.scheduler", "detail": {}}, open(f"{run}/schedule.json", "w"))
print(f"{len(records)} KMS records in the KafkaEvent")
