"""Runs the template's TrailBucketNotificationFunction code (its inline ZipFile) against the
moto S3 at KEYWATCH_TEST_AWS_ENDPOINT, as CloudFormation would call it: Create, Update and
Delete requests, each answered by a PUT to a ResponseURL served here on loopback.

Checks that the bucket's other notifications survive every request, that ours is added once,
replaced on update (moved with the bucket), removed on delete, that a failure is answered
FAILED with the reason (never left hanging) and that deleting from a bucket gone succeeds.
Run by tests/tests/template.rs in `make test`. Exits non-zero, naming what is wrong.
"""
import http.server
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time

import boto3
from cfnlint.decode import decode

endpoint = os.environ.get("KEYWATCH_TEST_AWS_ENDPOINT")
if not endpoint:
    sys.exit("KEYWATCH_TEST_AWS_ENDPOINT is not set: this test needs the moto server `make test` starts")
os.environ.update({
    "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
})

template, errors = decode(sys.argv[1] if len(sys.argv) > 1 else "infra/template.yaml")
if errors:
    sys.exit(f"template does not decode: {errors}")
code = template["Resources"]["TrailBucketNotificationFunction"]["Properties"]["Code"]["ZipFile"]
if len(code) > 4096:
    sys.exit(f"the inline code is {len(code)} characters; CloudFormation takes at most 4096")
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "index.py")
    with open(path, "w") as f:
        f.write(code)
    spec = importlib.util.spec_from_file_location("index", path)
    index = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(index)

responses = []


class Answer(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        responses.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
threading.Thread(target=server.serve_forever, daemon=True).start()
response_url = f"http://127.0.0.1:{server.server_port}/response"

s3 = boto3.client("s3")
stamp = f"{os.getpid()}-{time.time_ns()}"
bucket, other_bucket = f"kw-trail-{stamp}", f"kw-trail2-{stamp}"
for b in (bucket, other_bucket):
    s3.create_bucket(Bucket=b)
theirs_lambda = {"Id": "theirs", "LambdaFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:theirs",
                 "Events": ["s3:ObjectRemoved:*"]}
theirs_queue = {"Id": "their-queue", "QueueArn": "arn:aws:sqs:us-east-1:123456789012:their-queue",
                "Events": ["s3:ObjectCreated:Put"]}
s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
    "LambdaFunctionConfigurations": [theirs_lambda], "QueueConfigurations": [theirs_queue]})
function = "arn:aws:lambda:us-east-1:123456789012:function:keywatch-IngestS3Function"
problems = []


def call(request_type, props, old=None, physical=None):
    event = {"RequestType": request_type, "ResponseURL": response_url, "StackId": "stack", "RequestId": "r1",
             "LogicalResourceId": "IngestS3TrailBucketNotification",
             "ResourceProperties": {"ServiceToken": "x", **props}}
    if old:
        event["OldResourceProperties"] = {"ServiceToken": "x", **old}
    if physical:
        event["PhysicalResourceId"] = physical
    before = len(responses)
    index.handler(event, None)
    if len(responses) != before + 1:
        problems.append(f"{request_type}: CloudFormation got {len(responses) - before} answers, not one")
        return {}
    return responses[-1]


def lambdas(b):
    return s3.get_bucket_notification_configuration(Bucket=b).get("LambdaFunctionConfigurations", [])


def ids(b):
    return sorted(c.get("Id") for c in lambdas(b))


def queues(b):
    return [c.get("Id") for c in s3.get_bucket_notification_configuration(Bucket=b).get("QueueConfigurations", [])]


props = {"Bucket": bucket, "Id": "keywatch-ingest-s3", "LambdaFunctionArn": function, "Prefix": "AWSLogs/"}
answer = call("Create", props)
if answer.get("Status") != "SUCCESS":
    problems.append(f"Create: {answer}")
if ids(bucket) != ["keywatch-ingest-s3", "theirs"] or queues(bucket) != ["their-queue"]:
    problems.append(f"after Create the bucket has lambdas {ids(bucket)} and queues {queues(bucket)}")
ours = [c for c in lambdas(bucket) if c.get("Id") == "keywatch-ingest-s3"]
if not ours or ours[0]["LambdaFunctionArn"] != function or "s3:ObjectCreated:*" not in ours[0]["Events"] \
        or "AWSLogs/" not in json.dumps(ours[0].get("Filter")):
    problems.append(f"our notification is {ours}")
physical = answer.get("PhysicalResourceId")

# The same again (a stack update that changes nothing here): still one of ours.
call("Update", props, old=props, physical=physical)
if ids(bucket) != ["keywatch-ingest-s3", "theirs"]:
    problems.append(f"after a repeated Update the bucket has {ids(bucket)}")

# A new function ARN replaces ours in place.
newer = {**props, "LambdaFunctionArn": function + "-2"}
call("Update", newer, old=props, physical=physical)
arns = [c["LambdaFunctionArn"] for c in lambdas(bucket) if c.get("Id") == "keywatch-ingest-s3"]
if arns != [function + "-2"]:
    problems.append(f"after an Update of the function, ours point at {arns}")

# Another bucket: ours moves, the old bucket keeps only theirs.
moved = {**newer, "Bucket": other_bucket}
answer = call("Update", moved, old=newer, physical=physical)
if ids(bucket) != ["theirs"] or ids(other_bucket) != ["keywatch-ingest-s3"]:
    problems.append(f"after moving buckets: {ids(bucket)} and {ids(other_bucket)}")

# Delete removes ours only.
answer = call("Delete", moved, physical=answer.get("PhysicalResourceId"))
if answer.get("Status") != "SUCCESS" or ids(other_bucket) != []:
    problems.append(f"Delete: {answer}, left {ids(other_bucket)}")
if ids(bucket) != ["theirs"] or queues(bucket) != ["their-queue"]:
    problems.append(f"their notifications after Delete: {ids(bucket)}, {queues(bucket)}")

# A bucket that does not exist: Create fails with the reason; Delete succeeds (nothing to undo).
missing = {**props, "Bucket": f"kw-missing-{stamp}"}
answer = call("Create", missing)
if answer.get("Status") != "FAILED" or missing["Bucket"] not in answer.get("Reason", ""):
    problems.append(f"Create on a missing bucket answered {answer}")
answer = call("Delete", missing, physical="whatever")
if answer.get("Status") != "SUCCESS":
    problems.append(f"Delete on a missing bucket answered {answer}")

server.shutdown()
if problems:
    sys.exit("TrailBucketNotificationFunction: " + "; ".join(problems))
print("TrailBucketNotificationFunction: added, replaced, moved and removed ours, kept theirs, "
      "answered CloudFormation every time (FAILED with the reason on a missing bucket)")
